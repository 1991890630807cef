// kube's `printcolumn(..)` attributes repeat `type_ = ..` by design; clippy mistakes them for duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Condition, DNS_SUBDOMAIN, SECRET_KEY, any_json, any_object};

/// ExternalSecret: which secrets to read from a store, and the Kubernetes Secret to write.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1",
    kind = "ExternalSecret",
    plural = "externalsecrets",
    shortname = "es",
    category = "external-secrets",
    namespaced,
    doc = "ExternalSecret (external-secrets.io, as External Secrets Operator defines it): which \
           secrets to read from a SecretStore or ClusterSecretStore, and the Kubernetes Secret to \
           write them to. secret-bridge keeps that Secret current by AWS events.",
    status = "ExternalSecretStatus",
    printcolumn(
        name = "StoreType",
        type_ = "string",
        json_path = ".spec.secretStoreRef.kind",
        priority = "1"
    ),
    printcolumn(
        name = "Store",
        type_ = "string",
        json_path = ".spec.secretStoreRef.name"
    ),
    printcolumn(
        name = "Refresh Interval",
        type_ = "string",
        json_path = ".spec.refreshInterval"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.refreshTime")
)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretSpec {
    /// The store to read from: a SecretStore of this namespace or a ClusterSecretStore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store_ref: Option<SecretStoreRef>,
    /// The Kubernetes Secret to write, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {"creationPolicy": "Owner", "deletionPolicy": "Retain"}))]
    pub target: Option<ExternalSecretTarget>,
    /// How long until the values are read again, as a Go duration (`1h`, `15m`, `1h30m`).
    /// `0` syncs once. Defaults to `1h0m0s`. AWS events refresh sooner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "1h0m0s"))]
    pub refresh_interval: Option<String>,
    /// When to sync: `Periodic` (default: every `refreshInterval` and on AWS events),
    /// `OnChange` (only when the ExternalSecret's spec, labels or annotations change) or
    /// `CreatedOnce` (only while the Secret was never synced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["CreatedOnce", "Periodic", "OnChange"]))]
    pub refresh_policy: Option<String>,
    /// One Secret key per entry, each read from one remote secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<ExternalSecretData>,
    /// Many Secret keys at once: every key of a JSON secret (`extract`) or every secret that
    /// matches (`find`). Entries are merged in order; `data` wins over them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_from: Vec<ExternalSecretDataFrom>,
    /// When periodic refreshes may run. Not served: reported as `Unsupported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub sync_windows: Option<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreRef {
    /// The name of the store.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// `SecretStore` (when empty) or `ClusterSecretStore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["SecretStore", "ClusterSecretStore"]))]
    pub kind: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretTarget {
    /// Name of the Secret to write; defaults to the ExternalSecret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: Option<String>,
    /// Who creates the Secret: `Owner` (default: created and owned by the ExternalSecret, so
    /// deleted with it), `Orphan` (created, not owned), `Merge` (only merged into an existing
    /// Secret), `CreateOrMerge` (created when missing, else merged; not owned) or `None`
    /// (no Secret is written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend(
        "enum" = ["Owner", "Orphan", "Merge", "None", "CreateOrMerge"],
        "default" = "Owner"
    ))]
    pub creation_policy: Option<String>,
    /// What happens when the remote secrets are gone: `Retain` (default: keep the Secret and
    /// report the error), `Delete` (delete the Secret) or `Merge` (drop only their keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Delete", "Merge", "Retain"], "default" = "Retain"))]
    pub deletion_policy: Option<String>,
    /// How the Secret is built from the values read (type, metadata, templated data).
    // Boxed: most ExternalSecrets have none, and each cached one would hold its room inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Box<ExternalSecretTemplate>>,
    /// Makes the Secret immutable once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// A non-Secret target (`apiVersion`/`kind`). Not served: reported as `Unsupported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub manifest: Option<Value>,
}

/// `spec.target.template`: how the Secret is built from the values read (ESO's engine `v2`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretTemplate {
    /// The Secret's `type` (`Opaque` when empty).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The template engine: `v2` (default). `v1` (ESO's v1beta1 only) is admitted and
    /// reported as `Unsupported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["v1", "v2"], "default" = "v2"))]
    pub engine_version: Option<String>,
    /// Labels, annotations and finalizers of the Secret (each value a Go template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// `Replace` (default: only the templated keys) or `Merge` (templated keys over the values read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Replace", "Merge"], "default" = "Replace"))]
    pub merge_policy: Option<String>,
    /// Secret key → Go template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Templates kept in ConfigMaps or Secrets of the namespace, or given literally.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_from: Vec<TemplateFrom>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    /// Annotations of the Secret; each value is a Go template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Labels of the Secret; each value is a Go template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Finalizers of the Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// Templates kept in a ConfigMap or Secret of the ExternalSecret's namespace, or given literally.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateFrom {
    /// Templates kept in a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<TemplateRef>,
    /// Templates kept in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TemplateRef>,
    /// Where the rendered output goes: `Data` (default), `Annotations` or `Labels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Data"))]
    pub target: Option<String>,
    /// A template whose output is YAML/JSON key-value pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<String>,
    /// How to decode the ConfigMap/Secret values before use (`None` when empty). Not served:
    /// reported as `Unsupported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Auto", "Base64", "Base64URL", "None"]))]
    pub values_decoding_strategy: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// The name of the ConfigMap or Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// Its keys to use as templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<TemplateRefItem>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRefItem {
    /// A key of the ConfigMap or Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub key: String,
    /// `Values` (default: the item's value is a template for the key of the same name) or
    /// `KeysAndValues` (the item renders to YAML whose keys and values both become Secret data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Values", "KeysAndValues"], "default" = "Values"))]
    pub template_as: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretData {
    /// The key in the Kubernetes Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub secret_key: String,
    /// The remote secret (and which part of it) to read.
    pub remote_ref: RemoteRef,
    /// Another store or a generator to read from. Not served: reported as `Unsupported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub source_ref: Option<Value>,
}

/// Which secret (and which part of it) to read.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRef {
    /// Secret name, full ARN or partial ARN.
    pub key: String,
    /// gjson path into a JSON secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// A staging label (`AWSCURRENT`, `AWSPREVIOUS`, custom) or `uuid/<VersionId>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How values are decoded: `None` (when empty), `Base64`, `Base64URL` or `Auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Auto", "Base64", "Base64URL", "None"]))]
    pub decoding_strategy: Option<String>,
    /// How keys are converted: `Default` (when empty) or `Unicode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Default", "Unicode"]))]
    pub conversion_strategy: Option<String>,
    /// `None` (when empty) or `Fetch` (read the secret's tags instead of its value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["None", "Fetch"]))]
    pub metadata_policy: Option<String>,
    /// `Ignore` (when empty) or `Fail` when a value contains a NUL byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Ignore", "Fail"]))]
    pub null_byte_policy: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretDataFrom {
    /// Every top-level key of one JSON secret becomes a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<RemoteRef>,
    /// Every secret whose name, path and tags match becomes a Secret key.
    // Boxed, as `target.template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find: Option<Box<ExternalSecretFind>>,
    /// Applied in order to the keys that `extract` or `find` produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrite: Vec<ExternalSecretRewrite>,
    /// Another store or a generator to read from. Not served: reported as `Unsupported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub source_ref: Option<Value>,
}

/// `dataFrom.find`: every secret whose name, path and tags match, one Secret key per secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretFind {
    /// Only secrets whose name starts with this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Only secrets whose name matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<FindName>,
    /// Only secrets carrying all these tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// How keys are converted: `Default` (when empty) or `Unicode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Default", "Unicode"]))]
    pub conversion_strategy: Option<String>,
    /// How values are decoded: `None` (when empty), `Base64`, `Base64URL` or `Auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Auto", "Base64", "Base64URL", "None"]))]
    pub decoding_strategy: Option<String>,
    /// `Ignore` (when empty) or `Fail` when a value contains a NUL byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Ignore", "Fail"]))]
    pub null_byte_policy: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindName {
    /// A regular expression (Go RE2 syntax) the secret name must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<String>,
}

/// One rewrite of the keys of a `dataFrom` entry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretRewrite {
    /// Replace what a regular expression matches in each key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<RewriteRegexp>,
    /// A Go template applied to each key (`.value` is the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<RewriteTransform>,
    /// Merge several keys into one. Not served: reported as `Unsupported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub merge: Option<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RewriteRegexp {
    /// A regular expression (Go RE2 syntax) matched against each key.
    pub source: String,
    /// What replaces each match (`$1`, `${name}` refer to groups); may be empty.
    // Nullable in the schema because Kubernetes 1.20 apiservers turn an empty string there into
    // `null` before validating it.
    #[serde(default, deserialize_with = "super::null_as_empty")]
    #[schemars(schema_with = "super::nullable_string")]
    pub target: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RewriteTransform {
    /// A Go template rendering the new key from `.value`, the old key.
    pub template: String,
}

/// What the controller last did: the `Ready` condition, when, and what it synced.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretStatus {
    /// When the values were last read and the Secret last brought up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<Time>,
    /// `<generation>-<hash of labels and annotations>`, as ESO records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_resource_version: Option<String>,
    /// `Ready`, with the reason of the last sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Secret written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<LocalObjectReference>,
    /// The AWS VersionId last written for each secret read, keyed by `key[@version]`.
    /// Always written (even empty): server-side apply on Kubernetes 1.20 turns a map field
    /// that one apply sets and the next omits into `null`, which the schema refuses.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub synced_versions: SyncedVersions,
}

/// `status.syncedVersions`: a map, held as its entries sorted by key. A `BTreeMap` of one
/// entry (the common case) allocates a node with room for eleven, about 540 bytes in each
/// cached ExternalSecret.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncedVersions(Vec<(String, String)>);

impl SyncedVersions {
    /// Sets the version of `key`.
    pub fn insert(&mut self, key: String, version: String) {
        match self.find(&key) {
            Ok(at) => self.0[at].1 = version,
            Err(at) => self.0.insert(at, (key, version)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The version of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        Some(&self.0[self.find(key).ok()?].1)
    }

    /// Where `key` is, or where it would go.
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }
}

impl From<BTreeMap<String, String>> for SyncedVersions {
    fn from(versions: BTreeMap<String, String>) -> Self {
        SyncedVersions(versions.into_iter().collect())
    }
}

impl Serialize for SyncedVersions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(key, version)| (key, version)))
    }
}

impl<'de> Deserialize<'de> for SyncedVersions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(SyncedVersions::from)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct LocalObjectReference {
    /// The object's name.
    pub name: String,
}

impl ExternalSecret {
    /// Every `remoteRef.key` this ExternalSecret reads (names or ARNs).
    pub fn remote_keys(&self) -> impl Iterator<Item = &str> {
        let data = self.spec.data.iter().map(|d| d.remote_ref.key.as_str());
        let extract = self
            .spec
            .data_from
            .iter()
            .filter_map(|d| d.extract.as_ref().map(|r| r.key.as_str()));
        data.chain(extract)
    }

    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_versions_read_and_write_as_a_map_sorted_by_key() {
        let json = serde_json::json!({"syncedVersions": {"b": "v2", "a@AWSPREVIOUS": "v1"}});
        let mut status: ExternalSecretStatus = serde_json::from_value(json).unwrap();
        status.synced_versions.insert("c".into(), "v3".into());
        status.synced_versions.insert("b".into(), "v4".into());
        let written = serde_json::to_value(&status).unwrap();
        assert_eq!(
            serde_json::to_string(&written["syncedVersions"]).unwrap(),
            r#"{"a@AWSPREVIOUS":"v1","b":"v4","c":"v3"}"#
        );
        let from_map: SyncedVersions = BTreeMap::from([("c".to_owned(), "v3".to_owned())]).into();
        let mut built = SyncedVersions::default();
        built.insert("c".into(), "v3".into());
        assert_eq!(from_map, built);
        assert_eq!(built.get("c").map(String::as_str), Some("v3"));
        assert_eq!(built.get("b"), None);
    }
}
