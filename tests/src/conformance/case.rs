//! The case file format, parsed strictly (an unknown field is an error, so a typo cannot
//! silently weaken a case).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::stack::workspace_root;

/// The feature directories, in the order the README lists them.
pub const FEATURES: &[&str] = &[
    "remote-ref",
    "data-from-extract",
    "data-from-find",
    "rewrite",
    "target-policies",
    "template",
    "refresh",
    "status",
    "stores",
    "cluster-external-secret",
    "unsupported",
    "errors",
];

/// One case: `tests/conformance/<feature>/<name>.yaml`.
#[derive(Debug, Clone)]
pub struct Case {
    pub feature: String,
    pub name: String,
    pub path: PathBuf,
    /// The file's text, placeholders unresolved (they are substituted per run).
    pub text: String,
    pub spec: CaseSpec,
}

impl Case {
    /// `<feature>/<name>`, what failures and `CONFORMANCE_FILTER` refer to.
    pub fn id(&self) -> String {
        format!("{}/{}", self.feature, self.name)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaseSpec {
    pub description: String,
    #[serde(default)]
    pub aws: Vec<AwsSecret>,
    /// Namespaces besides the case's own (`${NAMESPACE}`), created before `objects`.
    #[serde(default)]
    pub namespaces: Vec<NamespaceSpec>,
    /// Also create ClusterSecretStore `${CASE}` (no conditions) with the case's credentials.
    #[serde(default)]
    pub cluster_store: bool,
    /// Kubernetes YAML (several documents) applied after the AWS secrets and before `manifest`.
    #[serde(default)]
    pub objects: Option<String>,
    /// The ExternalSecret(s) or ClusterExternalSecret, verbatim as a user writes them.
    pub manifest: String,
    pub expect: Expect,
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// A secret created in Secrets Manager before anything is applied.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsSecret {
    pub name: String,
    #[serde(flatten)]
    pub value: AwsValue,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Further versions, put in order after the secret is created.
    #[serde(default)]
    pub versions: Vec<AwsVersion>,
}

/// `string` (SecretString) or `binary` (SecretBinary, given as base64).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsValue {
    #[serde(default)]
    pub string: Option<String>,
    #[serde(default)]
    pub binary: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsVersion {
    #[serde(flatten)]
    pub value: AwsValue,
    /// The version's staging labels; AWS's default (`AWSCURRENT`) when empty.
    #[serde(default)]
    pub stages: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One step after the first expectation; exactly one field is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Step {
    /// Seconds to wait.
    #[serde(default)]
    pub wait: Option<f64>,
    /// PutSecretValue on an existing secret.
    #[serde(default)]
    pub put_secret_value: Option<PutValue>,
    /// UpdateSecretVersionStage: move `stage` onto version `version` (index as in
    /// `${VERSION:name:n}`, counting the versions put by earlier steps too).
    #[serde(default)]
    pub update_secret_version_stage: Option<MoveStage>,
    /// TagResource (adds or replaces these tags).
    #[serde(default)]
    pub tag_resource: Option<TagSecret>,
    /// DeleteSecret in AWS.
    #[serde(default)]
    pub delete_aws_secret: Option<DeleteAwsSecret>,
    /// Kubernetes YAML applied with server-side apply (the whole object, as `kubectl apply`).
    #[serde(default)]
    pub apply: Option<String>,
    /// Deletes a Kubernetes object.
    #[serde(default)]
    pub delete: Option<ObjectRef>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

impl Step {
    pub fn actions(&self) -> usize {
        [
            self.wait.is_some(),
            self.put_secret_value.is_some(),
            self.update_secret_version_stage.is_some(),
            self.tag_resource.is_some(),
            self.delete_aws_secret.is_some(),
            self.apply.is_some(),
            self.delete.is_some(),
            self.expect.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PutValue {
    pub secret: String,
    #[serde(flatten)]
    pub value: AwsValue,
    #[serde(default)]
    pub stages: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MoveStage {
    pub secret: String,
    pub stage: String,
    pub version: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TagSecret {
    pub secret: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteAwsSecret {
    pub secret: String,
    /// `ForceDeleteWithoutRecovery` (the secret is gone at once) instead of a recovery window.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectRef {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// What must hold, polled until it does or `timeout` seconds pass.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    #[serde(default)]
    pub timeout: Option<f64>,
    /// The primary ExternalSecret's target Secret.
    #[serde(default)]
    pub secret: Option<ExpectSecret>,
    /// More Secrets (other names or namespaces).
    #[serde(default)]
    pub secrets: Vec<ExpectSecret>,
    /// Secrets that must not exist. `name` defaults to the primary target.
    #[serde(default)]
    pub absent_secrets: Vec<SecretRef>,
    /// The primary ExternalSecret's `Ready` condition.
    #[serde(default)]
    pub ready: Option<ExpectReady>,
    /// Other ExternalSecrets (for ClusterExternalSecrets, or several in one case).
    #[serde(default)]
    pub external_secrets: Vec<ExpectExternalSecret>,
    /// The primary ExternalSecret's status fields.
    #[serde(default)]
    pub status: Option<ExpectStatus>,
    /// Reasons of Kubernetes Events that must have been recorded on the primary ExternalSecret.
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub stores: Vec<ExpectStore>,
    #[serde(default)]
    pub cluster_external_secret: Option<ExpectClusterExternalSecret>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretRef {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// The exact Secret. Maps are exact: a key missing here must be missing there. ESO's
/// bookkeeping (`reconcile.external-secrets.io/*`) is checked by the runner, not listed here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectSecret {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "opaque", rename = "type")]
    pub type_: String,
    /// Values as UTF-8 text.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Values as base64, for bytes that are not UTF-8.
    #[serde(default)]
    pub binary_data: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Controlled by the ExternalSecret (ownerReference + `created-by` label), as `Owner` does.
    #[serde(default = "yes")]
    pub owner: bool,
    /// The owning ExternalSecret's name, when not the primary one.
    #[serde(default)]
    pub owner_name: Option<String>,
    /// Written by the controller: `managed` label and ESO's `data-hash` annotation.
    #[serde(default = "yes")]
    pub managed: bool,
    #[serde(default)]
    pub immutable: bool,
}

fn opaque() -> String {
    "Opaque".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectReady {
    /// The condition must not exist (the resource is not served by this controller).
    #[serde(default)]
    pub absent: bool,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Substrings the message must contain.
    #[serde(default)]
    pub message: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectExternalSecret {
    pub namespace: String,
    pub name: String,
    /// The ExternalSecret must not exist.
    #[serde(default)]
    pub absent: bool,
    #[serde(default)]
    pub ready: Option<ExpectReady>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectStatus {
    /// `status.binding.name`.
    #[serde(default)]
    pub binding: Option<String>,
    /// `status.refreshTime` is set.
    #[serde(default)]
    pub refresh_time: bool,
    /// `status.syncedResourceVersion` is ESO's `<generation>-<hash of labels and annotations>`
    /// of the ExternalSecret as it is now.
    #[serde(default)]
    pub synced_resource_version: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectStore {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub ready: ExpectReady,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectClusterExternalSecret {
    #[serde(default)]
    pub name: Option<String>,
    /// `status.provisionedNamespaces`, as a set.
    #[serde(default)]
    pub provisioned_namespaces: Option<Vec<String>>,
    /// `Ready` condition status.
    #[serde(default)]
    pub ready: Option<String>,
}

/// Reads and checks every case under `tests/conformance/`, or of one feature.
pub fn load_cases(feature: Option<&str>) -> Result<Vec<Case>, String> {
    let root = workspace_root().join("tests/conformance");
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for dir in std::fs::read_dir(&root).map_err(|e| format!("{}: {e}", root.display()))? {
        let dir = dir.map_err(|e| e.to_string())?.path();
        if !dir.is_dir() {
            continue;
        }
        let dir_name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !FEATURES.contains(&dir_name.as_str()) {
            errors.push(format!("{}: not a known feature directory", dir.display()));
            continue;
        }
        if feature.is_some_and(|f| f != dir_name) {
            continue;
        }
        for file in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let path = file.map_err(|e| e.to_string())?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                errors.push(format!("{}: case files end in .yaml", path.display()));
                continue;
            }
            match parse_case(&dir_name, &path) {
                Ok(case) => cases.push(case),
                Err(e) => errors.push(format!("{}: {e}", path.display())),
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    cases.sort_by_key(Case::id);
    Ok(cases)
}

fn parse_case(feature: &str, path: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let spec: CaseSpec = yaml_serde::from_str(&text).map_err(|e| e.to_string())?;
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    check(&spec)?;
    Ok(Case {
        feature: feature.to_owned(),
        name,
        path: path.to_owned(),
        text,
        spec,
    })
}

/// What serde cannot check: one action per step, one value per secret, names unique per run.
fn check(spec: &CaseSpec) -> Result<(), String> {
    if spec.description.trim().is_empty() {
        return Err("empty description".into());
    }
    for secret in &spec.aws {
        if !secret.name.starts_with("${CASE}") {
            return Err(format!(
                "AWS secret {:?} must start with ${{CASE}} (names are unique per run)",
                secret.name
            ));
        }
        check_value(&secret.value, &secret.name)?;
        for version in &secret.versions {
            check_value(&version.value, &secret.name)?;
        }
    }
    if spec.manifest.contains("{{ .Values") {
        return Err("manifest uses Helm syntax".into());
    }
    let manifest = documents(&spec.manifest)?;
    let kinds: Vec<String> = manifest
        .iter()
        .filter_map(|d| d.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .collect();
    if !kinds
        .iter()
        .any(|k| k == "ExternalSecret" || k == "ClusterExternalSecret")
    {
        return Err("manifest holds no ExternalSecret nor ClusterExternalSecret".into());
    }
    if let Some(objects) = &spec.objects {
        documents(objects)?;
    }
    check_expect(&spec.expect)?;
    let mut expectations = 1;
    for (i, step) in spec.steps.iter().enumerate() {
        if step.actions() != 1 {
            return Err(format!("steps[{i}] must hold exactly one action"));
        }
        if let Some(put) = &step.put_secret_value {
            check_value(&put.value, &put.secret)?;
        }
        if let Some(yaml) = &step.apply {
            documents(yaml)?;
        }
        if let Some(expect) = &step.expect {
            check_expect(expect)?;
            expectations += 1;
        }
    }
    if !spec.steps.is_empty() && spec.steps.last().and_then(|s| s.expect.as_ref()).is_none() {
        return Err(format!(
            "the last step must be an expectation ({expectations} found)"
        ));
    }
    Ok(())
}

fn check_value(value: &AwsValue, secret: &str) -> Result<(), String> {
    match (&value.string, &value.binary) {
        (Some(_), None) | (None, Some(_)) => Ok(()),
        _ => Err(format!(
            "secret {secret:?}: give exactly one of `string` and `binary`"
        )),
    }
}

fn check_expect(expect: &Expect) -> Result<(), String> {
    let anything = expect.secret.is_some()
        || !expect.secrets.is_empty()
        || !expect.absent_secrets.is_empty()
        || expect.ready.is_some()
        || !expect.external_secrets.is_empty()
        || expect.status.is_some()
        || !expect.events.is_empty()
        || !expect.stores.is_empty()
        || expect.cluster_external_secret.is_some();
    if !anything {
        return Err("an expectation that checks nothing".into());
    }
    for ready in expect
        .ready
        .iter()
        .chain(
            expect
                .external_secrets
                .iter()
                .filter_map(|e| e.ready.as_ref()),
        )
        .chain(expect.stores.iter().map(|s| &s.ready))
    {
        if !ready.absent && ready.status.is_none() {
            return Err("a `ready` expectation needs `status` (or `absent: true`)".into());
        }
        if let Some(status) = &ready.status
            && status != "True"
            && status != "False"
        {
            return Err(format!(
                "ready.status {status:?} is not \"True\" or \"False\""
            ));
        }
    }
    Ok(())
}

/// The YAML documents of a manifest, as JSON values.
pub fn documents(yaml: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut out = Vec::new();
    for document in yaml_serde::Deserializer::from_str(yaml) {
        let value = serde_json::Value::deserialize(document).map_err(|e| e.to_string())?;
        if value.is_null() {
            continue;
        }
        if value.get("kind").is_none() || value.get("apiVersion").is_none() {
            return Err("a manifest document lacks apiVersion or kind".into());
        }
        out.push(value);
    }
    Ok(out)
}
