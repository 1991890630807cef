//! A cache of SecretStores and ClusterSecretStores, so that events are matched with the region
//! and `prefix` of the store each ExternalSecret uses, without an API call per event.

use futures::{StreamExt, future};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::secret_store::{AwsProvider, StoreSpec};
use crate::api::{ClusterSecretStore, ExternalSecret, SecretStore};
use crate::store::StoreKind;

#[derive(Clone)]
pub struct StoreCache {
    namespaced: Store<SecretStore>,
    cluster: Store<ClusterSecretStore>,
}

impl StoreCache {
    /// The cache, and the future that keeps it filled (run it until shutdown).
    pub fn new(client: &Client) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (namespaced, namespaced_writer) = reflector::store();
        let (cluster, cluster_writer) = reflector::store();
        let drive_namespaced = watcher(
            Api::<SecretStore>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(namespaced_writer)
        .for_each(|_| future::ready(()));
        let drive_cluster = watcher(
            Api::<ClusterSecretStore>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(cluster_writer)
        .for_each(|_| future::ready(()));
        let run = async move {
            future::join(drive_namespaced, drive_cluster).await;
        };
        (
            StoreCache {
                namespaced,
                cluster,
            },
            run,
        )
    }

    /// The AWS provider of the store `es` uses, when the store is known.
    pub fn aws_of(&self, es: &ExternalSecret) -> Option<AwsProvider> {
        let reference = es.spec.secret_store_ref.as_ref()?;
        let spec = match reference.kind.as_deref() {
            Some("ClusterSecretStore") => self
                .cluster
                .get(&ObjectRef::new(&reference.name))?
                .spec
                .store
                .clone(),
            _ => {
                let key =
                    ObjectRef::new(&reference.name).within(&es.namespace().unwrap_or_default());
                self.namespaced.get(&key)?.spec.store.clone()
            }
        };
        spec.provider.aws
    }

    /// The spec of a store, when the cache has it.
    pub fn spec(&self, kind: StoreKind, namespace: &str, name: &str) -> Option<StoreSpec> {
        match kind {
            StoreKind::ClusterSecretStore => {
                Some(self.cluster.get(&ObjectRef::new(name))?.spec.store.clone())
            }
            StoreKind::SecretStore => Some(
                self.namespaced
                    .get(&ObjectRef::new(name).within(namespace))?
                    .spec
                    .store
                    .clone(),
            ),
        }
    }

    /// Every distinct non-empty `prefix` of the stores.
    pub fn prefixes(&self) -> Vec<String> {
        let namespaced = self
            .namespaced
            .state()
            .into_iter()
            .map(|s| s.spec.store.clone());
        let cluster = self
            .cluster
            .state()
            .into_iter()
            .map(|s| s.spec.store.clone());
        let mut prefixes: Vec<String> = namespaced
            .chain(cluster)
            .filter_map(|spec| spec.provider.aws?.prefix.filter(|p| !p.is_empty()))
            .collect();
        prefixes.sort();
        prefixes.dedup();
        prefixes
    }
}
