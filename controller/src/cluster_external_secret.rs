//! ClusterExternalSecret: one ExternalSecret stamped into every namespace the resource selects,
//! as ESO's `clusterexternalsecret` controller does.
//!
//! A namespace is selected when its name is in `namespaces`, or when its labels match the
//! deprecated `namespaceSelector` or any of `namespaceSelectors` (an empty selector matches
//! every namespace). Terminating namespaces are skipped. Each selected namespace gets an
//! ExternalSecret named `externalSecretName` (default: the ClusterExternalSecret's name) with
//! `externalSecretMetadata`, the `force-sync` annotation of the ClusterExternalSecret, and the
//! ClusterExternalSecret as controller owner; one in a namespace that stops matching is
//! deleted. An ExternalSecret of that name that the ClusterExternalSecret does not own is left
//! alone and the namespace reported in `status.failedNamespaces`.
//!
//! Differences from ESO: no finalizers (on the ClusterExternalSecret or on namespaces);
//! deleting a ClusterExternalSecret removes its ExternalSecrets through Kubernetes garbage
//! collection of owned objects instead. The owner reference does not set
//! `blockOwnerDeletion`, so no permission on `clusterexternalsecrets/finalizers` is needed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::{self, BoxFuture};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::api::cluster_external_secret::{
    ClusterExternalSecretCondition, ClusterExternalSecretSpec, ClusterExternalSecretStatus,
    NamespaceFailure,
};
use crate::api::{ClusterExternalSecret, ExternalSecret};
use crate::eso_trigger::FORCE_SYNC_ANNOTATION;
use crate::{Error, FIELD_MANAGER, Result};

/// ESO's requeue interval for ClusterExternalSecrets without `refreshTime`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);

/// ESO's message when some namespace failed.
const NAMESPACES_FAILED: &str = "one or more namespaces failed";

/// The label every Namespace carries on Kubernetes ≥ 1.21 (added here for older apiservers):
/// ESO turns `namespaces` into selectors on it.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn with_name_label(mut labels: BTreeMap<String, String>, name: &str) -> BTreeMap<String, String> {
    labels
        .entry(NAME_LABEL.into())
        .or_insert_with(|| name.to_owned());
    labels
}

/// A namespace as the selection sees it.
#[derive(Debug, Clone)]
pub struct NamespaceInfo {
    pub name: String,
    /// With `kubernetes.io/metadata.name`.
    pub labels: BTreeMap<String, String>,
    pub terminating: bool,
}

impl NamespaceInfo {
    fn from_meta(namespace: &PartialObjectMeta<Namespace>) -> Self {
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
            .map_err(|e| Error::Spec(format!("unable to convert labelselector: {e}")))?;
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
fn up_to_date(existing: &ExternalSecret, desired: &ExternalSecret) -> bool {
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

fn refresh_interval(ces: &ClusterExternalSecret) -> Result<Duration> {
    match ces.spec.refresh_interval.as_deref() {
        None | Some("") => Ok(DEFAULT_REFRESH),
        Some(text) => secret_bridge::duration::parse(text)
            .map_err(|e| Error::Spec(format!("spec.refreshTime: {e}"))),
    }
}

/// What every ClusterExternalSecret reconcile shares.
pub struct Context {
    pub client: Client,
    /// The ExternalSecret controller's cache: existing ExternalSecrets are read from it.
    pub external_secrets: Store<ExternalSecret>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
}

/// The ClusterExternalSecret controller, built but not yet running.
pub struct ClusterExternalSecretController {
    controller: Controller<ClusterExternalSecret>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Drives the Namespace watch: fills `namespaces`, then triggers the controller.
    namespace_watch: BoxFuture<'static, ()>,
}

impl ClusterExternalSecretController {
    /// Watches ClusterExternalSecrets, the metadata of the ExternalSecrets they own, and the
    /// metadata of Namespaces (a namespace created, relabelled or deleted re-evaluates the
    /// ClusterExternalSecrets that select it or provisioned it).
    pub fn new(client: &Client) -> Self {
        let controller = Controller::new(
            Api::<ClusterExternalSecret>::all(client.clone()),
            watcher::Config::default(),
        );
        let cluster_secrets = controller.store();
        let (namespaces, writer) = reflector::store();
        // The Namespace cache is filled by its own task, so reconciles find it ready (they
        // start only once it is) and the controller only sees the changes.
        let (changed, namespace_events) = mpsc::unbounded();
        let namespace_watch = watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|ns| ns.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects()
        .for_each(move |event| {
            match event {
                Ok(namespace) => {
                    let _ = changed.unbounded_send(Ok(namespace));
                }
                Err(error) => warn!(%error, "watching Namespaces failed; retrying"),
            }
            future::ready(())
        })
        .boxed();
        // ExternalSecrets are namespaced and their owner is not: map owner references to
        // cluster-scoped references by hand (`owns` would give them the child's namespace).
        let owned = watcher(
            Api::<PartialObjectMeta<ExternalSecret>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .touched_objects();
        let controller = controller
            .watches_stream(owned, |es| {
                es.owner_references()
                    .iter()
                    .filter(|o| {
                        o.controller == Some(true)
                            && o.kind == "ClusterExternalSecret"
                            && o.api_version.starts_with("external-secrets.io/")
                    })
                    .map(|o| ObjectRef::new(&o.name))
                    .collect::<Vec<_>>()
            })
            .watches_stream(
                namespace_events,
                move |namespace: PartialObjectMeta<Namespace>| {
                    let namespace = NamespaceInfo::from_meta(&namespace);
                    cluster_secrets
                        .state()
                        .into_iter()
                        .filter(|ces| {
                            selects(&ces.spec, &namespace).unwrap_or(false)
                                || ces.status.as_ref().is_some_and(|s| {
                                    s.provisioned_namespaces.contains(&namespace.name)
                                })
                        })
                        .map(|ces| ObjectRef::from_obj(&*ces))
                        .collect::<Vec<_>>()
                },
            );
        ClusterExternalSecretController {
            controller,
            namespaces,
            namespace_watch,
        }
    }

    pub fn namespaces(&self) -> Store<PartialObjectMeta<Namespace>> {
        self.namespaces.clone()
    }

    /// Runs until `shutdown` resolves. Reconciles start once the Namespace and ExternalSecret
    /// caches are filled: an ExternalSecret missing from a cache still being listed would be
    /// taken over instead of reported.
    pub async fn run(
        self,
        context: Arc<Context>,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) {
        let watch = tokio::spawn(self.namespace_watch);
        let ready = async {
            wait_until_ready(&self.namespaces).await;
            wait_until_ready(&context.external_secrets).await;
        };
        let shutdown = shutdown.shared();
        tokio::select! {
            () = ready => {}
            () = shutdown.clone() => {
                watch.abort();
                return;
            }
        }
        info!("ClusterExternalSecret controller started");
        self.controller
            .graceful_shutdown_on(shutdown)
            .run(reconcile, error_policy, context)
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => debug!(clusterexternalsecret = %object, "reconciled"),
                    Err(error) => debug!(%error, "reconcile not completed"),
                }
            })
            .await;
        watch.abort();
        info!("ClusterExternalSecret controller stopped");
    }
}

/// `Store::wait_until_ready` wakes only the last task that polled it (kube-runtime 5's
/// `DelayedInit` keeps one waker), and the ExternalSecret controller waits on the same store:
/// poll again every so often.
async fn wait_until_ready<K>(store: &Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
            Ok(_) => return,
            Err(_elapsed) => continue,
        }
    }
}

pub async fn reconcile(ces: Arc<ClusterExternalSecret>, ctx: Arc<Context>) -> Result<Action> {
    if ces.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let refresh = refresh_interval(&ces)?;
    let name = external_secret_name(&ces);
    let ces_name = ces.name_any();
    let previous = ces.status.clone().unwrap_or_default();
    let api = |namespace: &str| Api::<ExternalSecret>::namespaced(ctx.client.clone(), namespace);
    let mut failed: BTreeMap<String, String> = BTreeMap::new();

    // `externalSecretName` changed: the ExternalSecrets under the old name go.
    if let Some(old) = previous
        .external_secret_name
        .as_deref()
        .filter(|old| *old != name)
    {
        for namespace in &previous.provisioned_namespaces {
            if let Err(error) = delete_owned(&ctx, &api(namespace), namespace, old, &ces_name).await
            {
                failed.insert(namespace.clone(), error.to_string());
            }
        }
        if !failed.is_empty() {
            write_status(&ctx, &ces, status(name, Vec::new(), failed)).await?;
            return Err(Error::Spec(format!(
                "could not delete the ExternalSecrets named {old:?} (externalSecretName changed)"
            )));
        }
    }

    let namespaces: Vec<NamespaceInfo> = ctx
        .namespaces
        .state()
        .iter()
        .map(|ns| NamespaceInfo::from_meta(ns))
        .collect();
    let targets = match target_namespaces(&ces.spec, &namespaces) {
        Ok(targets) => targets,
        Err(error) => {
            let failure = BTreeMap::from([("unknown".to_owned(), error.to_string())]);
            write_status(&ctx, &ces, status(name, Vec::new(), failure)).await?;
            return Err(error);
        }
    };

    for namespace in previous
        .provisioned_namespaces
        .iter()
        .filter(|n| !targets.contains(n))
    {
        if let Err(error) = delete_owned(&ctx, &api(namespace), namespace, &name, &ces_name).await {
            failed.insert(namespace.clone(), error.to_string());
        }
    }

    let mut provisioned = Vec::new();
    for namespace in &targets {
        let existing = ctx
            .external_secrets
            .get(&ObjectRef::new(&name).within(namespace));
        if let Some(existing) = &existing
            && !is_owned_by(existing, &ces_name)
        {
            failed.insert(
                namespace.clone(),
                "external secret already exists in namespace".into(),
            );
            continue;
        }
        let desired = desired_external_secret(&ces, namespace, &name);
        if existing.is_some_and(|e| up_to_date(&e, &desired)) {
            provisioned.push(namespace.clone());
            continue;
        }
        let applied = api(namespace)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await;
        match applied {
            Ok(_) => {
                debug!(clusterexternalsecret = %ces_name, %namespace, externalsecret = %name, "ExternalSecret applied");
                provisioned.push(namespace.clone());
            }
            Err(error) => {
                warn!(clusterexternalsecret = %ces_name, %namespace, %error, "could not create or update ExternalSecret");
                failed.insert(
                    namespace.clone(),
                    format!("could not create or update ExternalSecret: {error}"),
                );
            }
        }
    }
    let new_status = status(name, provisioned, failed);
    if ces.status.as_ref() != Some(&new_status) {
        write_status(&ctx, &ces, new_status).await?;
    }
    Ok(Action::requeue(refresh))
}

/// Deletes the ExternalSecret `name` in `namespace` if this ClusterExternalSecret owns it.
async fn delete_owned(
    ctx: &Context,
    api: &Api<ExternalSecret>,
    namespace: &str,
    name: &str,
    ces_name: &str,
) -> Result<()> {
    let cached = ctx
        .external_secrets
        .get(&ObjectRef::new(name).within(namespace));
    if !cached.is_some_and(|es| is_owned_by(&es, ces_name)) {
        return Ok(());
    }
    match api.delete(name, &Default::default()).await {
        Ok(_) => {
            info!(clusterexternalsecret = %ces_name, %namespace, externalsecret = %name, "ExternalSecret deleted: namespace no longer selected");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(source) => Err(Error::Kube {
            action: format!(
                "external secret in non matching namespace could not be deleted: {namespace}/{name}"
            ),
            source,
        }),
    }
}

async fn write_status(
    ctx: &Context,
    ces: &ClusterExternalSecret,
    status: ClusterExternalSecretStatus,
) -> Result<()> {
    let patch = json!({
        "apiVersion": ClusterExternalSecret::api_version(&()),
        "kind": ClusterExternalSecret::kind(&()),
        "status": status,
    });
    Api::<ClusterExternalSecret>::all(ctx.client.clone())
        .patch_status(
            &ces.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await
        .map_err(Error::kube(format!(
            "writing status of ClusterExternalSecret {}",
            ces.name_any()
        )))?;
    Ok(())
}

/// Retries a failed reconcile after 30 s.
pub fn error_policy(ces: Arc<ClusterExternalSecret>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(clusterexternalsecret = %ces.name_any(), %error, "ClusterExternalSecret reconcile failed");
    Action::requeue(Duration::from_secs(30))
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
