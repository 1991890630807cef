//! Restarting the workloads that read a Secret when its data changes (`--restart-workloads`),
//! with stakater Reloader's annotations, so a rotation in AWS ends in new pods.
//!
//! The ExternalSecret reconcile reports every Secret it wrote ([`Rollouts::secret_written`]);
//! a change of data in a Secret that already existed becomes a restart of the workloads that
//! opted in: those the [`index`] finds through Reloader's annotations, and those the
//! ExternalSecret names in [`select::RESTART_ANNOTATION`]. A restart patches one pod-template
//! annotation ([`RESTARTED_FROM_ANNOTATION`]) with the Secrets' new data hashes, as `kubectl
//! rollout restart` does, so the workload's own rollout strategy and disruption budgets apply.
//! Changes to one workload are coalesced and rate-limited ([`pending`]); each restart is
//! reported by Events on the workload and the ExternalSecret, and by metrics.

pub mod index;
pub mod pending;
mod restart;
pub mod select;
pub mod workload;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tracing::warn;

use crate::api::ExternalSecret;
use crate::external_secret::target::DATA_HASH_ANNOTATION;
use crate::rollout::index::WorkloadIndex;
use crate::rollout::restart::Restarter;
use crate::rollout::select::{RESTART_ANNOTATION, SecretFlags};
use crate::telemetry::recorder::EventRecorder;
use crate::telemetry::rollout_metrics::RolloutMetrics;

/// The pod-template annotation a restart sets: `secret=data-hash` for each changed Secret.
pub const RESTARTED_FROM_ANNOTATION: &str = "secret-bridge.io/restarted-from";
/// Changes to one workload within this time of the first are one restart: the Secrets one
/// event changes are written within milliseconds of each other.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(250);
/// Changes waiting for the restarter (while the workloads are being listed, say); beyond, a
/// change is dropped with a warning rather than held without bound.
const MAX_WAITING_CHANGES: usize = 10_000;

/// A Secret whose data changed, as the reconcile reports it.
#[derive(Debug)]
struct Change {
    namespace: String,
    secret: String,
    data_hash: String,
    flags: SecretFlags,
    /// The values of [`RESTART_ANNOTATION`] on the ExternalSecret and on the Secret.
    named: Vec<String>,
    external_secret: ObjectReference,
    event_at: Option<Instant>,
}

/// Where the reconcile reports the Secrets it wrote. Cheap to clone; when the feature is off,
/// reports are dropped at once.
#[derive(Clone, Default)]
pub struct Rollouts {
    changes: Option<mpsc::Sender<Change>>,
}

impl Rollouts {
    /// Restarts nothing (`--restart-workloads=false`, and accelerator mode).
    pub fn disabled() -> Rollouts {
        Rollouts::default()
    }

    /// The handle, and the future that watches workloads and restarts them (run it until
    /// shutdown). A workload is restarted at most once per `min_interval`.
    pub fn start(
        client: Client,
        recorder: EventRecorder,
        metrics: RolloutMetrics,
        min_interval: Duration,
    ) -> (Rollouts, impl Future<Output = ()> + Send + 'static) {
        let (sender, changes) = mpsc::channel(MAX_WAITING_CHANGES);
        let index = WorkloadIndex::default();
        let watch = index.clone().watch(client.clone());
        let restarter = Restarter::new(client, recorder, metrics, index, min_interval);
        let run = async move {
            futures::future::join(watch, restarter.run(changes)).await;
        };
        let handle = Rollouts {
            changes: Some(sender),
        };
        (handle, run)
    }

    /// The reconcile of `es` wrote `written`. Restarts follow only when its data changed and
    /// it existed before (never on the first sync, never for metadata alone). `event_at`: when
    /// the event that caused the write reached the controller, if one did.
    pub fn secret_written(
        &self,
        es: &ExternalSecret,
        written: &Secret,
        created: bool,
        data_changed: bool,
        event_at: Option<Instant>,
    ) {
        let Some(changes) = &self.changes else {
            return;
        };
        if created || !data_changed {
            return;
        }
        let annotations = written.annotations();
        let named = [es.annotations(), annotations]
            .into_iter()
            .filter_map(|a: &BTreeMap<String, String>| a.get(RESTART_ANNOTATION).cloned())
            .collect();
        let change = Change {
            namespace: written.namespace().unwrap_or_default(),
            secret: written.name_any(),
            data_hash: annotations
                .get(DATA_HASH_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            flags: SecretFlags::from_annotations(annotations),
            named,
            external_secret: es.object_ref(&()),
            event_at,
        };
        if let Err(mpsc::error::TrySendError::Full(change)) = changes.try_send(change) {
            warn!(namespace = %change.namespace, secret = %change.secret, "too many Secret changes waiting for the workload index (is its watch failing?); no restart for this one");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollouts() -> (Rollouts, mpsc::Receiver<Change>) {
        let (sender, receiver) = mpsc::channel(8);
        let rollouts = Rollouts {
            changes: Some(sender),
        };
        (rollouts, receiver)
    }

    #[test]
    fn only_a_data_change_of_an_existing_secret_is_reported() {
        let es: ExternalSecret = serde_json::from_value(json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": "es", "namespace": "ns", "uid": "u1",
                "annotations": {RESTART_ANNOTATION: "deploy/api"}},
            "spec": {}
        }))
        .unwrap();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "app", "namespace": "ns", "annotations": {
                DATA_HASH_ANNOTATION: "h1",
                RESTART_ANNOTATION: "sts/db",
                "reloader.stakater.com/match": "true"}}
        }))
        .unwrap();
        let (rollouts, mut changes) = rollouts();
        rollouts.secret_written(&es, &secret, true, true, None);
        rollouts.secret_written(&es, &secret, false, false, None);
        assert!(
            changes.try_recv().is_err(),
            "first sync, metadata only: nothing"
        );
        rollouts.secret_written(&es, &secret, false, true, None);
        let change = changes.try_recv().unwrap();
        assert_eq!(
            (change.namespace.as_str(), change.secret.as_str()),
            ("ns", "app")
        );
        assert_eq!(change.data_hash, "h1");
        assert_eq!(change.named, ["deploy/api", "sts/db"]);
        assert!(change.flags.matched && !change.flags.ignore);
        assert_eq!(change.external_secret.name.as_deref(), Some("es"));

        Rollouts::disabled().secret_written(&es, &secret, false, true, None);
    }
}
