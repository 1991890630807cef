//! What the controller tells operators: Prometheus metrics (ours, ESO's, the process's), logs,
//! and the probe endpoint.

pub mod aws_calls;
pub mod connections;
pub mod eso;
pub mod event_sink;
pub mod health;
pub mod inventory;
pub mod logs;
pub mod metrics;
pub mod probe;
pub mod process;
pub mod recorder;
pub mod rollout_metrics;
pub mod scrape;

#[cfg(test)]
mod monitoring_tests;

use kube::Client;
use kube::runtime::events::Reporter;

use crate::telemetry::recorder::EventRecorder;

/// The one Kubernetes Event recorder of the process, shared by every controller: Events name
/// `secret-bridge` and, in a cluster, the pod (`POD_NAME`, from the downward API).
pub fn recorder(client: &Client) -> EventRecorder {
    let reporter = Reporter {
        controller: "secret-bridge".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    EventRecorder::new(client.clone(), reporter)
}
