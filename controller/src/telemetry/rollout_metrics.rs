//! Metrics of workload restarts (`controller/src/rollout`): restarts and failed restarts by
//! workload kind, and the time from an event's arrival to the restart it caused.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone)]
pub struct RolloutMetrics {
    /// Restarts made (pod template patched), by workload kind.
    pub restarts: Family<KindLabels, Counter>,
    /// Restarts given up after their retries, by workload kind.
    pub failures: Family<KindLabels, Counter>,
    /// From an event's arrival at the controller to the restart it caused.
    pub lag_seconds: Histogram,
}

impl RolloutMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> RolloutMetrics {
        let metrics = RolloutMetrics {
            restarts: Family::default(),
            failures: Family::default(),
            lag_seconds: Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        };
        registry.register(
            "workload_restarts",
            "Workloads restarted after a Secret's data changed, by kind",
            metrics.restarts.clone(),
        );
        registry.register(
            "workload_restart_failures",
            "Workload restarts given up after retries, by kind",
            metrics.failures.clone(),
        );
        registry.register(
            "rollout_lag_seconds",
            "Time from an event's arrival at the controller to the restart of the workloads it changed",
            metrics.lag_seconds.clone(),
        );
        metrics
    }

    pub fn restarted(&self, kind: &'static str) {
        self.restarts.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn failed(&self, kind: &'static str) {
        self.failures.get_or_create(&KindLabels { kind }).inc();
    }
}
