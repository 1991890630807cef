//! Builders for the ESO resources the tests apply: SecretStores and ClusterSecretStores
//! (static keys, IRSA, assumed roles, conditions) and ExternalSecrets. Each builds the object
//! as JSON, so a test names only what it cares about and the rest is written one way.

mod external_secret;
mod store;

pub use external_secret::ExternalSecret;
pub use store::Store;

use kube::Client;
use serde_json::Value;

use crate::kube_helpers::apply_value;

/// The API version of every ESO resource the tests write.
pub const API_VERSION: &str = "external-secrets.io/v1";

/// The Secret holding the emulator's keys in a tenant's namespace, and its two keys.
pub const KEYS_SECRET: &str = "aws-keys";
pub const ACCESS_KEY: &str = "access-key";
pub const SECRET_ACCESS_KEY: &str = "secret-access-key";

/// A resource the tests can apply.
pub trait Manifest {
    fn to_value(&self) -> Value;

    /// The manifest as YAML, for code that applies YAML documents.
    fn to_yaml(&self) -> String {
        yaml_serde::to_string(&self.to_value()).expect("a manifest is YAML")
    }

    /// Applies it with server-side apply, in `namespace` unless it is cluster-scoped.
    #[allow(async_fn_in_trait)]
    async fn apply(&self, kube: &Client, namespace: &str) {
        apply_value(kube, self.to_value(), namespace).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_static_keys_store_reads_the_tenants_keys() {
        let store = Store::secret_store("aws")
            .controller("class-a")
            .static_keys()
            .to_value();
        assert_eq!(
            store,
            json!({
                "apiVersion": "external-secrets.io/v1",
                "kind": "SecretStore",
                "metadata": {"name": "aws"},
                "spec": {
                    "controller": "class-a",
                    "provider": {"aws": {
                        "service": "SecretsManager",
                        "region": "us-east-1",
                        "auth": {"secretRef": {
                            "accessKeyIDSecretRef": {"name": "aws-keys", "key": "access-key"},
                            "secretAccessKeySecretRef": {"name": "aws-keys", "key": "secret-access-key"},
                        }},
                    }},
                },
            })
        );
    }

    #[test]
    fn a_cluster_store_names_the_keys_namespace_and_its_conditions() {
        let store = Store::cluster_secret_store("shared")
            .region("eu-west-1")
            .static_keys_in("tenant")
            .allow_namespaces(&["a"])
            .allow_namespace_regexes(&["^b-"])
            .to_value();
        assert_eq!(store["kind"], "ClusterSecretStore");
        assert!(store["spec"].get("controller").is_none());
        assert_eq!(store["spec"]["provider"]["aws"]["region"], "eu-west-1");
        assert_eq!(
            store["spec"]["provider"]["aws"]["auth"]["secretRef"]["accessKeyIDSecretRef"],
            json!({"name": "aws-keys", "key": "access-key", "namespace": "tenant"})
        );
        assert_eq!(
            store["spec"]["conditions"],
            json!([{"namespaces": ["a"]}, {"namespaceRegexes": ["^b-"]}])
        );
    }

    #[test]
    fn an_external_secret_lists_its_data_in_order() {
        let es = ExternalSecret::new("app")
            .secret_store("aws")
            .refresh_interval("1h")
            .data("value", "key-1")
            .data_property("password", "key-2", "pass")
            .extract("key-3")
            .to_value();
        assert_eq!(
            es,
            json!({
                "apiVersion": "external-secrets.io/v1",
                "kind": "ExternalSecret",
                "metadata": {"name": "app"},
                "spec": {
                    "secretStoreRef": {"name": "aws", "kind": "SecretStore"},
                    "refreshInterval": "1h",
                    "data": [
                        {"secretKey": "value", "remoteRef": {"key": "key-1"}},
                        {"secretKey": "password", "remoteRef": {"key": "key-2", "property": "pass"}},
                    ],
                    "dataFrom": [{"extract": {"key": "key-3"}}],
                },
            })
        );
        let yaml = ExternalSecret::new("x").to_yaml();
        assert!(yaml.contains("kind: ExternalSecret"), "{yaml}");
    }
}
