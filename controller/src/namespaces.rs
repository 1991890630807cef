//! Namespace labels for ClusterSecretStore `conditions[].namespaceSelector`, from a watch of
//! Namespace metadata started on first use, so a store without selectors costs nothing and a
//! store with selectors costs no API call per reconcile.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::{Error, Result};

/// The label every Namespace carries on Kubernetes ≥ 1.21; added here for older apiservers.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// How long the first lookup waits for the initial list before asking the API directly.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct NamespaceLabels {
    client: Client,
    store: Arc<OnceLock<Store<PartialObjectMeta<Namespace>>>>,
}

impl NamespaceLabels {
    pub fn new(client: Client) -> Self {
        NamespaceLabels {
            client,
            store: Arc::default(),
        }
    }

    /// The labels of `namespace`, with [`NAME_LABEL`]. Read from the cache once it is filled;
    /// a namespace the cache does not know yet (just created) is read from the API.
    pub async fn labels(&self, namespace: &str) -> Result<BTreeMap<String, String>> {
        let store = self.store.get_or_init(|| self.start_watch());
        let cached = match tokio::time::timeout(READY_TIMEOUT, store.wait_until_ready()).await {
            Ok(Ok(())) => store.get(&ObjectRef::new(namespace)),
            _ => None,
        };
        let labels = match cached {
            Some(found) => found.labels().clone(),
            None => Api::<Namespace>::all(self.client.clone())
                .get_metadata_opt(namespace)
                .await
                .map_err(Error::kube(format!("reading Namespace {namespace}")))?
                .ok_or_else(|| Error::Store(format!("Namespace {namespace:?} not found")))?
                .labels()
                .clone(),
        };
        Ok(with_name_label(labels, namespace))
    }

    fn start_watch(&self) -> Store<PartialObjectMeta<Namespace>> {
        let (reader, writer) = reflector::store();
        let watch = watcher(
            Api::<PartialObjectMeta<Namespace>>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|ns| ns.managed_fields_mut().clear())
        .reflect(writer)
        .for_each(|event| {
            if let Err(error) = event {
                tracing::warn!(%error, "watching Namespaces failed; retrying");
            }
            future::ready(())
        });
        tokio::spawn(watch);
        reader
    }
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
