//! Wiring: the ExternalSecret controller, its triggers, and the shared context of reconciles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info};

use crate::api::ExternalSecret;
use crate::credentials::ClientFactory;
use crate::index::ExternalSecretIndex;
use crate::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile};
use crate::stores::StoreCache;
use crate::trigger::Triggers;
use crate::{FIELD_MANAGER, MANAGED_LABEL};

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub aws: ClientFactory,
    pub recorder: Recorder,
    pub triggers: Arc<Triggers>,
    pub controller_class: Option<String>,
    pub metrics: Arc<Metrics>,
    pub stores: StoreCache,
    failures: Mutex<HashMap<ObjectRef<ExternalSecret>, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        aws: ClientFactory,
        triggers: Arc<Triggers>,
        controller_class: Option<String>,
        metrics: Arc<Metrics>,
        stores: StoreCache,
    ) -> Self {
        let reporter = Reporter {
            controller: "secret-bridge".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            aws,
            triggers,
            controller_class,
            metrics,
            stores,
            failures: Mutex::default(),
        }
    }

    /// Counts a failure of `object`; returns how many came before it in a row.
    pub fn record_failure(&self, object: &ObjectRef<ExternalSecret>) -> u32 {
        let mut failures = self.failures.lock().expect("failures lock");
        let count = failures.entry(object.clone()).or_default();
        *count += 1;
        *count - 1
    }

    pub fn record_success(&self, object: &ObjectRef<ExternalSecret>) {
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

/// A cache of every ExternalSecret, and the watch stream that fills it (to be polled).
/// managedFields are dropped to save memory.
pub fn external_secret_cache(
    client: &Client,
    index: ExternalSecretIndex,
) -> (
    Store<ExternalSecret>,
    impl Stream<Item = Result<ExternalSecret, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let stream = watcher(
        Api::<ExternalSecret>::all(client.clone()),
        watcher::Config::default(),
    )
    .modify(|es| es.managed_fields_mut().clear())
    .map_ok(move |event| {
        index.apply(&event);
        event
    })
    .reflect(writer)
    .applied_objects();
    (reader, stream)
}

/// Accelerator mode keeps the cache without a controller: drive its watch until `shutdown`.
pub async fn run_cache_only(
    stream: impl Stream<Item = Result<ExternalSecret, watcher::Error>> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut stream = std::pin::pin!(stream.default_backoff().take_until(shutdown));
    while let Some(item) = stream.next().await {
        if let Err(error) = item {
            tracing::warn!(%error, "watching ExternalSecrets failed; retrying");
        }
    }
}

/// The controller, built but not yet running, and the store of ExternalSecrets it keeps.
pub struct ExternalSecretController {
    controller: Controller<ExternalSecret>,
    triggers: Arc<Triggers>,
    index: ExternalSecretIndex,
}

impl ExternalSecretController {
    pub fn new(client: &Client, concurrency: u16) -> Self {
        let (triggers, trigger_stream) = Triggers::new();
        // Only the metadata of the Secrets we manage is watched: enough to notice a Secret
        // deleted or edited behind our back, without caching Secret values in memory. Our own
        // writes are not echoed back into reconciles (each would cost an AWS read).
        let owned = watcher(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true")),
        )
        .try_filter_map(|event| future::ready(Ok(changed_by_others(event))));
        let index = ExternalSecretIndex::default();
        let (reader, external_secrets) = external_secret_cache(client, index.clone());
        let controller = Controller::for_stream(external_secrets, reader)
            .owns_stream(owned)
            .reconcile_on(trigger_stream)
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
        ExternalSecretController {
            controller,
            triggers: Arc::new(triggers),
            index,
        }
    }

    pub fn store(&self) -> Store<ExternalSecret> {
        self.controller.store()
    }

    pub fn index(&self) -> ExternalSecretIndex {
        self.index.clone()
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
        self.controller
            .graceful_shutdown_on(shutdown)
            .run(reconcile, error_policy, context)
            .for_each(|result| async move {
                match result {
                    Ok((object, action)) => debug!(externalsecret = %object, ?action, "reconciled"),
                    Err(error) => debug!(%error, "reconcile not completed"),
                }
            })
            .await;
        info!("controller stopped");
    }
}
