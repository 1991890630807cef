//! What the rollout index keeps of a workload (Deployment, StatefulSet, DaemonSet): its
//! identity, its restart policy (Reloader's annotations) and the names of the Secrets its pods
//! read — never the object itself. Built purely from the object, so it is tested case by case.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use kube::{Resource, ResourceExt};

/// `reloader.stakater.com/auto: "true"`: every Secret (and ConfigMap) the workload reads.
pub const RELOADER_AUTO: &str = "reloader.stakater.com/auto";
/// `secret.reloader.stakater.com/auto: "true"`: every Secret the workload reads.
pub const RELOADER_SECRET_AUTO: &str = "secret.reloader.stakater.com/auto";
/// `secret.reloader.stakater.com/reload: "a,b"`: the named Secrets, read or not.
pub const RELOADER_SECRET_RELOAD: &str = "secret.reloader.stakater.com/reload";
/// `reloader.stakater.com/search: "true"`: the Secrets it reads that carry [`RELOADER_MATCH`].
pub const RELOADER_SEARCH: &str = "reloader.stakater.com/search";
/// On a Secret: restarts its readers that have [`RELOADER_SEARCH`].
pub const RELOADER_MATCH: &str = "reloader.stakater.com/match";
/// On a Secret: it restarts nothing.
pub const RELOADER_IGNORE: &str = "reloader.stakater.com/ignore";

/// At most this many Secret names are kept per workload (read, or named to reload); a pod
/// template naming more is cut there, so one manifest cannot grow the index without bound.
pub const MAX_SECRETS_PER_WORKLOAD: usize = 256;
/// Longest Secret name Kubernetes allows (a DNS subdomain).
const MAX_NAME: usize = 253;

/// The workload kinds that can be restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Kind {
    /// The kind as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
        }
    }

    /// A kind as `kubectl` accepts it: `deployment`, `deployments`, `deploy`, `statefulset`,
    /// `sts`, `daemonset`, `ds` (any case).
    pub fn parse(text: &str) -> Option<Kind> {
        match text.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" => Some(Kind::Deployment),
            "statefulset" | "statefulsets" | "sts" => Some(Kind::StatefulSet),
            "daemonset" | "daemonsets" | "ds" => Some(Kind::DaemonSet),
            _ => None,
        }
    }
}

/// One workload: kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.kind.as_str().to_ascii_lowercase(),
            self.name
        )
    }
}

/// Which changed Secrets restart a workload, from Reloader's annotations on the workload or
/// on its pod template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `reloader.stakater.com/auto` or `secret.reloader.stakater.com/auto` is `"true"`.
    pub auto: bool,
    /// `reloader.stakater.com/search` is `"true"`.
    pub search: bool,
    /// `secret.reloader.stakater.com/reload`: names (or, as Reloader, anchored regular
    /// expressions) of Secrets.
    pub reload: Vec<String>,
}

impl Policy {
    /// The policy the annotations give; `None` when the workload did not opt in.
    pub fn from_annotations<'a>(
        annotations: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
    ) -> Option<Policy> {
        let mut policy = Policy::default();
        let is_true = |value: &String| value.trim().eq_ignore_ascii_case("true");
        for annotations in annotations {
            policy.auto |= annotations.get(RELOADER_AUTO).is_some_and(is_true)
                || annotations.get(RELOADER_SECRET_AUTO).is_some_and(is_true);
            policy.search |= annotations.get(RELOADER_SEARCH).is_some_and(is_true);
            if let Some(list) = annotations.get(RELOADER_SECRET_RELOAD) {
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if policy.reload.len() < MAX_SECRETS_PER_WORKLOAD && name.len() <= MAX_NAME {
                        policy.reload.push(name.to_owned());
                    }
                }
            }
        }
        (policy.auto || policy.search || !policy.reload.is_empty()).then_some(policy)
    }
}

/// What the index keeps of an opted-in workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub key: WorkloadKey,
    pub uid: Option<String>,
    pub policy: Policy,
    /// The Secrets its pods read (`envFrom`, `env.valueFrom`, volumes, projected volumes), in
    /// every container and init container; sorted, without duplicates.
    pub secrets: Vec<String>,
}

/// A workload kind whose objects the index can summarize.
pub trait WorkloadObject: Resource<DynamicType = ()> {
    const KIND: Kind;
    fn template(&self) -> Option<&PodTemplateSpec>;
}

impl WorkloadObject for Deployment {
    const KIND: Kind = Kind::Deployment;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl WorkloadObject for StatefulSet {
    const KIND: Kind = Kind::StatefulSet;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl WorkloadObject for DaemonSet {
    const KIND: Kind = Kind::DaemonSet;
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl Workload {
    /// The key of any workload object (also of one that did not opt in).
    pub fn key_of<K: WorkloadObject>(object: &K) -> WorkloadKey {
        WorkloadKey {
            kind: K::KIND,
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
        }
    }

    /// The summary of `object`, or `None` when it did not opt in to restarts.
    pub fn summarize<K: WorkloadObject>(object: &K) -> Option<Workload> {
        let template = object.template();
        let template_annotations = template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref());
        let policy = Policy::from_annotations(
            std::iter::once(object.annotations()).chain(template_annotations),
        )?;
        Some(Workload {
            key: Workload::key_of(object),
            uid: object.meta().uid.clone(),
            policy,
            secrets: template
                .and_then(|t| t.spec.as_ref())
                .map(referenced_secrets)
                .unwrap_or_default(),
        })
    }
}

/// The Secrets a pod reads, sorted and without duplicates (at most
/// [`MAX_SECRETS_PER_WORKLOAD`]).
pub fn referenced_secrets(pod: &PodSpec) -> Vec<String> {
    let mut names = Vec::new();
    let containers = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten());
    for container in containers {
        container_secrets(container, &mut names);
    }
    for volume in pod.volumes.iter().flatten() {
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            names.push(name);
        }
        let sources = volume.projected.as_ref().and_then(|p| p.sources.as_ref());
        for source in sources.into_iter().flatten() {
            if let Some(secret) = &source.secret {
                names.push(secret.name.clone());
            }
        }
    }
    names.retain(|n| !n.is_empty() && n.len() <= MAX_NAME);
    names.sort();
    names.dedup();
    names.truncate(MAX_SECRETS_PER_WORKLOAD);
    names
}

fn container_secrets(container: &Container, names: &mut Vec<String>) {
    for from in container.env_from.iter().flatten() {
        if let Some(secret) = &from.secret_ref {
            names.push(secret.name.clone());
        }
    }
    for env in container.env.iter().flatten() {
        let reference = env
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref());
        if let Some(reference) = reference {
            names.push(reference.name.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(value: serde_json::Value) -> Deployment {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn finds_secrets_in_env_volumes_and_init_containers() {
        let pod: PodSpec = serde_json::from_value(json!({
            "initContainers": [{"name": "init", "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "init-secret", "key": "k"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "a-config", "key": "k"}}},
                {"name": "C", "value": "plain"}
            ]}],
            "containers": [
                {"name": "app", "envFrom": [{"secretRef": {"name": "app-secret"}}, {"configMapRef": {"name": "cm"}}]},
                {"name": "side", "envFrom": [{"secretRef": {"name": "app-secret"}}]}
            ],
            "volumes": [
                {"name": "v1", "secret": {"secretName": "tls"}},
                {"name": "v2", "projected": {"sources": [
                    {"secret": {"name": "projected"}},
                    {"configMap": {"name": "cm2"}},
                    {"serviceAccountToken": {"path": "token"}}
                ]}},
                {"name": "v3", "emptyDir": {}}
            ]
        }))
        .unwrap();
        assert_eq!(
            referenced_secrets(&pod),
            ["app-secret", "init-secret", "projected", "tls"]
        );
    }

    #[test]
    fn opts_in_through_reloader_annotations_on_the_workload_or_its_template() {
        let on_workload = deployment(json!({
            "metadata": {"name": "api", "namespace": "ns", "annotations": {RELOADER_AUTO: "true"}},
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "app", "envFrom": [{"secretRef": {"name": "db"}}]}
            ]}}}
        }));
        let summary = Workload::summarize(&on_workload).unwrap();
        assert_eq!(summary.key.to_string(), "deployment/api");
        assert!(summary.policy.auto);
        assert_eq!(summary.secrets, ["db"]);

        let on_template = deployment(json!({
            "metadata": {"name": "api", "namespace": "ns"},
            "spec": {"selector": {}, "template": {
                "metadata": {"annotations": {RELOADER_SECRET_RELOAD: " db , cache ,,"}},
                "spec": {"containers": []}
            }}
        }));
        let policy = Workload::summarize(&on_template).unwrap().policy;
        assert_eq!(policy.reload, ["db", "cache"]);
        assert!(!policy.auto);
    }

    #[test]
    fn a_workload_without_annotations_or_with_auto_false_is_not_kept() {
        for annotations in [json!({}), json!({RELOADER_AUTO: "false", "other": "true"})] {
            let object = deployment(json!({
                "metadata": {"name": "api", "namespace": "ns", "annotations": annotations},
                "spec": {"selector": {}, "template": {"spec": {"containers": [
                    {"name": "app", "envFrom": [{"secretRef": {"name": "db"}}]}
                ]}}}
            }));
            assert_eq!(Workload::summarize(&object), None);
        }
    }

    #[test]
    fn kinds_parse_as_kubectl_spells_them() {
        assert_eq!(Kind::parse("Deployment"), Some(Kind::Deployment));
        assert_eq!(Kind::parse("deploy"), Some(Kind::Deployment));
        assert_eq!(Kind::parse("sts"), Some(Kind::StatefulSet));
        assert_eq!(Kind::parse("daemonsets"), Some(Kind::DaemonSet));
        assert_eq!(Kind::parse("cronjob"), None);
    }

    #[test]
    fn lists_are_bounded() {
        let names: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
        let annotations = BTreeMap::from([(RELOADER_SECRET_RELOAD.to_owned(), names.join(","))]);
        let policy = Policy::from_annotations([&annotations]).unwrap();
        assert_eq!(policy.reload.len(), MAX_SECRETS_PER_WORKLOAD);
    }
}
