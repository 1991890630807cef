//! One reconcile of an ExternalSecret: resolve its store, read AWS, write the Secret, report.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::api::external_secret::{ExternalSecretStatus, LocalObjectReference};
use crate::api::{Condition, ExternalSecret};
use crate::controller::Context;
use crate::refresh::{self, RefreshPolicy};
use crate::store::ResolvedStore;
use crate::target::{self, CreationPolicy, DeletionPolicy, Desired, TemplateSources};
use crate::trigger::Triggers;
use crate::{Error, FIELD_MANAGER, MANAGED_LABEL, Result, sync};

const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

/// Entry point for the controller: reconciles and answers any event waiting on this object.
pub async fn reconcile(es: Arc<ExternalSecret>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let waiters = ctx.triggers.take(&ObjectRef::from_obj(&*es));
    let result = es.reconcile(&ctx, !waiters.is_empty()).await;
    // An event is done when its refresh ran on fresh data, even if the ExternalSecret is
    // broken in a way only a person can fix; only transient failures send it back.
    Triggers::answer(
        waiters,
        result.as_ref().map_or_else(|e| !e.is_transient(), |_| true),
    );
    ctx.metrics
        .reconciled(result.as_ref().err().map(Error::kind), started.elapsed());
    result
}

/// Retries a failed reconcile with a per-object exponential backoff (5 s doubling up to 5 min).
pub fn error_policy(es: Arc<ExternalSecret>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.record_failure(&ObjectRef::from_obj(&*es));
    let delay = Duration::from_secs(5)
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(300));
    warn!(
        externalsecret = %ObjectRef::from_obj(&*es),
        error = %error,
        kind = error.kind(),
        retry_in_s = delay.as_secs(),
        "sync failed"
    );
    Action::requeue(delay)
}

impl ExternalSecret {
    async fn reconcile(&self, ctx: &Context, event: bool) -> Result<Action> {
        if self.meta().deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let store = match ResolvedStore::get(&ctx.client, &ctx.stores, self).await {
            Ok(store) if !store.is_served_by(ctx.controller_class.as_deref()) => {
                debug!(externalsecret = %ObjectRef::from_obj(self), store = %store.describe(), "store has another controller class; skipping");
                return Ok(Action::await_change());
            }
            Ok(store) => store,
            Err(error) => return self.fail(ctx, error).await,
        };
        let namespace = self.namespace().unwrap_or_default();
        if let Err(error) = store.check_namespace_allowed(&ctx.client, &namespace).await {
            return self.fail(ctx, error).await;
        }
        match self.sync(ctx, &store, event).await {
            Ok(action) => {
                ctx.record_success(&ObjectRef::from_obj(self));
                Ok(action)
            }
            Err(error) => self.fail(ctx, error).await,
        }
    }

    /// Fields of the ExternalSecret this controller does not implement.
    fn check_supported_target(&self) -> Result<()> {
        if self.spec.sync_windows.is_some() {
            return Err(Error::Unsupported("spec.syncWindows".into()));
        }
        if self
            .spec
            .target
            .as_ref()
            .is_some_and(|t| t.manifest.is_some())
        {
            return Err(Error::Unsupported(
                "spec.target.manifest (only Secret targets are served)".into(),
            ));
        }
        Ok(())
    }

    async fn sync(&self, ctx: &Context, store: &ResolvedStore, event: bool) -> Result<Action> {
        self.check_supported_target()?;
        let refresh = self.refresh_interval()?;
        let policy = RefreshPolicy::parse(self.spec.refresh_policy.as_deref())?;
        let target = self.spec.target.clone().unwrap_or_default();
        let creation = CreationPolicy::parse(target.creation_policy.as_deref())?;
        let deletion = DeletionPolicy::parse(target.deletion_policy.as_deref())?;
        let existing = self.existing_secret(ctx).await?;
        let current_version = self.synced_resource_version();
        let decision = refresh::skip(&refresh::Inputs {
            policy,
            interval: refresh,
            status: self.status.as_ref(),
            current_version: &current_version,
            event,
            now: k8s_openapi::jiff::Timestamp::now(),
        });
        if let Some(after) = decision
            && secret_is_valid(existing.as_ref(), creation)
        {
            debug!(externalsecret = %ObjectRef::from_obj(self), ?policy, "not due for a refresh");
            return Ok(after.map_or_else(Action::await_change, Action::requeue));
        }
        let next = match refresh {
            Some(interval) => Action::requeue(interval),
            None => Action::await_change(),
        };

        let aws = store.aws()?;
        let auth = store.auth(&ctx.client, self).await?;
        let source = ctx.aws.secrets_manager(&aws.region, &auth);
        let prefix = aws.prefix.as_deref().unwrap_or_default();
        let fetched = match deletion {
            DeletionPolicy::Retain => sync::fetch(&self.spec, prefix, &source).await?,
            DeletionPolicy::Delete | DeletionPolicy::Merge => {
                sync::fetch_skipping_deleted(&self.spec, prefix, &source).await?
            }
        };
        if fetched.data.is_empty()
            && !fetched.deleted.is_empty()
            && deletion == DeletionPolicy::Delete
        {
            return self
                .source_deleted(ctx, &fetched.deleted, creation, existing)
                .await
                .map(|()| next);
        }
        match creation {
            CreationPolicy::None => {
                debug!(externalsecret = %ObjectRef::from_obj(self), "creationPolicy None: no Secret written");
                self.write_status(
                    ctx,
                    Condition::ready(true, "SecretSynced", "secret synced"),
                    Some(fetched.versions),
                )
                .await?;
                return Ok(next);
            }
            CreationPolicy::Merge if existing.is_none() => {
                self.write_status(
                    ctx,
                    Condition::ready(
                        true,
                        "SecretMissing",
                        "secret will not be created due to CreationPolicy=Merge",
                    ),
                    Some(fetched.versions),
                )
                .await?;
                return Ok(next);
            }
            _ => {}
        }
        let sources = self.template_sources(ctx).await?;
        let desired = target::build(self, fetched.data, &sources, &render_template)?;
        let changed = self.write_secret(ctx, desired, creation, existing).await?;
        let name = self.target_name();
        if changed {
            info!(externalsecret = %ObjectRef::from_obj(self), secret = %name, "secret updated");
            self.publish(ctx, EventType::Normal, "Updated", "Updated Secret")
                .await;
        } else {
            debug!(externalsecret = %ObjectRef::from_obj(self), secret = %name, "secret already up to date");
        }
        self.write_status(
            ctx,
            Condition::ready(true, "SecretSynced", "secret synced"),
            Some(fetched.versions),
        )
        .await?;
        Ok(next)
    }

    /// Every secret this ExternalSecret reads is gone from AWS and `deletionPolicy` is
    /// `Delete`: delete the Secret we wrote (ESO refuses unless we own it).
    async fn source_deleted(
        &self,
        ctx: &Context,
        deleted: &[String],
        creation: CreationPolicy,
        existing: Option<Secret>,
    ) -> Result<()> {
        let namespace = self.namespace().unwrap_or_default();
        let name = self.target_name();
        if creation != CreationPolicy::Owner {
            return Err(Error::Spec(format!(
                "will not delete Secret {namespace}/{name}: deletionPolicy Delete needs creationPolicy Owner, not {creation:?}"
            )));
        }
        let ours = existing
            .as_ref()
            .is_some_and(|s| s.labels().get(MANAGED_LABEL).map(String::as_str) == Some("true"));
        if ours {
            Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
                .delete(&name, &Default::default())
                .await
                .map_err(Error::kube(format!("deleting Secret {namespace}/{name}")))?;
            info!(externalsecret = %ObjectRef::from_obj(self), secret = %name, ?deleted, "secret deleted: its sources are gone (deletionPolicy Delete)");
            self.publish(
                ctx,
                EventType::Normal,
                "Deleted",
                "Deleted Secret: its sources were deleted in AWS",
            )
            .await;
        }
        self.write_status(
            ctx,
            Condition::ready(
                true,
                "SecretDeleted",
                format!(
                    "secret deleted due to DeletionPolicy=Delete (gone from AWS: {})",
                    deleted.join(", ")
                ),
            ),
            Some(Default::default()),
        )
        .await
    }

    async fn existing_secret(&self, ctx: &Context) -> Result<Option<Secret>> {
        let namespace = self.namespace().unwrap_or_default();
        let name = self.target_name();
        Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("reading Secret {namespace}/{name}")))
    }

    /// The ConfigMaps and Secrets that `template.templateFrom` names, from this namespace.
    async fn template_sources(&self, ctx: &Context) -> Result<TemplateSources> {
        let mut sources = TemplateSources::default();
        let Some(template) = self.spec.target.as_ref().and_then(|t| t.template.as_ref()) else {
            return Ok(sources);
        };
        let namespace = self.namespace().unwrap_or_default();
        for from in &template.template_from {
            if let Some(reference) = &from.config_map {
                let found = Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace)
                    .get_opt(&reference.name)
                    .await
                    .map_err(Error::kube(format!(
                        "reading ConfigMap {namespace}/{}",
                        reference.name
                    )))?;
                if let Some(map) = found {
                    sources
                        .config_maps
                        .insert(reference.name.clone(), map.data.unwrap_or_default());
                }
            }
            if let Some(reference) = &from.secret {
                let found = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
                    .get_opt(&reference.name)
                    .await
                    .map_err(Error::kube(format!(
                        "reading Secret {namespace}/{}",
                        reference.name
                    )))?;
                if let Some(secret) = found {
                    let data = secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    sources.secrets.insert(reference.name.clone(), data);
                }
            }
        }
        Ok(sources)
    }

    async fn fail(&self, ctx: &Context, error: Error) -> Result<Action> {
        let message = error.to_string();
        self.publish(ctx, EventType::Warning, "UpdateFailed", &message)
            .await;
        if let Err(status_error) = self
            .write_status(ctx, Condition::ready(false, error.reason(), message), None)
            .await
        {
            warn!(externalsecret = %ObjectRef::from_obj(self), error = %status_error, "could not write status");
        }
        Err(error)
    }

    /// `None` means never refresh periodically (`refreshInterval: 0`).
    fn refresh_interval(&self) -> Result<Option<Duration>> {
        let interval = match self.spec.refresh_interval.as_deref() {
            None | Some("") => DEFAULT_REFRESH_INTERVAL,
            Some(text) => secret_bridge::duration::parse(text)
                .map_err(|e| Error::Spec(format!("spec.refreshInterval: {e}")))?,
        };
        Ok((!interval.is_zero()).then_some(interval))
    }

    fn target_name(&self) -> String {
        self.spec
            .target
            .as_ref()
            .and_then(|t| t.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.name_any())
    }

    /// Writes the target Secret with server-side apply; returns whether its data changed.
    async fn write_secret(
        &self,
        ctx: &Context,
        desired: Desired,
        creation: CreationPolicy,
        existing: Option<Secret>,
    ) -> Result<bool> {
        let namespace = self.namespace().unwrap_or_default();
        let name = self.target_name();
        let owner = self
            .controller_owner_ref(&())
            .expect("an ExternalSecret from the API has a name and uid");
        let existing_data: BTreeMap<String, Vec<u8>> = existing
            .as_ref()
            .and_then(|s| s.data.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        if let Some(existing) = &existing {
            let foreign_owner = existing
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true) && o.uid != owner.uid);
            if let Some(foreign) = foreign_owner {
                return Err(Error::Conflict(format!(
                    "Secret {namespace}/{name} is already controlled by {} {:?}",
                    foreign.kind, foreign.name
                )));
            }
        }
        // The data the Secret ends up with: server-side apply keeps the keys others own.
        let mut final_data = if creation.keeps_other_keys() {
            existing_data.clone()
        } else {
            BTreeMap::new()
        };
        final_data.extend(desired.data.clone());
        let owned = creation == CreationPolicy::Owner;
        let mut labels = desired.labels;
        labels.insert(MANAGED_LABEL.to_owned(), "true".to_owned());
        if owned {
            labels.insert(
                target::OWNER_LABEL.to_owned(),
                target::owner_label_value(&namespace, &self.name_any()),
            );
        }
        let mut annotations = desired.annotations;
        annotations.insert(
            target::DATA_HASH_ANNOTATION.to_owned(),
            target::data_hash(&final_data),
        );
        let changed = existing.is_none()
            || desired
                .data
                .iter()
                .any(|(k, v)| existing_data.get(k) != Some(v))
            || (!creation.keeps_other_keys() && existing_data.len() != desired.data.len());
        if let Some(existing) = &existing {
            if existing.immutable == Some(true) {
                if changed {
                    return Err(Error::Conflict(format!(
                        "could not update Secret {namespace}/{name}: it is immutable"
                    )));
                }
                return Ok(false);
            }
            let same_metadata = labels
                .iter()
                .all(|(k, v)| existing.labels().get(k) == Some(v))
                && annotations
                    .iter()
                    .all(|(k, v)| existing.annotations().get(k) == Some(v));
            let owner_matches = existing
                .owner_references()
                .iter()
                .any(|o| o.uid == owner.uid)
                == owned;
            let type_matches = desired.type_.is_none() || desired.type_ == existing.type_;
            if !changed && same_metadata && owner_matches && type_matches {
                // Already what we would write: save the apiserver a write.
                return Ok(false);
            }
        }
        let type_ = desired.type_.clone().or_else(|| {
            if creation.keeps_other_keys() {
                None
            } else {
                Some(
                    existing
                        .as_ref()
                        .and_then(|s| s.type_.clone())
                        .unwrap_or_else(|| "Opaque".into()),
                )
            }
        });
        let immutable = self
            .spec
            .target
            .as_ref()
            .and_then(|t| t.immutable)
            .filter(|i| *i);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: owned.then(|| vec![owner]),
                finalizers: (!desired.finalizers.is_empty()).then_some(desired.finalizers),
                ..Default::default()
            },
            type_,
            immutable,
            data: Some(
                desired
                    .data
                    .into_iter()
                    .map(|(k, v)| (k, ByteString(v)))
                    .collect(),
            ),
            ..Default::default()
        };
        Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await
            .map_err(Error::kube(format!("writing Secret {namespace}/{name}")))?;
        Ok(changed)
    }

    async fn write_status(
        &self,
        ctx: &Context,
        condition: Condition,
        synced_versions: Option<BTreeMap<String, String>>,
    ) -> Result<()> {
        let previous = self.status.clone().unwrap_or_default();
        let synced = synced_versions.is_some();
        let status = ExternalSecretStatus {
            refresh_time: if synced {
                Some(Time(k8s_openapi::jiff::Timestamp::now()))
            } else {
                previous.refresh_time
            },
            synced_resource_version: if synced {
                Some(self.synced_resource_version())
            } else {
                previous.synced_resource_version
            },
            conditions: vec![condition.keep_transition_time(&previous.conditions)],
            binding: Some(LocalObjectReference {
                name: self.target_name(),
            }),
            synced_versions: synced_versions.unwrap_or(previous.synced_versions),
        };
        let patch = json!({
            "apiVersion": ExternalSecret::api_version(&()),
            "kind": ExternalSecret::kind(&()),
            "status": status,
        });
        let namespace = self.namespace().unwrap_or_default();
        Api::<ExternalSecret>::namespaced(ctx.client.clone(), &namespace)
            .patch_status(
                &self.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await
            .map_err(Error::kube(format!(
                "writing status of ExternalSecret {namespace}/{}",
                self.name_any()
            )))?;
        Ok(())
    }

    /// `<generation>-<hash of labels and annotations>`, as ESO records what it synced.
    fn synced_resource_version(&self) -> String {
        let mut hasher = DefaultHasher::new();
        (self.labels(), self.annotations()).hash(&mut hasher);
        format!(
            "{}-{:016x}",
            self.meta().generation.unwrap_or_default(),
            hasher.finish()
        )
    }

    async fn publish(&self, ctx: &Context, type_: EventType, reason: &str, note: &str) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1024).collect()),
            action: "Sync".into(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &self.object_ref(&())).await {
            debug!(externalsecret = %ObjectRef::from_obj(self), %error, "could not publish event");
        }
    }
}

/// Whether the target Secret still holds what we last wrote (ESO's `isSecretValid`): it
/// exists, carries the managed label, and its data matches the `data-hash` annotation.
fn secret_is_valid(existing: Option<&Secret>, creation: CreationPolicy) -> bool {
    if matches!(creation, CreationPolicy::Orphan | CreationPolicy::None) {
        return true;
    }
    let Some(secret) = existing else {
        return false;
    };
    if secret.labels().get(MANAGED_LABEL).map(String::as_str) != Some("true") {
        return false;
    }
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    secret.annotations().get(target::DATA_HASH_ANNOTATION) == Some(&target::data_hash(&data))
}

/// The Go-template engine of ESO's `engineVersion: v2`.
fn render_template(name: &str, text: &str, values: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>> {
    if !text.contains("{{") {
        return Ok(text.as_bytes().to_vec());
    }
    let _ = values;
    Err(Error::Unsupported(format!(
        "{name}: Go templates are not available in this build"
    )))
}
