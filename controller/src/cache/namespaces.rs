//! Namespace labels for ClusterSecretStore `conditions[].namespaceSelector` and
//! ClusterExternalSecret selectors, from the shared watch of Namespace metadata: no API call
//! per reconcile.

use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeMap;

use crate::{Error, Result};

/// The label every Namespace carries on Kubernetes ≥ 1.21; added here for older apiservers.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Namespace labels from the shared Namespace watch ([`crate::cache::Caches`]).
#[derive(Clone)]
pub struct NamespaceLabels {
    client: Client,
    store: Store<PartialObjectMeta<Namespace>>,
}

impl NamespaceLabels {
    pub fn new(client: Client, store: Store<PartialObjectMeta<Namespace>>) -> Self {
        NamespaceLabels { client, store }
    }

    /// The labels of `namespace`, with [`NAME_LABEL`]. A namespace the cache does not know
    /// yet (just created) is read from the API.
    pub async fn labels(&self, namespace: &str) -> Result<BTreeMap<String, String>> {
        match self.store.get(&ObjectRef::new(namespace)) {
            Some(found) => Ok(with_name_label(found.labels().clone(), namespace)),
            None => read_labels(&self.client, namespace).await,
        }
    }

    /// Every Namespace in the cache.
    pub fn all(&self) -> Vec<std::sync::Arc<PartialObjectMeta<Namespace>>> {
        self.store.state()
    }
}

/// A Namespace's labels (with [`NAME_LABEL`]) read from the API.
pub async fn read_labels(client: &Client, namespace: &str) -> Result<BTreeMap<String, String>> {
    let found = Api::<Namespace>::all(client.clone())
        .get_metadata_opt(namespace)
        .await
        .map_err(Error::kube(format!("reading Namespace {namespace}")))?
        .ok_or_else(|| Error::NotFound(format!("Namespace {namespace:?} not found")))?;
    Ok(with_name_label(found.labels().clone(), namespace))
}

pub fn with_name_label(
    mut labels: BTreeMap<String, String>,
    namespace: &str,
) -> BTreeMap<String, String> {
    labels
        .entry(NAME_LABEL.into())
        .or_insert_with(|| namespace.to_owned());
    labels
}
