//! One reconcile of an ExternalSecret: resolve its store, read AWS, write the Secret, report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{GetParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::api::{Condition, ExternalSecret};
use crate::aws::coalesce::{Freshness, tolerance};
use crate::cache;
use crate::events::triggers::Triggers;
use crate::external_secret::controller::Context;
use crate::external_secret::fetch as sync;
use crate::external_secret::plan::{WriteInputs, WritePlan, plan_write};
use crate::external_secret::refresh::{self, RefreshPolicy};
use crate::external_secret::target::{
    self, CreationPolicy, DeletionPolicy, Desired, TemplateSources,
};
use crate::store::flood_gate;
use crate::store::resolve::ResolvedStore;
use crate::telemetry::eso::EXTERNAL_SECRET_CONTROLLER;
use crate::{Error, FIELD_MANAGER, MANAGED_LABEL, Result};

const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
/// ESO's `Ready` message after a successful sync.
const SYNCED: &str = "secret synced";

/// Entry point for the controller: reconciles and answers any event waiting on this object.
pub async fn reconcile(es: Arc<ExternalSecret>, ctx: Arc<Context>) -> Result<Action> {
    // A store or namespace missing from a cache still being listed would fail the sync.
    ctx.caches.ready().await;
    let _worker = ctx.metrics.eso.worker_started(EXTERNAL_SECRET_CONTROLLER);
    let started = std::time::Instant::now();
    let object = cache::reference(&*es);
    ctx.mark_seen(&object);
    let waiters = ctx.triggers.take(&object);
    // An event's refresh reads AWS after the event arrived; any other, after it started.
    let not_before = waiters.since.unwrap_or_else(Instant::now);
    let result = es.reconcile(&ctx, !waiters.is_empty(), not_before).await;
    // Periodic resyncs wait in the pacer, not in kube-runtime's scheduler (see `pacer`);
    // failures are retried by `error_policy`.
    match result {
        Ok(Next::Resync(after)) => ctx.pacer.schedule(&object, after),
        Ok(Next::OnChange) | Err(_) => ctx.pacer.cancel(&object),
    }
    ctx.pacer.finished(&object);
    ctx.intake.finished(&object);
    // An event is done when its refresh ran on fresh data, even if the ExternalSecret is
    // broken in a way only a person can fix; only transient failures send it back. Either
    // way the obligation to read AWS stays with the ExternalSecret: a failed sync leaves it
    // not Ready, and its retries read AWS until one succeeds (see `refresh::skip`).
    Triggers::answer(
        waiters,
        result.as_ref().map_or_else(|e| !e.is_transient(), |_| true),
    );
    ctx.metrics.external_secret_reconciled(
        &object,
        &ctx.caches.external_secrets,
        result.as_ref().err().map(Error::kind),
        started.elapsed(),
    );
    result.map(|_| Action::await_change())
}

/// When an ExternalSecret is reconciled again without a change to it or an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Its periodic resync, after this long.
    Resync(Duration),
    /// Only on a change (`refreshInterval: 0`, a policy that never re-reads, deleted).
    OnChange,
}

/// Retries a failed reconcile with a per-object exponential backoff (5 s doubling up to
/// 5 min), jittered so that ExternalSecrets failing together (a shared throttle, an AWS
/// outage) do not all retry at the same moment.
pub fn error_policy(es: Arc<ExternalSecret>, error: &Error, ctx: Arc<Context>) -> Action {
    let object = cache::reference(&*es);
    let failures = ctx.record_failure(&object);
    let delay = retry_delay(failures, jitter(&object));
    warn!(
        externalsecret = %object,
        error = %error,
        kind = error.kind(),
        retry_in_s = delay.as_secs(),
        "sync failed"
    );
    Action::requeue(delay)
}

/// `5 s · 2^failures`, at most 5 min, scaled by `jitter` (in `[0, 1)`) into its upper half.
fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let base = Duration::from_secs(5)
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(300));
    base.mul_f64(0.5 + jitter / 2.0)
}

/// A random number in `[0, 1)`, different for every call.
fn jitter(seed: &impl std::hash::Hash) -> f64 {
    use std::hash::BuildHasher;
    let random =
        std::collections::hash_map::RandomState::new().hash_one((seed, std::time::Instant::now()));
    (random >> 11) as f64 / (1u64 << 53) as f64
}

/// The next periodic resync, up to half its read tolerance later than due (a twentieth of
/// the interval, at most 30 s), so that ExternalSecrets synced together (at cold start, say)
/// spread out instead of coming due together forever, while a read prefetched for it just
/// before it comes due is still one it accepts (see `aws::coalesce`).
fn resync(after: Duration) -> Next {
    Next::Resync(after + tolerance(after).mul_f64(jitter(&after) / 2.0))
}

impl ExternalSecret {
    async fn reconcile(&self, ctx: &Context, event: bool, not_before: Instant) -> Result<Next> {
        if self.meta().deletion_timestamp.is_some() {
            return Ok(Next::OnChange);
        }
        let store = match ResolvedStore::get(&ctx.client, &ctx.caches, self)
            .await
            .map(|store| {
                store.allowing_ambient_credentials(ctx.settings.namespaced_ambient_credentials)
            }) {
            Ok(store) if !store.is_served_by(ctx.settings.controller_class.as_deref()) => {
                debug!(externalsecret = %ObjectRef::from_obj(self), store = %store.describe(), "store has another controller class; skipping");
                ctx.triggers.park(&cache::reference(self), true);
                return Ok(Next::OnChange);
            }
            Ok(store) => store,
            // With a class, only a store found and of our class proves the ExternalSecret is
            // ours: beside another controller, writing its status would fight over it. The
            // store's first validation reconciles it if the store shows up later.
            Err(error @ (Error::NotFound(_) | Error::Misconfigured(_)))
                if ctx.settings.controller_class.is_some() =>
            {
                debug!(externalsecret = %ObjectRef::from_obj(self), %error, "store not proven ours; leaving it alone");
                ctx.triggers.park(&cache::reference(self), true);
                return Ok(Next::OnChange);
            }
            Err(error) => return self.fail(ctx, error).await,
        };
        let namespace = self.namespace().unwrap_or_default();
        if let Err(error) = store.check_namespace_allowed(&ctx.client, &namespace).await {
            return self.fail(ctx, error).await;
        }
        let gate = match ctx.settings.flood_gate {
            true => flood_gate::check(&ctx.caches, &store, &namespace),
            false => Ok(()),
        };
        // Held back by the gate, it waits for its store's next status change.
        ctx.triggers.park(&cache::reference(self), gate.is_err());
        if let Err(error) = gate {
            return self.fail(ctx, error).await;
        }
        match self.sync(ctx, &store, event, not_before).await {
            Ok(action) => {
                ctx.forget_failures(&ObjectRef::from_obj(self));
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

    async fn sync(
        &self,
        ctx: &Context,
        store: &ResolvedStore,
        event: bool,
        not_before: Instant,
    ) -> Result<Next> {
        self.check_supported_target()?;
        let (refresh, synced) = self.refresh_interval(ctx.settings.min_refresh_interval)?;
        let policy = RefreshPolicy::parse(self.spec.refresh_policy.as_deref())?;
        let target = self.spec.target.clone().unwrap_or_default();
        let creation = CreationPolicy::parse(target.creation_policy.as_deref())?;
        let deletion = DeletionPolicy::parse(target.deletion_policy.as_deref())?;
        let current_version = self.synced_resource_version();
        let decision = refresh::skip(&refresh::Inputs {
            policy,
            interval: refresh,
            status: self.status.as_ref(),
            current_version: &current_version,
            event,
            now: k8s_openapi::jiff::Timestamp::now(),
        });
        let freshness = self.freshness(ctx, refresh, event, not_before, &current_version);
        let read = || self.read_provider(ctx, store, freshness, deletion);
        let (existing, fetched) = match decision {
            // Possibly not due: only a Secret that is no longer what we wrote makes it so.
            Some(after) => {
                let existing = self.existing_secret(ctx, creation).await?;
                if secret_is_valid(existing.as_ref(), creation) {
                    debug!(externalsecret = %ObjectRef::from_obj(self), ?policy, "not due for a refresh");
                    return Ok(after.map_or(Next::OnChange, resync));
                }
                (existing, read().await?)
            }
            // Due: the Secret and AWS are read at once.
            None => tokio::try_join!(self.existing_secret(ctx, creation), read())?,
        };
        let next = match refresh {
            Some(interval) => resync(interval),
            None => Next::OnChange,
        };
        if !fetched.deleted.is_empty() {
            self.publish(
                ctx,
                EventType::Normal,
                "MissingProviderSecret",
                &format!(
                    "secret does not exist at provider: {}",
                    fetched.deleted.join(", ")
                ),
            )
            .await;
        }
        // ESO: a provider that returns no data at all (every secret gone, or a `find` that
        // matches nothing) deletes the Secret (`Delete`), leaves it alone (`Retain`), or goes
        // on to drop only our keys (`Merge`).
        if fetched.data.is_empty() {
            match deletion {
                DeletionPolicy::Delete => {
                    return self
                        .source_deleted(ctx, &fetched.deleted, creation, existing)
                        .await
                        .map(|()| next);
                }
                DeletionPolicy::Retain => {
                    self.write_synced_status(
                        ctx,
                        Condition::ready(
                            true,
                            "SecretSynced",
                            "secret retained due to DeletionPolicy=Retain",
                        ),
                        fetched.versions,
                        false,
                        refresh,
                    )
                    .await?;
                    return Ok(next);
                }
                DeletionPolicy::Merge => {}
            }
        }
        match creation {
            CreationPolicy::None => {
                debug!(externalsecret = %ObjectRef::from_obj(self), "creationPolicy None: no Secret written");
                self.write_synced_status(
                    ctx,
                    Condition::ready(true, "SecretSynced", synced.clone()),
                    fetched.versions,
                    false,
                    refresh,
                )
                .await?;
                return Ok(next);
            }
            CreationPolicy::Merge if existing.is_none() => {
                self.write_synced_status(
                    ctx,
                    Condition::ready(
                        true,
                        "SecretMissing",
                        "secret will not be created due to CreationPolicy=Merge",
                    ),
                    fetched.versions,
                    false,
                    refresh,
                )
                .await?;
                return Ok(next);
            }
            // The target name changed: the Secrets written under an older name go, as ESO's
            // `deleteOrphanedSecrets` (which lists them on every sync; `status.binding` tells
            // us when there can be any, so a sync costs no List).
            CreationPolicy::Owner if self.bound_elsewhere() => {
                self.delete_orphaned_secrets(ctx).await?;
            }
            _ => {}
        }
        let sources = self.template_sources(ctx).await?;
        // Templates are tenant code bounded by the engine's budget, yet can take a while: render
        // off the async workers, so that one tenant's template never stalls the SQS consumer's
        // visibility heartbeats or other reconciles.
        let desired = tokio::task::block_in_place(|| {
            target::build(self, fetched.data, &sources, &render_template)
        })?;
        let name = self.target_name();
        let created = existing.is_none();
        let event_at = event.then_some(not_before);
        if self
            .write_secret(ctx, desired, creation, existing, event_at)
            .await?
        {
            let (reason, note) = if created {
                ("Created", "secret created")
            } else {
                ("Updated", "secret updated")
            };
            info!(externalsecret = %ObjectRef::from_obj(self), secret = %name, "{note}");
            self.publish(ctx, EventType::Normal, reason, note).await;
        } else {
            debug!(externalsecret = %ObjectRef::from_obj(self), secret = %name, "secret already up to date");
        }
        self.write_synced_status(
            ctx,
            Condition::ready(true, "SecretSynced", synced.clone()),
            fetched.versions,
            true,
            refresh,
        )
        .await?;
        Ok(next)
    }

    /// What read of AWS this sync accepts. `current_version`: the ExternalSecret's
    /// [`ExternalSecret::synced_resource_version`] now.
    fn freshness(
        &self,
        ctx: &Context,
        refresh: Option<Duration>,
        event: bool,
        not_before: Instant,
        current_version: &str,
    ) -> Freshness {
        let in_sync = refresh::is_ready(self.status.as_ref())
            && self
                .status
                .as_ref()
                .and_then(|s| s.synced_resource_version.as_deref())
                == Some(current_version);
        match refresh {
            // A routine resync of an ExternalSecret that is in sync: a read from a little
            // before is as good, and its call may carry the next resyncs' reads.
            Some(interval) if !event && in_sync => {
                // Late (a controller that cannot keep up), it accepts what it would have on time.
                let due = ctx.pacer.due(&ObjectRef::from_obj(self));
                Freshness::resync(due.map_or(not_before, |due| due.min(not_before)), interval)
            }
            // An event's read goes out at once; a first sync (a cold start reads thousands),
            // a changed spec or a retry may wait a moment to share a call.
            _ if event => Freshness::strict(not_before),
            _ => Freshness::gathered(not_before),
        }
    }

    /// Reads what the ExternalSecret asks of AWS, through the shared reads of its store's
    /// credentials and region (see `aws::coalesce`).
    async fn read_provider(
        &self,
        ctx: &Context,
        store: &ResolvedStore,
        freshness: Freshness,
        deletion: DeletionPolicy,
    ) -> Result<sync::SecretData> {
        let aws = store.aws()?;
        let auth = store.auth(&ctx.client, self).await?;
        let source = ctx.aws.source(&aws.region, &auth, freshness);
        let prefix = aws.prefix.as_deref().unwrap_or_default();
        match deletion {
            DeletionPolicy::Retain => sync::fetch(&self.spec, prefix, &source).await,
            DeletionPolicy::Delete | DeletionPolicy::Merge => {
                sync::fetch_skipping_deleted(&self.spec, prefix, &source).await
            }
        }
    }

    /// The target Secret. Before the first successful sync of an ExternalSecret that owns its
    /// Secret (`creationPolicy: Owner`, the default) it is read from the apiserver's watch
    /// cache (`resourceVersion=0`, no etcd read): 10,000 new ExternalSecrets cost 10,000 fewer
    /// etcd reads. That view may be a moment behind, as ESO's informer cache is: a Secret
    /// created by someone else within that moment is taken over by the apply as if it were
    /// new (without the checks an existing Secret gets, and its Event says `Created`). Every
    /// other read is consistent: a `Merge` target must exist, and a reconcile triggered by
    /// someone deleting or editing the Secret must see that change.
    async fn existing_secret(
        &self,
        ctx: &Context,
        creation: CreationPolicy,
    ) -> Result<Option<Secret>> {
        let namespace = self.namespace().unwrap_or_default();
        let name = self.target_name();
        let never_synced = self
            .status
            .as_ref()
            .is_none_or(|s| s.synced_resource_version.is_none());
        let params = match never_synced && creation == CreationPolicy::Owner {
            true => GetParams::any(),
            false => GetParams::default(),
        };
        match Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
            .get_with(&name, &params)
            .await
        {
            Ok(secret) => Ok(Some(secret)),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(None),
            Err(error) => Err(Error::kube(format!("reading Secret {namespace}/{name}"))(
                error,
            )),
        }
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
                    sources
                        .secrets
                        .insert(reference.name.clone(), target::secret_data(&secret));
                }
            }
        }
        Ok(sources)
    }

    /// The resync interval (`None`: never refresh periodically, `refreshInterval: 0`), at
    /// least `floor` (`--min-refresh-interval`), and the `Ready` message of a successful sync,
    /// which says when the interval asked for was raised to the floor.
    fn refresh_interval(&self, floor: Duration) -> Result<(Option<Duration>, String)> {
        let interval = match self.spec.refresh_interval.as_deref() {
            None | Some("") => DEFAULT_REFRESH_INTERVAL,
            Some(text) => secret_bridge::duration::parse(text)
                .map_err(|e| Error::Misconfigured(format!("spec.refreshInterval: {e}")))?,
        };
        if interval.is_zero() {
            return Ok((None, SYNCED.into()));
        }
        if interval < floor {
            let message = format!(
                "{SYNCED}; spec.refreshInterval {interval:?} is below this controller's minimum: resynced every {floor:?}"
            );
            return Ok((Some(floor), message));
        }
        Ok((Some(interval), SYNCED.into()))
    }

    pub(super) fn target_name(&self) -> String {
        self.spec
            .target
            .as_ref()
            .and_then(|t| t.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.name_any())
    }

    /// Writes the target Secret as [`plan_write`] decides; returns whether it changed.
    async fn write_secret(
        &self,
        ctx: &Context,
        desired: Desired,
        creation: CreationPolicy,
        existing: Option<Secret>,
        event_at: Option<Instant>,
    ) -> Result<bool> {
        let namespace = self.namespace().unwrap_or_default();
        let name = self.target_name();
        let owner = self
            .controller_owner_ref(&())
            .map(|owner| OwnerReference {
                // As controller-runtime's SetControllerReference, which ESO uses.
                block_owner_deletion: Some(true),
                ..owner
            })
            .expect("an ExternalSecret from the API has a name and uid");
        let inputs = WriteInputs {
            namespace: &namespace,
            name: &name,
            owner_name: &self.name_any(),
            owner,
            creation,
            immutable: self.spec.target.as_ref().and_then(|t| t.immutable) == Some(true),
            existing: existing.as_ref(),
        };
        let desired_data = desired.data.clone();
        let (secret, prune_foreign, created, data_changed) = match plan_write(inputs, desired)? {
            WritePlan::UpToDate => return Ok(false),
            WritePlan::Apply {
                secret,
                prune_foreign,
                created,
                data_changed,
            } => (secret, prune_foreign, created, data_changed),
        };
        let api = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
        let written = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&*secret),
            )
            .await
            .map_err(Error::kube(format!("writing Secret {namespace}/{name}")))?;
        // Keys other field managers wrote survive an apply; ESO's Owner/Orphan Secret holds
        // only what the ExternalSecret gives, so they are removed explicitly.
        let foreign = target::foreign_keys(creation, &desired_data, &target::secret_data(&written));
        if !foreign.is_empty() && prune_foreign {
            let removal: serde_json::Map<String, serde_json::Value> = foreign
                .iter()
                .map(|key| (key.clone(), serde_json::Value::Null))
                .collect();
            api.patch(
                &name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(json!({ "data": removal })),
            )
            .await
            .map_err(Error::kube(format!(
                "removing keys {foreign:?} that others wrote to Secret {namespace}/{name}"
            )))?;
        }
        ctx.rollouts
            .secret_written(self, &written, created, data_changed, event_at);
        Ok(true)
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
    secret.annotations().get(target::DATA_HASH_ANNOTATION)
        == Some(&target::data_hash(&target::secret_data(secret)))
}

/// The Go-template engine of ESO's `engineVersion: v2`. Its errors name the template and
/// the position, never a value.
fn render_template(name: &str, text: &str, values: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>> {
    secret_bridge::template::render(name, text, values)
        .map_err(|e| Error::Misconfigured(format!("could not apply template: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter() {
        assert_eq!(retry_delay(0, 0.0), Duration::from_millis(2500));
        assert_eq!(
            retry_delay(0, 0.999_999),
            Duration::from_secs(5).mul_f64(0.999_999_5)
        );
        assert_eq!(retry_delay(3, 0.0), Duration::from_secs(20));
        assert_eq!(retry_delay(30, 0.0), Duration::from_secs(150));
        let spread: std::collections::HashSet<_> =
            (0..20).map(|_| retry_delay(2, jitter(&"es"))).collect();
        assert!(spread.len() > 10, "jitter spreads retries: {spread:?}");
    }

    #[test]
    fn resyncs_come_back_late_never_early() {
        let hour = Duration::from_secs(3600);
        let spread: std::collections::HashSet<_> =
            (0..50).map(|_| format!("{:?}", resync(hour))).collect();
        assert!(spread.len() > 40, "resyncs are spread");
        for _ in 0..100 {
            let jitter = jitter(&hour);
            assert!((0.0..1.0).contains(&jitter));
        }
    }
}
