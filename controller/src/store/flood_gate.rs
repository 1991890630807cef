//! ESO's flood gate (`--flood-gate`): while a store is not `Ready`, its ExternalSecrets are not
//! synced and say why. And the other half, which holds with the gate open or closed: when a
//! store's status changes (first validated, ready again, broken), its ExternalSecrets that
//! wait for it (parked: held by the gate, or left alone while the store was missing) are
//! reconciled at once instead of waiting for their retry or resync.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::ExternalSecret;
use crate::api::secret_store::StoreStatus;
use crate::cache::Caches;
use crate::events::triggers::Triggers;
use crate::store::resolve::{ResolvedStore, StoreKind};
use crate::{Error, Result};
use tracing::debug;

/// Refuses to sync through a store whose `Ready` condition is not `True`, as ESO's
/// `assertStoreIsUsable` does (a store not validated yet is not ready either). A store the
/// cache does not have (read from the API just now) passes: the gate never blocks on a cache lag.
pub fn check(caches: &Caches, store: &ResolvedStore, namespace: &str) -> Result<()> {
    let Some(status) = store_status(caches, store.kind, namespace, &store.name) else {
        return Ok(());
    };
    let ready = status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(condition) if condition.status == "True" => Ok(()),
        Some(condition) => Err(Error::StoreNotReady(format!(
            "{} {:?} is not ready: {}",
            store.kind.as_str(),
            store.name,
            condition.message.as_deref().unwrap_or_default()
        ))),
        None => Err(Error::StoreNotReady(format!(
            "{} {:?} is not ready: not validated yet",
            store.kind.as_str(),
            store.name
        ))),
    }
}

/// The status of a cached store: `None` when the cache does not have the store.
fn store_status(
    caches: &Caches,
    kind: StoreKind,
    namespace: &str,
    name: &str,
) -> Option<Option<StoreStatus>> {
    match kind {
        StoreKind::SecretStore => caches
            .secret_stores
            .get(&ObjectRef::new(name).within(namespace))
            .map(|s| s.status.clone()),
        StoreKind::ClusterSecretStore => caches
            .cluster_secret_stores
            .get(&ObjectRef::new(name))
            .map(|s| s.status.clone()),
    }
}

/// How long a store's new status may take to reach the cache before its ExternalSecrets are
/// reconciled anyway.
const CACHE_LAG: Duration = Duration::from_secs(5);

/// Reconciles the ExternalSecrets of `store` once the cache shows its new readiness `ready`
/// (so that the flood gate reads the new status, not the old one), or after [`CACHE_LAG`].
pub async fn reconcile_users_once_cached(
    caches: Caches,
    triggers: Arc<Triggers>,
    store: ResolvedStore,
    namespace: String,
    ready: bool,
) {
    let deadline = tokio::time::Instant::now() + CACHE_LAG;
    while tokio::time::Instant::now() < deadline {
        let cached_ready = store_status(&caches, store.kind, &namespace, &store.name)
            .flatten()
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && (c.status == "True") == ready)
            });
        if cached_ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let namespace = (store.kind == StoreKind::SecretStore).then_some(namespace.as_str());
    let users = external_secrets_of(&caches, store.kind, namespace, &store.name);
    let woken = triggers.wake_parked(users);
    debug!(store = %store.describe(), external_secrets = woken, "store status changed; reconciling its ExternalSecrets that wait for it");
}

/// The cached ExternalSecrets that use the store `kind` `name` (of `namespace`, for a SecretStore).
pub fn external_secrets_of(
    caches: &Caches,
    kind: StoreKind,
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<ExternalSecret>> {
    caches
        .external_secrets
        .state()
        .iter()
        .filter(|es| uses_store(es, kind, namespace, name))
        .map(|es| ObjectRef::from_obj(&**es))
        .collect()
}

fn uses_store(es: &ExternalSecret, kind: StoreKind, namespace: Option<&str>, name: &str) -> bool {
    let Some(reference) = es.spec.secret_store_ref.as_ref() else {
        return false;
    };
    let referenced_kind = match reference.kind.as_deref() {
        Some("ClusterSecretStore") => StoreKind::ClusterSecretStore,
        _ => StoreKind::SecretStore,
    };
    referenced_kind == kind
        && reference.name == name
        && (kind == StoreKind::ClusterSecretStore || es.namespace().as_deref() == namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ExternalSecretSpec;
    use crate::api::external_secret::SecretStoreRef;

    fn es(namespace: &str, kind: Option<&str>, store: &str) -> ExternalSecret {
        let mut es = ExternalSecret::new(
            "app",
            ExternalSecretSpec {
                secret_store_ref: Some(SecretStoreRef {
                    name: store.into(),
                    kind: kind.map(Into::into),
                }),
                ..Default::default()
            },
        );
        es.metadata.namespace = Some(namespace.into());
        es
    }

    #[test]
    fn a_secret_store_is_used_only_from_its_namespace() {
        let kind = StoreKind::SecretStore;
        assert!(uses_store(&es("a", None, "aws"), kind, Some("a"), "aws"));
        assert!(uses_store(
            &es("a", Some("SecretStore"), "aws"),
            kind,
            Some("a"),
            "aws"
        ));
        assert!(!uses_store(&es("b", None, "aws"), kind, Some("a"), "aws"));
        assert!(!uses_store(&es("a", None, "other"), kind, Some("a"), "aws"));
        let cluster = es("a", Some("ClusterSecretStore"), "aws");
        assert!(!uses_store(&cluster, kind, Some("a"), "aws"));
    }

    #[test]
    fn a_cluster_secret_store_is_used_from_any_namespace() {
        let kind = StoreKind::ClusterSecretStore;
        assert!(uses_store(
            &es("a", Some("ClusterSecretStore"), "aws"),
            kind,
            None,
            "aws"
        ));
        assert!(uses_store(
            &es("b", Some("ClusterSecretStore"), "aws"),
            kind,
            None,
            "aws"
        ));
        assert!(!uses_store(&es("a", None, "aws"), kind, None, "aws"));
    }
}
