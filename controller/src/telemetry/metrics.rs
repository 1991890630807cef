//! Prometheus metrics, served on `/metrics`: ours, prefixed `secret_bridge_`, whose labels are
//! bounded (results, event types, error kinds), never object names or secret values; and
//! beside them ESO's series ([`crate::telemetry::eso`]) and the process's
//! ([`crate::telemetry::process`]), unprefixed, as ESO serves them.

use std::fmt;
use std::time::Duration;

use kube::runtime::reflector::{ObjectRef, Store};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::ExternalSecret;
pub use crate::telemetry::aws_calls::AwsCallLabels;
use crate::telemetry::aws_calls::AwsCalls;
use crate::telemetry::eso::{EsoMetrics, Inventory};
use crate::telemetry::process::ProcessCollector;
use crate::telemetry::rollout_metrics::RolloutMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
}

pub struct Metrics {
    registry: Registry,
    /// ESO's and the process's series: no prefix.
    unprefixed: Registry,
    pub eso: EsoMetrics,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_seconds: Histogram,
    /// SQS messages by outcome: received, deleted, kept (left for a retry or the DLQ), unreadable.
    pub messages: Family<ResultLabels, Counter>,
    pub events: Family<EventLabels, Counter>,
    /// From the message's arrival in SQS to the end of its reconciles.
    pub event_lag_seconds: Histogram,
    /// Secrets Manager and SQS calls by operation and result: the cost (AWS bills per call).
    pub aws_calls: AwsCalls,
    /// Workload restarts (`rollout`), in their own file.
    pub rollout: RolloutMetrics,
    /// 1 while this process writes (it holds the Lease, or leader election is off).
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("secret_bridge");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_seconds = Histogram::new(latency_buckets());
        let messages = Family::<ResultLabels, Counter>::default();
        let events = Family::<EventLabels, Counter>::default();
        let event_lag_seconds = Histogram::new(latency_buckets());
        let aws_calls = AwsCalls::default();
        registry.register(
            "aws_calls",
            "Secrets Manager and SQS calls by operation and result",
            aws_calls.ours.clone(),
        );
        let mut unprefixed = Registry::default();
        unprefixed.register(
            "externalsecret_provider_api_calls_count",
            "Number of API calls towards the secret provider",
            aws_calls.eso.clone(),
        );
        let eso = EsoMetrics::default();
        eso.register(&mut unprefixed);
        unprefixed.register_collector(Box::new(ProcessCollector));
        registry.register(
            "reconciles",
            "ExternalSecret reconciles by result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error kind",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of a reconcile",
            reconcile_seconds.clone(),
        );
        registry.register("sqs_messages", "SQS messages by outcome", messages.clone());
        registry.register(
            "events",
            "Secrets Manager change events by type",
            events.clone(),
        );
        registry.register(
            "event_lag_seconds",
            "Time from an event's arrival in SQS until its Secrets were written",
            event_lag_seconds.clone(),
        );
        let rollout = RolloutMetrics::register(&mut registry);
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica writes (holds the Lease, or leader election is off); 0 on a standby",
            leader.clone(),
        );
        Metrics {
            rollout,
            registry,
            unprefixed,
            eso,
            leader,
            reconciles,
            reconcile_errors,
            reconcile_seconds,
            messages,
            events,
            aws_calls,
            event_lag_seconds,
        }
    }
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ]
    .into_iter()
}

impl Metrics {
    pub fn message(&self, result: &'static str) {
        self.messages.get_or_create(&ResultLabels { result }).inc();
    }

    /// A reconcile of `object` ended (`live`: the ExternalSecret cache): our series and ESO's.
    pub fn external_secret_reconciled(
        &self,
        object: &ObjectRef<ExternalSecret>,
        live: &Store<ExternalSecret>,
        error_kind: Option<&'static str>,
        took: Duration,
    ) {
        self.reconciled(error_kind, took);
        self.eso
            .external_secret_reconciled(object, live, error_kind.is_some(), took);
    }

    fn reconciled(&self, error_kind: Option<&'static str>, took: Duration) {
        let result = if error_kind.is_some() {
            "error"
        } else {
            "success"
        };
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        if let Some(kind) = error_kind {
            self.reconcile_errors
                .get_or_create(&ErrorLabels { kind })
                .inc();
        }
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    /// The text exposition format, with the per-object series of `inventory`, in one String
    /// (tests; `/metrics` streams it with [`Metrics::encode_to`]).
    pub fn encode(&self, inventory: Inventory) -> String {
        let mut text = String::new();
        self.encode_to(inventory, &mut text)
            .expect("writing to a String");
        text
    }

    /// Writes the text exposition format to `out` as it is encoded, so that a scrape need not
    /// hold its whole text ([`crate::telemetry::scrape`]).
    ///
    /// The per-object series come from an owned snapshot ([`EsoMetrics::scrape`], taken first,
    /// as before the registries' counters are read). The registries' own families are few and
    /// bounded, and are encoded into memory first: encoding holds their locks, and `out` may
    /// wait on a slow reader.
    pub fn encode_to(&self, inventory: Inventory, out: &mut impl fmt::Write) -> fmt::Result {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut objects = Registry::default();
        objects.register_collector(Box::new(self.eso.scrape(inventory)));
        let mut fixed = String::new();
        for registry in [&self.registry, &self.unprefixed] {
            encode_registry(&mut fixed, registry)?;
        }
        out.write_str(&fixed)?;
        drop(fixed);
        encode_registry(out, &objects)?;
        encode_eof(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_and_histograms() {
        let metrics = Metrics::default();
        metrics.message("received");
        metrics.reconciled(Some("aws"), Duration::from_millis(12));
        metrics
            .events
            .get_or_create(&EventLabels {
                event: "SecretLabelUpdated".into(),
            })
            .inc();
        let text = metrics.encode(Inventory::default());
        assert!(
            text.contains(r#"secret_bridge_sqs_messages_total{result="received"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"secret_bridge_reconcile_errors_total{kind="aws"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"secret_bridge_events_total{event="SecretLabelUpdated"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("secret_bridge_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
