//! The one place that counts AWS calls (Secrets Manager through [`crate::aws::Counted`], SQS
//! in the event consumer): each call is counted once, and shows in our
//! `secret_bridge_aws_calls_total{operation,result}` and in ESO's
//! `externalsecret_provider_api_calls_count{provider,call,status}`. AWS bills per call, so
//! these are the cost.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::telemetry::eso::{PlainCounter, ProviderCallLabels};

/// The `provider` label of SQS calls (the event queue; ESO has no such provider).
pub const PROVIDER_SQS: &str = "AWS/SQS";

/// An AWS call: its operation and whether it succeeded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct AwsCallLabels {
    pub operation: &'static str,
    pub result: &'static str,
}

/// Counters of AWS calls. Cheap to clone; clones count into the same series.
#[derive(Clone, Debug, Default)]
pub struct AwsCalls {
    pub ours: Family<AwsCallLabels, Counter>,
    pub eso: Family<ProviderCallLabels, PlainCounter>,
}

impl AwsCalls {
    /// Counts one call of `provider` (ESO's label, such as `AWS/SecretsManager`).
    pub fn record(&self, provider: &'static str, operation: &'static str, succeeded: bool) {
        let result = if succeeded { "success" } else { "error" };
        self.ours
            .get_or_create(&AwsCallLabels { operation, result })
            .inc();
        self.eso
            .get_or_create(&ProviderCallLabels {
                provider,
                call: operation,
                status: result,
            })
            .inc();
    }
}
