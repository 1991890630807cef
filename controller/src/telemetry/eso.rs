//! The series External Secrets Operator serves, with ESO's names, types, labels and label
//! values, so that ESO's dashboards and alerts work unchanged:
//!
//! - `externalsecret_sync_calls_total`, `externalsecret_sync_calls_error` (counters) and
//!   `externalsecret_reconcile_duration` (gauge, nanoseconds as ESO's Go code sets it), per
//!   `name`, `namespace`;
//! - `externalsecret_status_condition`, `secretstore_status_condition`,
//!   `clustersecretstore_status_condition`, `clusterexternalsecret_status_condition`
//!   (`condition="Ready"`, `status="True"|"False"`, the other status at 0 as ESO does), read
//!   from the objects' own status at each scrape;
//! - `externalsecret_provider_api_calls_count{provider,call,status}`: registered by
//!   [`crate::telemetry::metrics`] from the one place that counts AWS calls
//!   ([`crate::telemetry::aws_calls`]);
//! - controller-runtime's `controller_runtime_reconcile_total{controller,result}`,
//!   `controller_runtime_reconcile_errors_total`, `controller_runtime_reconcile_time_seconds`,
//!   `controller_runtime_active_workers`, `controller_runtime_max_concurrent_reconciles` and
//!   `workqueue_depth{controller,name}`.
//!
//! Cardinality: one set of series per ExternalSecret or store at most, and the series of an
//! object that is gone are dropped at the next scrape.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kube::runtime::reflector::{ObjectRef, Store};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::api::{ClusterExternalSecret, ExternalSecret};
use crate::cache::Fingerprint;
pub use crate::telemetry::inventory::{Inventory, ObjectStatus, Served};

/// ESO's `provider` label value for AWS Secrets Manager.
pub const PROVIDER_AWS_SECRETS_MANAGER: &str = "AWS/SecretsManager";
/// controller-runtime's controller name for ExternalSecrets, as ESO names it.
pub const EXTERNAL_SECRET_CONTROLLER: &str = "externalsecret";

/// A counter ESO names without `_total` (`externalsecret_sync_calls_error`,
/// `externalsecret_provider_api_calls_count`): exposed with type `unknown`, so that the
/// OpenMetrics encoding keeps ESO's name.
#[derive(Debug, Default, Clone)]
pub struct PlainCounter(Arc<AtomicU64>);

impl PlainCounter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TypedMetric for PlainCounter {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for PlainCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Unknown
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderCallLabels {
    pub provider: &'static str,
    pub call: &'static str,
    /// `success` or `error`.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerResultLabels {
    pub controller: &'static str,
    /// `success` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    controller: &'static str,
    name: &'static str,
}

/// What this process counted for one ExternalSecret.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct SyncCounts {
    calls: u64,
    errors: u64,
    last_duration: Duration,
}

/// ESO's series that are counted as things happen; the rest is read at scrape time
/// ([`Inventory`]).
#[derive(Debug)]
pub struct EsoMetrics {
    reconciles: Family<ControllerResultLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    reconcile_time: Family<ControllerLabels, Histogram>,
    active_workers: Family<ControllerLabels, Gauge>,
    max_concurrent: Family<ControllerLabels, Gauge>,
    syncs: Mutex<HashMap<Fingerprint, SyncCounts>>,
    /// The ClusterExternalSecret controller's cache, when it runs.
    cluster_external_secrets: OnceLock<Store<ClusterExternalSecret>>,
    /// What else waits to be reconciled (resyncs due, events), read at scrape time.
    waiting: OnceLock<Waiting>,
}

/// Counts work waiting outside kube-runtime's queue.
struct Waiting(Box<dyn Fn() -> usize + Send + Sync>);

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waiting")
    }
}

impl Default for EsoMetrics {
    fn default() -> Self {
        EsoMetrics {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_time: Family::new_with_constructor(|| {
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    0.005, 2.0, 14,
                ))
            }),
            active_workers: Family::default(),
            max_concurrent: Family::default(),
            syncs: Mutex::default(),
            cluster_external_secrets: OnceLock::new(),
            waiting: OnceLock::new(),
        }
    }
}

/// Counts a reconcile as running while alive (`controller_runtime_active_workers`).
pub struct ActiveWorker(Gauge);

impl Drop for ActiveWorker {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl EsoMetrics {
    /// Registers the series counted as things happen in `registry` (no prefix: ESO's names).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            self.reconciles.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            self.reconcile_time.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            self.active_workers.clone(),
        );
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            self.max_concurrent.clone(),
        );
    }

    /// Reports the status of the ClusterExternalSecrets in `store` at each scrape.
    pub fn watch_cluster_external_secrets(&self, store: Store<ClusterExternalSecret>) {
        let _ = self.cluster_external_secrets.set(store);
    }

    /// Adds what `waiting` counts at each scrape to `workqueue_depth` (the resyncs due and the
    /// events waiting, which our own queues hold).
    pub fn count_waiting(&self, waiting: impl Fn() -> usize + Send + Sync + 'static) {
        let _ = self.waiting.set(Waiting(Box::new(waiting)));
    }

    pub fn set_max_concurrent_reconciles(&self, controller: &'static str, workers: u16) {
        self.max_concurrent
            .get_or_create(&ControllerLabels { controller })
            .set(workers.into());
    }

    /// A reconcile of `controller` starts; it counts as active until the guard is dropped.
    pub fn worker_started(&self, controller: &'static str) -> ActiveWorker {
        let gauge = self
            .active_workers
            .get_or_create_owned(&ControllerLabels { controller });
        gauge.inc();
        ActiveWorker(gauge)
    }

    /// A reconcile of an ExternalSecret ended. `live` is the ExternalSecret cache: the
    /// counts of ExternalSecrets no longer in it are dropped once they outnumber the live
    /// ones (the scrape drops them too).
    pub fn external_secret_reconciled(
        &self,
        object: &ObjectRef<ExternalSecret>,
        live: &Store<ExternalSecret>,
        failed: bool,
        took: Duration,
    ) {
        self.reconciled(EXTERNAL_SECRET_CONTROLLER, failed, took);
        let mut syncs = self.syncs.lock().expect("eso metrics lock");
        if syncs.len() > 2 * live.len() + 1024 {
            let live = Fingerprint::all(live);
            syncs.retain(|fingerprint, _| live.contains(fingerprint));
        }
        let counts = syncs.entry(Fingerprint::of(object)).or_default();
        counts.calls += 1;
        counts.errors += u64::from(failed);
        counts.last_duration = took;
    }

    fn reconciled(&self, controller: &'static str, failed: bool, took: Duration) {
        let result = if failed { "error" } else { "success" };
        self.reconciles
            .get_or_create(&ControllerResultLabels { controller, result })
            .inc();
        if failed {
            self.reconcile_errors
                .get_or_create(&ControllerLabels { controller })
                .inc();
        }
        self.reconcile_time
            .get_or_create(&ControllerLabels { controller })
            .observe(took.as_secs_f64());
    }

    /// The series read at scrape time, for `inventory`, as a collector for a per-scrape
    /// registry. Forgets ExternalSecrets that are gone.
    pub fn scrape(&self, inventory: Inventory) -> ObjectSeries {
        // The inventory's positions by fingerprint (a scrape copies no name), built before
        // taking the lock that reconciles take.
        let live: HashMap<Fingerprint, usize> = inventory
            .external_secrets
            .iter()
            .enumerate()
            .map(|(index, es)| (Fingerprint::new(&es.namespace, &es.name), index))
            .collect();
        // One pass under the lock: forgets the gone, keeps the counts of the live.
        let mut reconciled: Vec<(usize, SyncCounts)> = Vec::with_capacity(live.len());
        self.syncs
            .lock()
            .expect("eso metrics lock")
            .retain(|fingerprint, counts| match live.get(fingerprint) {
                Some(&index) => {
                    reconciled.push((index, *counts));
                    true
                }
                None => false,
            });
        // In the inventory's order.
        reconciled.sort_unstable_by_key(|(index, _)| *index);
        let cluster_external_secrets = self
            .cluster_external_secrets
            .get()
            .map(|store| {
                store
                    .state()
                    .iter()
                    .map(|ces| ObjectStatus {
                        namespace: String::new(),
                        name: kube::ResourceExt::name_any(&**ces),
                        ready: ces
                            .status
                            .iter()
                            .flat_map(|s| &s.conditions)
                            .find(|c| c.type_ == "Ready")
                            .map(|c| c.status.clone()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ObjectSeries {
            cluster_external_secrets,
            queued: inventory
                .external_secrets
                .len()
                .saturating_sub(reconciled.len())
                + self.waiting.get().map_or(0, |waiting| (waiting.0)()),
            syncs: reconciled,
            inventory,
        }
    }
}

/// The per-object series of one scrape.
#[derive(Debug)]
pub struct ObjectSeries {
    inventory: Inventory,
    cluster_external_secrets: Vec<ObjectStatus>,
    /// The ExternalSecrets this process reconciled (their index in `inventory`, in its order),
    /// with their counts.
    syncs: Vec<(usize, SyncCounts)>,
    /// What waits to be reconciled, as controller-runtime's `workqueue_depth` shows it:
    /// ExternalSecrets in the cache this process has not reconciled yet (after a start, or
    /// new), resyncs due and events waiting.
    queued: usize,
}

impl Collector for ObjectSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let external_secrets = &self.inventory.external_secrets;
        let labels = |index: usize| {
            let es = &external_secrets[index];
            [
                ("name", es.name.as_str()),
                ("namespace", es.namespace.as_str()),
            ]
        };
        {
            let mut metric = encoder.encode_descriptor(
                "externalsecret_sync_calls",
                "Total number of the External Secret sync calls",
                None,
                MetricType::Counter,
            )?;
            for &(es, counts) in &self.syncs {
                ConstCounter::new(counts.calls).encode(metric.encode_family(&labels(es))?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "externalsecret_sync_calls_error",
                "Total number of the External Secret sync errors",
                None,
                MetricType::Unknown,
            )?;
            for &(es, counts) in &self.syncs {
                metric
                    .encode_family(&labels(es))?
                    .encode_gauge(&counts.errors)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "externalsecret_reconcile_duration",
                "The duration time to reconcile the External Secret (nanoseconds, as ESO)",
                None,
                MetricType::Gauge,
            )?;
            for &(es, counts) in &self.syncs {
                let nanos = counts.last_duration.as_nanos() as f64;
                ConstGauge::new(nanos).encode(metric.encode_family(&labels(es))?)?;
            }
        }
        let reconciled: Vec<&ObjectStatus> = self
            .syncs
            .iter()
            .map(|&(index, _)| &external_secrets[index])
            .collect();
        encode_conditions(
            &mut encoder,
            "externalsecret_status_condition",
            "The status condition of a specific External Secret",
            reconciled,
        )?;
        encode_conditions(
            &mut encoder,
            "secretstore_status_condition",
            "The status condition of a specific Secret Store",
            self.inventory.secret_stores.iter().collect(),
        )?;
        encode_conditions(
            &mut encoder,
            "clustersecretstore_status_condition",
            "The status condition of a specific Cluster Secret Store",
            self.inventory.cluster_secret_stores.iter().collect(),
        )?;
        encode_conditions(
            &mut encoder,
            "clusterexternalsecret_status_condition",
            "The status condition of a specific Cluster External Secret",
            self.cluster_external_secrets.iter().collect(),
        )?;
        let depth = ConstGauge::new(self.queued as i64);
        let mut metric = encoder.encode_descriptor(
            "workqueue_depth",
            "Current depth of workqueue",
            None,
            MetricType::Gauge,
        )?;
        depth.encode(metric.encode_family(&QueueLabels {
            controller: EXTERNAL_SECRET_CONTROLLER,
            name: EXTERNAL_SECRET_CONTROLLER,
        })?)
    }
}

/// ESO's condition gauge: `{condition="Ready",status=S} 1`, and for `True`/`False` the other
/// of the two at 0, so that either series answers "is it ready?".
fn encode_conditions(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    objects: Vec<&ObjectStatus>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for object in objects {
        let Some(status) = object.ready.as_deref() else {
            continue;
        };
        let mut sample = |status: &str, value: i64| {
            let labels = [
                ("name", object.name.as_str()),
                ("namespace", object.namespace.as_str()),
                ("condition", "Ready"),
                ("status", status),
            ];
            ConstGauge::new(value).encode(metric.encode_family(&labels)?)
        };
        sample(status, 1)?;
        match status {
            "True" => sample("False", 0)?,
            "False" => sample("True", 0)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "eso_tests.rs"]
mod tests;
