//! What a ClusterExternalSecret asks for, as pure functions: which namespaces it selects
//! (`namespaces`, `namespaceSelector`, `namespaceSelectors`; terminating namespaces skipped;
//! names match through the `kubernetes.io/metadata.name` label, as ESO turns `namespaces`
//! into selectors on it), the ExternalSecret each gets, and the status to report.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
use kube::{Resource, ResourceExt};

use crate::api::cluster_external_secret::{
    ClusterExternalSecretCondition, ClusterExternalSecretSpec, ClusterExternalSecretStatus,
    NamespaceFailure,
};
use crate::api::{ClusterExternalSecret, ExternalSecret};
use crate::cache::namespaces::with_name_label;
use crate::events::eso_trigger::FORCE_SYNC_ANNOTATION;
use crate::{Error, Result};

/// ESO's requeue interval for ClusterExternalSecrets without `refreshTime`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);

/// ESO's message when some namespace failed.
pub const NAMESPACES_FAILED: &str = "one or more namespaces failed";

/// A namespace as the selection sees it.
#[derive(Debug, Clone)]
pub struct NamespaceInfo {
    pub name: String,
    /// With `kubernetes.io/metadata.name`.
    pub labels: BTreeMap<String, String>,
    pub terminating: bool,
}

impl NamespaceInfo {
    pub fn from_meta(namespace: &PartialObjectMeta<Namespace>) -> Self {
        let name = namespace.name_any();
        NamespaceInfo {
            labels: with_name_label(namespace.labels().clone(), &name),
            terminating: namespace.metadata.deletion_timestamp.is_some(),
            name,
        }
    }
}

fn selectors(spec: &ClusterExternalSecretSpec) -> impl Iterator<Item = &LabelSelector> {
    spec.namespace_selector
        .iter()
        .chain(spec.namespace_selectors.iter())
}

/// Whether `namespace` is selected by the spec (terminating or not).
pub fn selects(spec: &ClusterExternalSecretSpec, namespace: &NamespaceInfo) -> Result<bool> {
    if spec.namespaces.contains(&namespace.name) {
        return Ok(true);
    }
    for selector in selectors(spec) {
        let selector = Selector::try_from(selector.clone())
            .map_err(|e| Error::Misconfigured(format!("unable to convert labelselector: {e}")))?;
        if selector.matches(&namespace.labels) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The namespaces that get the ExternalSecret, sorted; terminating namespaces are skipped.
pub fn target_namespaces(
    spec: &ClusterExternalSecretSpec,
    namespaces: &[NamespaceInfo],
) -> Result<Vec<String>> {
    let mut selected = Vec::new();
    for namespace in namespaces.iter().filter(|n| !n.terminating) {
        if selects(spec, namespace)? {
            selected.push(namespace.name.clone());
        }
    }
    selected.sort();
    selected.dedup();
    Ok(selected)
}

/// The ExternalSecrets' name: `externalSecretName`, or the ClusterExternalSecret's name.
pub fn external_secret_name(ces: &ClusterExternalSecret) -> String {
    ces.spec
        .external_secret_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| ces.name_any())
}

/// Whether `es` is controlled by the ClusterExternalSecret named `ces_name`.
pub fn is_owned_by(es: &ExternalSecret, ces_name: &str) -> bool {
    es.owner_references().iter().any(|o| {
        o.controller == Some(true)
            && o.kind == "ClusterExternalSecret"
            && o.api_version.starts_with("external-secrets.io/")
            && o.name == ces_name
    })
}

/// The ExternalSecret the ClusterExternalSecret wants in `namespace`.
pub fn desired_external_secret(
    ces: &ClusterExternalSecret,
    namespace: &str,
    name: &str,
) -> ExternalSecret {
    let metadata = ces
        .spec
        .external_secret_metadata
        .clone()
        .unwrap_or_default();
    let mut annotations = metadata.annotations;
    match ces.annotations().get(FORCE_SYNC_ANNOTATION) {
        Some(value) => {
            annotations.insert(FORCE_SYNC_ANNOTATION.into(), value.clone());
        }
        None => {
            annotations.remove(FORCE_SYNC_ANNOTATION);
        }
    }
    let owner = OwnerReference {
        api_version: ClusterExternalSecret::api_version(&()).into_owned(),
        kind: ClusterExternalSecret::kind(&()).into_owned(),
        name: ces.name_any(),
        uid: ces.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let mut es = ExternalSecret::new(name, ces.spec.external_secret_spec.clone());
    es.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: (!metadata.labels.is_empty()).then_some(metadata.labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        owner_references: Some(vec![owner]),
        ..Default::default()
    };
    es
}

/// Whether `existing` already is what [`desired_external_secret`] gives.
pub fn up_to_date(existing: &ExternalSecret, desired: &ExternalSecret) -> bool {
    existing.spec == desired.spec
        && desired
            .labels()
            .iter()
            .all(|(k, v)| existing.labels().get(k) == Some(v))
        && desired
            .annotations()
            .iter()
            .all(|(k, v)| existing.annotations().get(k) == Some(v))
        && existing.annotations().get(FORCE_SYNC_ANNOTATION)
            == desired.annotations().get(FORCE_SYNC_ANNOTATION)
        && desired
            .owner_references()
            .iter()
            .all(|o| existing.owner_references().iter().any(|e| e.uid == o.uid))
}

/// The status for what happened, as ESO writes it.
pub fn status(
    name: String,
    mut provisioned: Vec<String>,
    failed: BTreeMap<String, String>,
) -> ClusterExternalSecretStatus {
    provisioned.sort();
    let condition = if failed.is_empty() {
        ClusterExternalSecretCondition {
            type_: "Ready".into(),
            status: "True".into(),
            message: None,
        }
    } else {
        ClusterExternalSecretCondition {
            type_: "Ready".into(),
            status: "False".into(),
            message: Some(NAMESPACES_FAILED.into()),
        }
    };
    ClusterExternalSecretStatus {
        external_secret_name: Some(name),
        failed_namespaces: failed
            .into_iter()
            .map(|(namespace, reason)| NamespaceFailure {
                namespace,
                reason: Some(reason),
            })
            .collect(),
        provisioned_namespaces: provisioned,
        conditions: vec![condition],
    }
}

pub fn refresh_interval(ces: &ClusterExternalSecret) -> Result<Duration> {
    match ces.spec.refresh_interval.as_deref() {
        None | Some("") => Ok(DEFAULT_REFRESH),
        Some(text) => secret_bridge::duration::parse(text)
            .map_err(|e| Error::Misconfigured(format!("spec.refreshTime: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;
    use crate::api::ExternalSecretSpec;
    use crate::api::cluster_external_secret::ExternalSecretMetadata;

    fn namespace(name: &str, labels: &[(&str, &str)], terminating: bool) -> NamespaceInfo {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        NamespaceInfo {
            name: name.into(),
            labels: with_name_label(labels, name),
            terminating,
        }
    }

    fn namespaces() -> Vec<NamespaceInfo> {
        vec![
            namespace("a", &[("team", "blue")], false),
            namespace("b", &[("team", "red")], false),
            namespace("c", &[("team", "blue"), ("env", "prod")], false),
            namespace("d", &[("team", "blue")], true),
            namespace("e", &[], false),
        ]
    }

    fn labels(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            match_expressions: None,
        }
    }

    #[test]
    fn selectors_are_ored_with_names_and_skip_terminating_namespaces() {
        let spec = ClusterExternalSecretSpec {
            namespace_selectors: vec![labels(&[("team", "blue")])],
            namespaces: vec!["e".into(), "missing".into()],
            ..Default::default()
        };
        assert_eq!(
            target_namespaces(&spec, &namespaces()).unwrap(),
            ["a", "c", "e"]
        );
        let deprecated = ClusterExternalSecretSpec {
            namespace_selector: Some(labels(&[("team", "red")])),
            namespace_selectors: vec![LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "In".into(),
                    values: Some(vec!["prod".into()]),
                }]),
            }],
            ..Default::default()
        };
        assert_eq!(
            target_namespaces(&deprecated, &namespaces()).unwrap(),
            ["b", "c"]
        );
    }

    #[test]
    fn an_empty_selector_matches_every_namespace_and_none_matches_nothing() {
        let all = ClusterExternalSecretSpec {
            namespace_selectors: vec![LabelSelector::default()],
            ..Default::default()
        };
        assert_eq!(
            target_namespaces(&all, &namespaces()).unwrap(),
            ["a", "b", "c", "e"]
        );
        let none = ClusterExternalSecretSpec::default();
        assert!(target_namespaces(&none, &namespaces()).unwrap().is_empty());
    }

    #[test]
    fn a_bad_selector_is_reported() {
        let spec = ClusterExternalSecretSpec {
            namespace_selectors: vec![LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "Sometimes".into(),
                    values: None,
                }]),
            }],
            ..Default::default()
        };
        assert!(target_namespaces(&spec, &namespaces()).is_err());
    }

    fn ces() -> ClusterExternalSecret {
        let mut ces = ClusterExternalSecret::new(
            "shared",
            ClusterExternalSecretSpec {
                external_secret_spec: ExternalSecretSpec {
                    refresh_interval: Some("1m".into()),
                    ..Default::default()
                },
                external_secret_metadata: Some(ExternalSecretMetadata {
                    labels: [("app".to_owned(), "web".to_owned())].into(),
                    annotations: [(FORCE_SYNC_ANNOTATION.to_owned(), "stale".to_owned())].into(),
                }),
                ..Default::default()
            },
        );
        ces.metadata.uid = Some("uid-1".into());
        ces
    }

    #[test]
    fn the_external_secret_carries_metadata_owner_and_force_sync_as_eso() {
        let mut ces = ces();
        assert_eq!(external_secret_name(&ces), "shared");
        let es = desired_external_secret(&ces, "a", "shared");
        assert_eq!(es.namespace().as_deref(), Some("a"));
        assert_eq!(es.labels()["app"], "web");
        // The ClusterExternalSecret's own force-sync wins (here: it has none).
        assert!(!es.annotations().contains_key(FORCE_SYNC_ANNOTATION));
        assert!(is_owned_by(&es, "shared"));
        assert!(!is_owned_by(&es, "other"));
        assert_eq!(es.spec.refresh_interval.as_deref(), Some("1m"));

        ces.metadata.annotations =
            Some([(FORCE_SYNC_ANNOTATION.to_owned(), "now".to_owned())].into());
        ces.spec.external_secret_name = Some("renamed".into());
        assert_eq!(external_secret_name(&ces), "renamed");
        let es = desired_external_secret(&ces, "a", "renamed");
        assert_eq!(es.annotations()[FORCE_SYNC_ANNOTATION], "now");
        assert!(up_to_date(&es, &es));
        let mut changed = es.clone();
        changed.spec.refresh_interval = Some("5m".into());
        assert!(!up_to_date(&changed, &es));
    }

    #[test]
    fn status_is_sorted_and_ready_only_without_failures() {
        let ok = status(
            "shared".into(),
            vec!["b".into(), "a".into()],
            BTreeMap::new(),
        );
        assert_eq!(ok.provisioned_namespaces, ["a", "b"]);
        assert_eq!(ok.conditions[0].status, "True");
        assert_eq!(ok.conditions[0].message, None);
        let failed = status(
            "shared".into(),
            vec!["a".into()],
            BTreeMap::from([(
                "b".to_owned(),
                "external secret already exists in namespace".to_owned(),
            )]),
        );
        assert_eq!(failed.conditions[0].status, "False");
        assert_eq!(
            failed.conditions[0].message.as_deref(),
            Some(NAMESPACES_FAILED)
        );
        assert_eq!(failed.failed_namespaces[0].namespace, "b");
    }
}
