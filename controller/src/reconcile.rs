//! One reconcile of an ExternalSecret: resolve its store, read AWS, write the Secret, report.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
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
use crate::store::ResolvedStore;
use crate::trigger::Triggers;
use crate::{Error, FIELD_MANAGER, MANAGED_LABEL, Result, sync};

const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

/// Entry point for the controller: reconciles and answers any event waiting on this object.
pub async fn reconcile(es: Arc<ExternalSecret>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let waiters = ctx.triggers.take(&ObjectRef::from_obj(&*es));
    let result = es.reconcile(&ctx).await;
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
    async fn reconcile(&self, ctx: &Context) -> Result<Action> {
        if self.meta().deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let store = match ResolvedStore::get(&ctx.client, &ctx.stores, self).await {
            Ok(store) if !store.is_served_by(ctx.controller_class.as_deref()) => {
                debug!(externalsecret = %ObjectRef::from_obj(self), store = %store.describe(), "store has another controller class; skipping");
                return Ok(Action::await_change());
            }
            Ok(store) => Some(store),
            Err(error) => return self.fail(ctx, error).await,
        };
        let store = store.expect("resolved");
        let namespace = self.namespace().unwrap_or_default();
        if let Err(error) = store.check_namespace_allowed(&ctx.client, &namespace).await {
            return self.fail(ctx, error).await;
        }
        match self.sync(ctx, &store).await {
            Ok(action) => {
                ctx.record_success(&ObjectRef::from_obj(self));
                Ok(action)
            }
            Err(error) => self.fail(ctx, error).await,
        }
    }

    async fn sync(&self, ctx: &Context, store: &ResolvedStore) -> Result<Action> {
        let refresh = self.refresh_interval()?;
        let aws = store.aws()?;
        let auth = store.auth(&ctx.client, self).await?;
        let source = ctx.aws.secrets_manager(&aws.region, &auth);
        let fetched = match sync::fetch(
            &self.spec,
            aws.prefix.as_deref().unwrap_or_default(),
            &source,
        )
        .await
        {
            Err(Error::Aws(error)) if error.is_deleted() => {
                return self.source_deleted(ctx, error, refresh).await;
            }
            other => other?,
        };
        let changed = self.write_secret(ctx, fetched.data).await?;
        let target = self.target_name();
        if changed {
            info!(externalsecret = %ObjectRef::from_obj(self), secret = %target, "secret updated");
            self.publish(ctx, EventType::Normal, "Updated", "Updated Secret")
                .await;
        } else {
            debug!(externalsecret = %ObjectRef::from_obj(self), secret = %target, "secret already up to date");
        }
        self.write_status(
            ctx,
            Condition::ready(true, "SecretSynced", "secret synced"),
            Some(fetched.versions),
        )
        .await?;
        Ok(match refresh {
            Some(interval) => Action::requeue(interval),
            None => Action::await_change(),
        })
    }

    /// A secret this ExternalSecret reads is gone from AWS: apply `target.deletionPolicy`.
    /// `Retain` (the default) keeps the Secret and reports the error; `Delete` deletes the
    /// Secret we wrote and reports `SecretDeleted`.
    async fn source_deleted(
        &self,
        ctx: &Context,
        error: crate::aws::AwsError,
        refresh: Option<Duration>,
    ) -> Result<Action> {
        let policy = self
            .spec
            .target
            .as_ref()
            .and_then(|t| t.deletion_policy.as_deref());
        if policy != Some("Delete") {
            return Err(Error::Aws(error));
        }
        let namespace = self.namespace().unwrap_or_default();
        let name = self.target_name();
        let api = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
        let existing = api
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("reading Secret {namespace}/{name}")))?;
        let ours = existing
            .as_ref()
            .is_some_and(|s| s.labels().get(MANAGED_LABEL).map(String::as_str) == Some("true"));
        if ours {
            api.delete(&name, &Default::default())
                .await
                .map_err(Error::kube(format!("deleting Secret {namespace}/{name}")))?;
            info!(externalsecret = %ObjectRef::from_obj(self), secret = %name, "secret deleted: its source is gone (deletionPolicy Delete)");
            self.publish(
                ctx,
                EventType::Normal,
                "Deleted",
                "Deleted Secret: its source was deleted in AWS",
            )
            .await;
        }
        let message = format!("{error}; Secret {namespace}/{name} deleted (deletionPolicy Delete)");
        self.write_status(ctx, Condition::ready(false, "SecretDeleted", message), None)
            .await?;
        Ok(match refresh {
            Some(interval) => Action::requeue(interval),
            None => Action::await_change(),
        })
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
    async fn write_secret(&self, ctx: &Context, data: BTreeMap<String, Vec<u8>>) -> Result<bool> {
        let target = self.spec.target.clone().unwrap_or_default();
        let owned = match target.creation_policy.as_deref() {
            None | Some("") | Some("Owner") => true,
            Some("Orphan") => false,
            Some(policy @ ("Merge" | "None")) => {
                return Err(Error::Unsupported(format!(
                    "spec.target.creationPolicy {policy}"
                )));
            }
            Some(other) => {
                return Err(Error::Spec(format!(
                    "spec.target.creationPolicy {other:?} is not one of Owner, Orphan, Merge, None"
                )));
            }
        };
        if let Some(policy) = target.deletion_policy.as_deref().filter(|p| *p == "Merge") {
            return Err(Error::Unsupported(format!(
                "spec.target.deletionPolicy {policy}"
            )));
        }
        if let Some(policy) = target
            .deletion_policy
            .as_deref()
            .filter(|p| !["Retain", "Delete", "Merge", ""].contains(p))
        {
            return Err(Error::Spec(format!(
                "spec.target.deletionPolicy {policy:?} is not one of Retain, Delete, Merge"
            )));
        }
        if target.template.is_some() {
            return Err(Error::Unsupported("spec.target.template".into()));
        }
        let namespace = self.namespace().unwrap_or_default();
        let name = self.target_name();
        let api = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
        let existing = api
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("reading Secret {namespace}/{name}")))?;
        let owner = self
            .controller_owner_ref(&())
            .expect("an ExternalSecret from the API has a name and uid");
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
            if existing.immutable == Some(true) {
                return Ok(false);
            }
        }
        let data: BTreeMap<String, ByteString> =
            data.into_iter().map(|(k, v)| (k, ByteString(v))).collect();
        let changed = existing.as_ref().and_then(|s| s.data.as_ref()) != Some(&data);
        if let Some(existing) = &existing
            && !changed
            && existing.labels().get(MANAGED_LABEL).map(String::as_str) == Some("true")
            && existing
                .owner_references()
                .iter()
                .any(|o| o.uid == owner.uid)
                == owned
        {
            // Already what we would write: save the apiserver a write.
            return Ok(false);
        }
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some([(MANAGED_LABEL.to_owned(), "true".to_owned())].into()),
                owner_references: owned.then(|| vec![owner]),
                ..Default::default()
            },
            type_: Some(
                existing
                    .as_ref()
                    .and_then(|s| s.type_.clone())
                    .unwrap_or_else(|| "Opaque".into()),
            ),
            immutable: target.immutable.filter(|i| *i),
            data: Some(data),
            ..Default::default()
        };
        api.patch(
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
