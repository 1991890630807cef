// kube's `printcolumn(..)` attributes repeat `type_ = ..` by design; clippy mistakes them for duplicates.
#![allow(clippy::duplicated_attributes)]
//! `SecretStore` and `ClusterSecretStore`: where and how to read AWS Secrets Manager.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Condition, DNS_LABEL, DNS_SUBDOMAIN, SECRET_KEY, any_object};

/// The spec shared by `SecretStore` and `ClusterSecretStore`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreSpec {
    /// The controller class that serves this store (like an ingress class); empty means the
    /// controller started without `--controller-class`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// Where the secrets are kept. Only `aws` is served.
    pub provider: StoreProvider,
    /// HTTP retries on failures (ESO's setting; the AWS SDK's own retries apply instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub retry_settings: Option<Value>,
    /// How often, in seconds, the store is re-validated (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<i64>,
    /// ClusterSecretStore only: which namespaces may use the store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ClusterStoreCondition>,
}

/// Only `aws` is served; any other provider is kept so it can be reported as unsupported.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreProvider {
    /// AWS Secrets Manager (or Parameter Store, not served yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsProvider>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsProvider {
    /// `SecretsManager` (served), `ParameterStore` or `CertificateManager` (not served:
    /// reported as `Unsupported`).
    #[schemars(extend("enum" = ["SecretsManager", "ParameterStore", "CertificateManager"]))]
    pub service: String,
    /// The AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// The credentials: keys in a Secret, or a ServiceAccount for IRSA. Without it, the AWS
    /// SDK's default chain of the controller (environment, IRSA, Pod Identity, instance role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AwsAuth>,
    /// An IAM role ARN assumed with those credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// IAM role ARNs assumed in order before `role` (a role chain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_roles: Vec<String>,
    /// The external ID given when assuming `role`.
    #[serde(
        default,
        rename = "externalID",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_id: Option<String>,
    /// STS session tags set when assuming `role`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_tags: Vec<AwsTag>,
    /// Session tag keys that stay on the session through later role assumptions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitive_tag_keys: Vec<String>,
    /// `None` (default: `sessionTags`), `Simple` (tags `esoNamespace`, `esoStoreName`,
    /// `esoStoreKind`) or `Custom` (those and `customSessionTags`), on the `role` session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["None", "Simple", "Custom"], "default" = "None"))]
    pub session_tags_policy: Option<String>,
    /// Session tags added with `sessionTagsPolicy: Custom`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_session_tags: BTreeMap<String, String>,
    /// Prepended to every `remoteRef.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Settings for deleting secrets, used by PushSecret only (not served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub secrets_manager: Option<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsTag {
    /// The tag's key.
    pub key: String,
    /// The tag's value.
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsAuth {
    /// Static keys kept in a Kubernetes Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<AwsSecretRefAuth>,
    /// A ServiceAccount token exchanged for the credentials of its IAM role (IRSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<AwsJwtAuth>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsSecretRefAuth {
    /// The Secret key holding the access key ID.
    #[serde(rename = "accessKeyIDSecretRef")]
    pub access_key_id_secret_ref: SecretKeySelector,
    /// The Secret key holding the secret access key.
    pub secret_access_key_secret_ref: SecretKeySelector,
    /// The Secret key holding a session token, for temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_secret_ref: Option<SecretKeySelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsJwtAuth {
    /// The ServiceAccount whose token is exchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_ref: Option<ServiceAccountSelector>,
}

/// IRSA: the ServiceAccount whose token is exchanged for AWS credentials.
/// `namespace` is honoured for ClusterSecretStores only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSelector {
    /// The ServiceAccount's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// Its namespace (ClusterSecretStores only; a SecretStore uses its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub namespace: Option<String>,
    /// Token audiences besides `sts.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
}

/// A key of a Kubernetes Secret. `namespace` is honoured for ClusterSecretStores only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// The key in the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub key: String,
    /// Its namespace (ClusterSecretStores only; a SecretStore uses its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub namespace: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStoreCondition {
    /// Namespaces whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces whose name matches one of these regular expressions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_regexes: Vec<String>,
}

/// Whether the store works: the `Ready` condition of its last validation, and what it can do.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    /// `Ready`: whether the credentials were last validated with AWS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// `ReadOnly`, `WriteOnly` or `ReadWrite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<String>,
}

/// SecretStore: a namespaced store, usable only from its own namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1",
    kind = "SecretStore",
    plural = "secretstores",
    shortname = "ss",
    category = "external-secrets",
    namespaced,
    doc = "SecretStore (external-secrets.io): how to read AWS Secrets Manager (region, \
           credentials, roles), usable by the ExternalSecrets of its own namespace.",
    status = "StoreStatus",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Capabilities",
        type_ = "string",
        json_path = ".status.capabilities"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    )
)]
pub struct SecretStoreSpec {
    #[serde(flatten)]
    pub store: StoreSpec,
}

/// ClusterSecretStore: a cluster-wide store, usable from the namespaces its `conditions` allow.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1",
    kind = "ClusterSecretStore",
    plural = "clustersecretstores",
    shortname = "css",
    category = "external-secrets",
    doc = "ClusterSecretStore (external-secrets.io): how to read AWS Secrets Manager (region, \
           credentials, roles), usable by ExternalSecrets of the namespaces its conditions allow.",
    status = "StoreStatus",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Capabilities",
        type_ = "string",
        json_path = ".status.capabilities"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    )
)]
pub struct ClusterSecretStoreSpec {
    #[serde(flatten)]
    pub store: StoreSpec,
}
