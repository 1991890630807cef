//! The `external-secrets.io` API, as External Secrets Operator defines it for the AWS Secrets
//! Manager provider. `v1` is stored; `v1beta1` is served with the same schema (the AWS fields did
//! not change between the two), so manifests written for either apply unchanged.

pub mod cluster_external_secret;
pub mod condition;
pub mod crd;
pub mod external_secret;
pub mod secret_store;

pub use cluster_external_secret::ClusterExternalSecret;
pub use condition::Condition;
pub use external_secret::{ExternalSecret, ExternalSecretSpec, ExternalSecretStatus};
pub use secret_store::{ClusterSecretStore, SecretStore, StoreSpec};

pub const GROUP: &str = "external-secrets.io";

/// A Kubernetes object name (RFC 1123 subdomain), as ESO's schema checks it.
pub(crate) const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A namespace name (RFC 1123 label), as ESO's schema checks it.
pub(crate) const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A key of a Secret or ConfigMap, as ESO's schema checks it.
pub(crate) const SECRET_KEY: &str = r"^[-._a-zA-Z0-9]+$";

/// Schema for fields whose content is free-form JSON (kept, then validated by the controller).
pub(crate) fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// Schema for an object with any keys (like `template`), kept as is.
pub(crate) fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// Schema for a string that may arrive as `null` (read as empty).
pub(crate) fn nullable_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "nullable": true })
}

/// Reads `null` as an empty string.
pub(crate) fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    use serde::Deserialize;
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::external_secret::RewriteRegexp;

    #[test]
    fn an_empty_rewrite_target_may_arrive_as_null() {
        let rewrite: RewriteRegexp =
            serde_json::from_value(serde_json::json!({"source": "^a", "target": null})).unwrap();
        assert_eq!(rewrite.target, "");
        let rewrite: RewriteRegexp =
            serde_json::from_value(serde_json::json!({"source": "^a"})).unwrap();
        assert_eq!(rewrite.target, "");
    }
}
