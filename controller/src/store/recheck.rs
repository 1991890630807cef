//! When a store is validated again besides its periodic check: at once when a credentials
//! Secret it names changes (created, replaced, deleted), rather than at its next check (up to
//! a minute for a store that is not ready, five for one that is).

use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::broadcast::error::RecvError;

use crate::api::secret_store::StoreSpec;
use crate::cache::Caches;
use crate::store::resolve::StoreKind;
use crate::store::status::StoreObject;

/// The stores of `stores` to check again, one for each change of a Secret they name.
pub fn on_credentials_change<K: StoreObject>(
    caches: &Caches,
    stores: Store<K>,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static {
    let changes = futures::stream::unfold(caches.secrets.changes(), |mut changes| async move {
        loop {
            match changes.recv().await {
                Ok(change) => return Some((change, changes)),
                // Missed changes: those stores wait for their periodic check.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    changes.flat_map(move |(namespace, name)| {
        let affected: Vec<ObjectRef<K>> = stores
            .state()
            .iter()
            .filter(|store| {
                let own_namespace = store.namespace();
                names_secret(
                    store.store_spec(),
                    K::KIND,
                    own_namespace.as_deref(),
                    &namespace,
                    &name,
                )
            })
            .map(|store| ObjectRef::from_obj(&**store))
            .collect();
        futures::stream::iter(affected)
    })
}

/// Whether the store (of `store_namespace`, for a SecretStore) reads its keys from the Secret
/// `namespace`/`name`.
fn names_secret(
    spec: &StoreSpec,
    kind: StoreKind,
    store_namespace: Option<&str>,
    namespace: &str,
    name: &str,
) -> bool {
    let Some(keys) = spec
        .provider
        .aws
        .as_ref()
        .and_then(|aws| aws.auth.as_ref())
        .and_then(|auth| auth.secret_ref.as_ref())
    else {
        return false;
    };
    [
        Some(&keys.access_key_id_secret_ref),
        Some(&keys.secret_access_key_secret_ref),
        keys.session_token_secret_ref.as_ref(),
    ]
    .into_iter()
    .flatten()
    .any(|selector| {
        // A SecretStore reads only its own namespace; a ClusterSecretStore the one named.
        let secret_namespace = match kind {
            StoreKind::SecretStore => store_namespace,
            StoreKind::ClusterSecretStore => selector.namespace.as_deref(),
        };
        selector.name == name && secret_namespace == Some(namespace)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(namespace: Option<&str>) -> StoreSpec {
        serde_json::from_value(json!({"provider": {"aws": {
            "service": "SecretsManager",
            "region": "eu-west-1",
            "auth": {"secretRef": {
                "accessKeyIDSecretRef": {"name": "keys", "key": "id", "namespace": namespace},
                "secretAccessKeySecretRef": {"name": "keys", "key": "secret", "namespace": namespace},
            }},
        }}}))
        .unwrap()
    }

    #[test]
    fn a_secret_store_names_a_secret_of_its_own_namespace() {
        let kind = StoreKind::SecretStore;
        assert!(names_secret(&spec(None), kind, Some("a"), "a", "keys"));
        assert!(!names_secret(&spec(None), kind, Some("a"), "b", "keys"));
        assert!(!names_secret(&spec(None), kind, Some("a"), "a", "other"));
        // `namespace` in a SecretStore's selector is not honoured.
        assert!(names_secret(&spec(Some("b")), kind, Some("a"), "a", "keys"));
    }

    #[test]
    fn a_cluster_secret_store_names_the_namespace_it_gives() {
        let kind = StoreKind::ClusterSecretStore;
        assert!(names_secret(&spec(Some("b")), kind, None, "b", "keys"));
        assert!(!names_secret(&spec(Some("b")), kind, None, "a", "keys"));
        assert!(!names_secret(&spec(None), kind, None, "a", "keys"));
    }
}
