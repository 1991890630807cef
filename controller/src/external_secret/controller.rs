//! Wiring: the ExternalSecret controller, its triggers, and the shared context of reconciles.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info};

use crate::api::ExternalSecret;
use crate::aws::credentials::ClientFactory;
use crate::cache::{self, Caches, Fingerprint};
use crate::events::triggers::Triggers;
use crate::external_secret::intake::Intake;
use crate::external_secret::pacer::Pacer;
use crate::external_secret::reconcile::{error_policy, reconcile};
use crate::rollout::Rollouts;
use crate::telemetry::event_sink::EventSink;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::recorder::EventRecorder;
use crate::{FIELD_MANAGER, MANAGED_LABEL};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub aws: ClientFactory,
    /// Events about ExternalSecrets, published off the reconcile's path.
    pub events: EventSink,
    pub triggers: Arc<Triggers>,
    /// Periodic resyncs.
    pub pacer: Arc<Pacer>,
    /// New and changed ExternalSecrets.
    pub intake: Arc<Intake>,
    pub metrics: Arc<Metrics>,
    pub caches: Caches,
    pub settings: Settings,
    /// Where written Secrets are reported, to restart the workloads that read them.
    pub rollouts: Rollouts,
    failures: Mutex<HashMap<ObjectRef<ExternalSecret>, u32>>,
    /// ExternalSecrets this process has reconciled at least once.
    seen: Mutex<HashSet<Fingerprint>>,
    /// The served CRD has no `status.syncedVersions` (ESO's CRDs): status is written without
    /// it. Learnt from the apiserver's refusal of the first status write.
    pub status_without_synced_versions: std::sync::atomic::AtomicBool,
}

/// What the command line decides for reconciles.
pub struct Settings {
    /// Serve only stores with this `spec.controller` (`--controller-class`).
    pub controller_class: Option<String>,
    /// `--namespaced-store-ambient-credentials`.
    pub namespaced_ambient_credentials: bool,
    /// `--flood-gate`: do not sync through a store that is not `Ready`.
    pub flood_gate: bool,
    /// `--min-refresh-interval`: no ExternalSecret resyncs more often than this.
    pub min_refresh_interval: std::time::Duration,
}

impl Context {
    pub fn new(
        client: Client,
        aws: ClientFactory,
        recorder: EventRecorder,
        controller: &ExternalSecretController,
        metrics: Arc<Metrics>,
        caches: Caches,
        settings: Settings,
    ) -> Self {
        Context {
            events: EventSink::spawn(recorder),
            client,
            aws,
            triggers: controller.triggers.clone(),
            pacer: controller.pacer.clone(),
            intake: controller.intake.clone(),
            metrics,
            caches,
            settings,
            rollouts: Rollouts::disabled(),
            failures: Mutex::default(),
            status_without_synced_versions: Default::default(),
            seen: Mutex::default(),
        }
    }

    /// Restarts workloads through `rollouts` (`--restart-workloads`).
    pub fn with_rollouts(self, rollouts: Rollouts) -> Self {
        Context { rollouts, ..self }
    }

    /// Records that `object` is being reconciled; returns whether this is its first
    /// reconcile in this process.
    pub fn mark_seen(&self, object: &ObjectRef<ExternalSecret>) -> bool {
        let mut seen = self.seen.lock().expect("seen lock");
        let first = seen.insert(Fingerprint::of(object));
        if first && seen.len() > self.caches.external_secrets.len() {
            let live = Fingerprint::all(&self.caches.external_secrets);
            seen.retain(|fingerprint| live.contains(fingerprint));
        }
        first
    }

    /// Whether some ExternalSecret in the cache has not been reconciled by this process yet
    /// (after a start, or when created): the pacer then lets resyncs through one at a time,
    /// so that new ExternalSecrets go first. A new ExternalSecret is normally reconciled
    /// within milliseconds, so resyncs rarely wait.
    pub fn has_unseen(&self) -> bool {
        self.seen.lock().expect("seen lock").len() < self.caches.external_secrets.len()
    }

    /// Counts a failure of `object`; returns how many came before it in a row.
    pub fn record_failure(&self, object: &ObjectRef<ExternalSecret>) -> u32 {
        let mut failures = self.failures.lock().expect("failures lock");
        // Deleted ExternalSecrets are never reconciled again: forget them once they outnumber
        // the live ones.
        if failures.len() > 2 * self.caches.external_secrets.len() + 1024 {
            let live = &self.caches.external_secrets;
            failures.retain(|object, _| live.get(object).is_some());
        }
        let count = failures.entry(object.clone()).or_default();
        *count += 1;
        *count - 1
    }

    /// Forgets the failures of `object` (it succeeded, or it is gone).
    pub fn forget_failures(&self, object: &ObjectRef<ExternalSecret>) {
        self.failures.lock().expect("failures lock").remove(object);
    }
}

/// The Secret of a watch event that someone else changed or deleted, if any.
fn changed_by_others(
    event: watcher::Event<PartialObjectMeta<Secret>>,
) -> Option<PartialObjectMeta<Secret>> {
    match event {
        watcher::Event::Delete(secret) => Some(secret),
        watcher::Event::Apply(secret) => {
            // Times have one-second granularity: a tie counts as someone else's change.
            let time = |entry: &ManagedFieldsEntry| entry.time.as_ref().map(|t| t.0);
            let fields = secret.managed_fields();
            let ours = fields
                .iter()
                .filter(|e| e.manager.as_deref() == Some(FIELD_MANAGER))
                .filter_map(time)
                .max();
            let others = fields
                .iter()
                .filter(|e| e.manager.as_deref() != Some(FIELD_MANAGER))
                .filter_map(time)
                .max();
            let changed = match (ours, others) {
                (Some(ours), Some(others)) => others >= ours,
                (None, _) => true,
                (Some(_), None) => false,
            };
            changed.then_some(secret)
        }
        // The initial list: every ExternalSecret is reconciled at start anyway.
        watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::InitDone => None,
    }
}

/// What of an ExternalSecret asks for a new sync when it changes: its spec (generation), its
/// labels and annotations (ESO's `force-sync`, and they are copied to the Secret), and its
/// deletion. Status is not in it: our own status writes trigger nothing.
fn sync_inputs(es: &ExternalSecret) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    es.meta().generation.hash(&mut hasher);
    es.labels().hash(&mut hasher);
    es.annotations().hash(&mut hasher);
    es.meta().deletion_timestamp.is_some().hash(&mut hasher);
    hasher.finish()
}

/// The controller, built but not yet running.
pub struct ExternalSecretController {
    controller: Controller<ExternalSecret>,
    triggers: Arc<Triggers>,
    pacer: Arc<Pacer>,
    intake: Arc<Intake>,
    /// New and changed ExternalSecrets, for the intake.
    changes: BoxStream<'static, Arc<ExternalSecret>>,
    reader: Store<ExternalSecret>,
}

impl ExternalSecretController {
    /// A controller triggered by the shared ExternalSecret watch (`subscription`), by changes
    /// others make to the Secrets we manage, and by events ([`Triggers`]).
    pub fn new(
        client: &Client,
        subscription: cache::Subscription<ExternalSecret>,
        concurrency: u16,
    ) -> Self {
        let (triggers, trigger_stream) = Triggers::new();
        // A quarter of the workers stay free of resyncs, for events and new ExternalSecrets.
        let (pacer, resyncs) = Pacer::new(usize::from(concurrency) * 3 / 4);
        // Only the metadata of the Secrets we manage is watched: enough to notice a Secret
        // deleted or edited behind our back, without caching Secret values in memory. Our own
        // writes are not echoed back into reconciles (each would cost an AWS read).
        let owned = watcher(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true")),
        )
        .try_filter_map(|event| future::ready(Ok(changed_by_others(event))));
        // New and changed ExternalSecrets enter through the intake, at most `concurrency`
        // at a time (see `intake`).
        let (intake, admitted) = Intake::new(usize::from(concurrency));
        let reader = subscription.reader();
        let changes = cache::changed(subscription, reader.clone(), sync_inputs).boxed();
        let controller = Controller::for_shared_stream(futures::stream::pending(), reader.clone())
            .owns_stream(owned)
            .reconcile_on(admitted)
            .reconcile_on(trigger_stream)
            .reconcile_on(resyncs)
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
        ExternalSecretController {
            controller,
            triggers: Arc::new(triggers),
            pacer: Arc::new(pacer),
            intake: Arc::new(intake),
            changes,
            reader,
        }
    }

    pub fn triggers(&self) -> Arc<Triggers> {
        self.triggers.clone()
    }

    /// Runs until `shutdown` resolves, then lets running reconciles finish.
    pub async fn run(
        self,
        context: Arc<Context>,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) {
        info!("controller started");
        let (pacer, triggers, intake) = (
            self.pacer.clone(),
            self.triggers.clone(),
            self.intake.clone(),
        );
        context
            .metrics
            .eso
            .count_waiting(move || intake.waiting() + pacer.due_waiting() + triggers.waiting());
        let intake = self.intake.clone();
        let reader = self.reader.clone();
        let changes = self.changes;
        let taking = tokio::spawn(async move {
            intake
                .run(changes, |object| reader.get(object).is_some())
                .await
        });
        let pacer = self.pacer.clone();
        let reader = self.reader.clone();
        let waiting = context.clone();
        let pacing = tokio::spawn(async move {
            pacer
                .run(
                    |object| reader.get(object).is_some(),
                    || waiting.has_unseen() || waiting.triggers.has_waiting(),
                )
                .await
        });
        let controller = self
            .controller
            .graceful_shutdown_on(shutdown)
            .run(reconcile, error_policy, context)
            .for_each(|result| async move {
                match result {
                    Ok((object, action)) => debug!(externalsecret = %object, ?action, "reconciled"),
                    Err(error) => debug!(%error, "reconcile not completed"),
                }
            });
        let (mut controller, mut taking) = (std::pin::pin!(controller), std::pin::pin!(taking));
        tokio::select! {
            biased;
            () = &mut controller => {}
            ended = &mut taking => {
                // A panic in the intake stops the process: without it no new or changed
                // ExternalSecret would be reconciled again. Otherwise it ended with the
                // controller's stream (stopping) or the watch (never).
                if let Err(error) = ended
                    && error.is_panic()
                {
                    std::panic::resume_unwind(error.into_panic());
                }
                controller.await;
            }
        }
        pacing.abort();
        taking.abort();
        info!("controller stopped");
    }
}
