//! What a scrape reports objects from: the ExternalSecrets and stores in the caches, with
//! their `Ready` status, limited to what this controller serves ([`Served`]).

use crate::api::Condition;
use crate::cache::Caches;

/// An object's name, namespace (empty for cluster-scoped ones) and `Ready` status
/// (`True`, `False`, `Unknown`; `None` before it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStatus {
    pub namespace: String,
    pub name: String,
    pub ready: Option<String>,
}

impl ObjectStatus {
    fn new(namespace: Option<String>, name: String, conditions: &[Condition]) -> Self {
        ObjectStatus {
            namespace: namespace.unwrap_or_default(),
            name,
            ready: conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.status.clone()),
        }
    }
}

/// Which objects' series a scrape shows.
#[derive(Debug, Clone)]
pub enum Served {
    /// The ExternalSecrets this process reconciles and the stores of this controller class.
    Class(Option<String>),
    /// None (accelerator mode: ESO serves them and reports them itself).
    Nothing,
}

impl Served {
    pub fn inventory(&self, caches: &Caches) -> Inventory {
        match self {
            Served::Class(class) => Inventory::from_caches(caches, class.as_deref()),
            Served::Nothing => Inventory::default(),
        }
    }
}

/// The objects whose series a scrape shows.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    pub external_secrets: Vec<ObjectStatus>,
    /// The stores this controller serves (its class).
    pub secret_stores: Vec<ObjectStatus>,
    pub cluster_secret_stores: Vec<ObjectStatus>,
}

impl Inventory {
    /// Every ExternalSecret in the cache, and the stores of `controller_class`.
    pub fn from_caches(caches: &Caches, controller_class: Option<&str>) -> Self {
        use kube::ResourceExt;
        let served = |class: Option<&String>| {
            class.map(String::as_str).filter(|c| !c.is_empty()) == controller_class
        };
        Inventory {
            external_secrets: caches
                .external_secrets
                .state()
                .iter()
                .map(|es| {
                    let conditions = es.status.as_ref().map(|s| s.conditions.as_slice());
                    ObjectStatus::new(es.namespace(), es.name_any(), conditions.unwrap_or(&[]))
                })
                .collect(),
            secret_stores: caches
                .secret_stores
                .state()
                .iter()
                .filter(|store| served(store.spec.store.controller.as_ref()))
                .map(|store| {
                    let conditions = store.status.as_ref().map(|s| s.conditions.as_slice());
                    ObjectStatus::new(
                        store.namespace(),
                        store.name_any(),
                        conditions.unwrap_or(&[]),
                    )
                })
                .collect(),
            cluster_secret_stores: caches
                .cluster_secret_stores
                .state()
                .iter()
                .filter(|store| served(store.spec.store.controller.as_ref()))
                .map(|store| {
                    let conditions = store.status.as_ref().map(|s| s.conditions.as_slice());
                    ObjectStatus::new(None, store.name_any(), conditions.unwrap_or(&[]))
                })
                .collect(),
        }
    }
}
