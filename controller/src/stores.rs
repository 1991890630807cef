//! A cache of SecretStores and ClusterSecretStores, so that events are matched with the region
//! and `prefix` of the store each ExternalSecret uses, without an API call per event; and of
//! what stores read besides (Namespace labels, credentials Secrets, IRSA ServiceAccounts).

use std::time::Duration;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::secret_store::{AwsProvider, StoreSpec};
use crate::api::{ClusterSecretStore, ExternalSecret, SecretStore};
use crate::namespaces::NamespaceLabels;
use crate::object_cache::ObjectCache;
use crate::store::StoreKind;

/// How long a credentials Secret is reused while no watch confirms it is unchanged.
const SECRET_TTL: Duration = Duration::from_secs(30);
/// How long a credentials Secret is reused while the watch would have dropped it on change.
const WATCHED_SECRET_TTL: Duration = Duration::from_secs(300);
/// How long an IRSA ServiceAccount (its role annotation) is reused.
const SERVICE_ACCOUNT_TTL: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct StoreCache {
    namespaced: Store<SecretStore>,
    cluster: Store<ClusterSecretStore>,
    pub namespaces: NamespaceLabels,
    pub secrets: ObjectCache<Secret>,
    pub service_accounts: ObjectCache<ServiceAccount>,
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
                namespaces: NamespaceLabels::new(client.clone()),
                secrets: ObjectCache::watched(client.clone(), SECRET_TTL, WATCHED_SECRET_TTL),
                service_accounts: ObjectCache::new(client.clone(), SERVICE_ACCOUNT_TTL),
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
