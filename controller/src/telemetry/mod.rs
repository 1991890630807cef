//! What the controller tells operators: Prometheus metrics and the probe endpoint.

pub mod health;
pub mod metrics;
pub mod probe;
pub mod rollout_metrics;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

/// The one Kubernetes Event recorder of the process, shared by every controller: Events name
/// `secret-bridge` and, in a cluster, the pod (`POD_NAME`, from the downward API).
pub fn recorder(client: &Client) -> Recorder {
    let reporter = Reporter {
        controller: "secret-bridge".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    Recorder::new(client.clone(), reporter)
}
