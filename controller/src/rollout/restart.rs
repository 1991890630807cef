//! The restarter task: turns reported changes into pending restarts (through the index and the
//! named workloads), and makes the due ones: one merge patch of a pod-template annotation per
//! workload, then Events on the workload and its ExternalSecrets, and metrics.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client};
use serde_json::json;
use sha3::{Digest, Sha3_224};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::rollout::index::WorkloadIndex;
use crate::rollout::pending::{Batch, Cause, Pending};
use crate::rollout::select::named_workloads;
use crate::rollout::workload::{Kind, WorkloadKey};
use crate::rollout::{COALESCE_WINDOW, Change, RESTARTED_FROM_ANNOTATION};
use crate::telemetry::recorder::EventRecorder;
use crate::telemetry::rollout_metrics::RolloutMetrics;
use crate::{ApiError, FIELD_MANAGER};

/// How long one patch may take before it counts as failed (and is retried).
const PATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Patches made at once.
const PARALLEL_PATCHES: usize = 16;
/// Changed Secrets listed one by one in the annotation; more are summed up in one hash.
const MAX_LISTED: usize = 16;

pub(super) struct Restarter {
    client: Client,
    recorder: EventRecorder,
    metrics: RolloutMetrics,
    index: WorkloadIndex,
    pending: Pending,
}

impl Restarter {
    pub(super) fn new(
        client: Client,
        recorder: EventRecorder,
        metrics: RolloutMetrics,
        index: WorkloadIndex,
        min_interval: Duration,
    ) -> Restarter {
        Restarter {
            client,
            recorder,
            metrics,
            index,
            pending: Pending::new(COALESCE_WINDOW, min_interval),
        }
    }

    /// Runs until the reporting side is gone. Changes reported before the workloads are
    /// listed wait for the list, so none is matched against an empty index.
    pub(super) async fn run(mut self, mut changes: mpsc::Receiver<Change>) {
        self.index.ready().await;
        info!(
            workloads = self.index.len(),
            "restarting workloads on Secret changes"
        );
        loop {
            let due = self.pending.next_due();
            tokio::select! {
                change = changes.recv() => match change {
                    Some(change) => self.schedule(change),
                    None => break,
                },
                () = sleep_until(due), if due.is_some() => self.restart_due().await,
            }
        }
    }

    /// Adds the restarts `change` asks for to the pending ones.
    fn schedule(&mut self, change: Change) {
        if change.flags.ignore {
            debug!(namespace = %change.namespace, secret = %change.secret, "Secret has reloader.stakater.com/ignore; no restart");
            return;
        }
        let now = Instant::now();
        let cause = Cause {
            secret: change.secret.clone(),
            data_hash: change.data_hash.clone(),
            external_secret: change.external_secret.clone(),
            event_at: change.event_at,
        };
        for workload in self
            .index
            .restarted_by(&change.namespace, &change.secret, change.flags)
        {
            self.pending.add(
                workload.key.clone(),
                workload.uid.clone(),
                cause.clone(),
                now,
            );
        }
        for value in &change.named {
            let (named, invalid) = named_workloads(value);
            for (kind, name) in named {
                let key = WorkloadKey {
                    kind,
                    namespace: change.namespace.clone(),
                    name,
                };
                let uid = self.index.get(&key).and_then(|w| w.uid.clone());
                self.pending.add(key, uid, cause.clone(), now);
            }
            if !invalid.is_empty() {
                let note = format!(
                    "{} lists what it cannot restart (kind/name, kinds deployment, statefulset, daemonset): {}",
                    super::select::RESTART_ANNOTATION,
                    invalid.join(", ")
                );
                self.publish(
                    &change.external_secret,
                    EventType::Warning,
                    "InvalidRestartTarget",
                    note,
                    None,
                );
            }
        }
    }

    /// Makes every restart that is due, [`PARALLEL_PATCHES`] at a time.
    async fn restart_due(&mut self) {
        let due = self.pending.take_due(Instant::now());
        let this = &*self;
        let results: Vec<(Batch, Result<(), ApiError>)> = futures::stream::iter(due)
            .map(|batch| async move {
                let result = tokio::time::timeout(PATCH_TIMEOUT, this.patch(&batch))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ApiError::from(kube::Error::Service(
                            "the patch took longer than 10 s".into(),
                        )))
                    });
                (batch, result)
            })
            .buffer_unordered(PARALLEL_PATCHES)
            .collect()
            .await;
        for (batch, result) in results {
            match result {
                Ok(()) => self.restarted(batch),
                Err(error) if error.is_transient() => {
                    let backoff = Duration::from_secs(1 << batch.attempts.min(5));
                    warn!(workload = %batch.key, namespace = %batch.key.namespace, %error, retry_in_s = backoff.as_secs(), "restart failed");
                    if !self.pending.retry(batch.clone(), backoff, Instant::now()) {
                        self.failed(batch, &error);
                    }
                }
                Err(error) => self.failed(batch, &error),
            }
        }
    }

    /// A JSON merge patch of the one annotation, as `kubectl rollout restart` and Reloader
    /// make: the workload belongs to someone else (a GitOps tool, a chart), and a patch that
    /// names one field leaves the rest of it, and its field ownership, alone.
    async fn patch(&self, batch: &Batch) -> Result<(), ApiError> {
        let body = json!({"spec": {"template": {"metadata": {"annotations": {
            RESTARTED_FROM_ANNOTATION: restarted_from(batch),
        }}}}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let patch = Patch::Merge(&body);
        let (namespace, name) = (&batch.key.namespace, &batch.key.name);
        let client = self.client.clone();
        let result = match batch.key.kind {
            Kind::Deployment => Api::<Deployment>::namespaced(client, namespace)
                .patch(name, &params, &patch)
                .await
                .map(drop),
            Kind::StatefulSet => Api::<StatefulSet>::namespaced(client, namespace)
                .patch(name, &params, &patch)
                .await
                .map(drop),
            Kind::DaemonSet => Api::<DaemonSet>::namespaced(client, namespace)
                .patch(name, &params, &patch)
                .await
                .map(drop),
        };
        result.map_err(ApiError::from)
    }

    fn restarted(&mut self, batch: Batch) {
        let now = Instant::now();
        self.pending.restarted(batch.key.clone(), now);
        let kind = batch.key.kind.as_str();
        self.metrics.restarted(kind);
        if let Some(event_at) = batch.first_event() {
            self.metrics
                .lag_seconds
                .observe(now.duration_since(event_at).as_secs_f64());
        }
        let changed = describe(&batch);
        info!(workload = %batch.key, namespace = %batch.key.namespace, %changed, "restarted workload");
        let first_es = batch
            .causes
            .values()
            .next()
            .map(|c| c.external_secret.clone());
        self.publish(
            &workload_reference(&batch),
            EventType::Normal,
            "Restarted",
            format!("restarted by secret-bridge: {changed} changed"),
            first_es,
        );
        for es in external_secrets(&batch) {
            self.publish(
                &es,
                EventType::Normal,
                "WorkloadRestarted",
                format!("restarted {}: {changed} changed", batch.key),
                None,
            );
        }
    }

    fn failed(&mut self, batch: Batch, error: &ApiError) {
        self.metrics.failed(batch.key.kind.as_str());
        warn!(workload = %batch.key, namespace = %batch.key.namespace, %error, "could not restart workload");
        let changed = describe(&batch);
        for es in external_secrets(&batch) {
            self.publish(
                &es,
                EventType::Warning,
                "RestartFailed",
                format!(
                    "could not restart {} after {changed} changed: {error}",
                    batch.key
                ),
                None,
            );
        }
    }

    /// Publishes an Event without holding up the restarts (the recorder is a few requests).
    fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &'static str,
        note: String,
        secondary: Option<ObjectReference>,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1024).collect()),
            action: "Restart".into(),
            secondary,
        };
        let recorder = self.recorder.clone();
        let regarding = regarding.clone();
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &regarding).await {
                debug!(%error, reason, "could not publish event");
            }
        });
    }
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due.into()).await;
    }
}

/// The annotation value: `secret=hash` for each changed Secret (sorted), or, beyond
/// [`MAX_LISTED`], their count and one hash of them all. Data hashes only, never a value.
pub(super) fn restarted_from(batch: &Batch) -> String {
    let pairs: Vec<String> = batch
        .causes
        .values()
        .map(|c| format!("{}={}", c.secret, c.data_hash))
        .collect();
    if pairs.len() <= MAX_LISTED && batch.more == 0 {
        return pairs.join(",");
    }
    let digest = Sha3_224::digest(pairs.join(",").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{} Secrets={hex}", pairs.len() + batch.more)
}

/// `Secret a (data hash h1), Secret b (data hash h2)`, shortened after a few.
fn describe(batch: &Batch) -> String {
    let mut parts: Vec<String> = batch
        .causes
        .values()
        .take(3)
        .map(|c| format!("Secret {} (data hash {})", c.secret, c.data_hash))
        .collect();
    let rest = batch.causes.len().saturating_sub(3) + batch.more;
    if rest > 0 {
        parts.push(format!("{rest} more Secrets"));
    }
    parts.join(", ")
}

fn external_secrets(batch: &Batch) -> Vec<ObjectReference> {
    let mut seen = BTreeSet::new();
    batch
        .causes
        .values()
        .filter(|c| {
            seen.insert((
                c.external_secret.namespace.clone(),
                c.external_secret.name.clone(),
            ))
        })
        .map(|c| c.external_secret.clone())
        .collect()
}

fn workload_reference(batch: &Batch) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some(batch.key.kind.as_str().into()),
        namespace: Some(batch.key.namespace.clone()),
        name: Some(batch.key.name.clone()),
        uid: batch.uid.clone(),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(secrets: usize) -> Batch {
        let mut pending = Pending::new(Duration::ZERO, Duration::ZERO);
        let now = Instant::now();
        for i in 0..secrets {
            pending.add(
                WorkloadKey {
                    kind: Kind::Deployment,
                    namespace: "ns".into(),
                    name: "api".into(),
                },
                None,
                Cause {
                    secret: format!("s{i:02}"),
                    data_hash: format!("h{i}"),
                    external_secret: ObjectReference::default(),
                    event_at: None,
                },
                now,
            );
        }
        pending.take_due(now).remove(0)
    }

    #[test]
    fn the_annotation_lists_data_hashes_or_sums_them_up() {
        assert_eq!(restarted_from(&batch(2)), "s00=h0,s01=h1");
        let many = restarted_from(&batch(20));
        assert!(many.starts_with("20 Secrets="), "{many}");
        assert_eq!(many.len(), "20 Secrets=".len() + 56);
        assert_eq!(
            describe(&batch(5)),
            "Secret s00 (data hash h0), Secret s01 (data hash h1), Secret s02 (data hash h2), 2 more Secrets"
        );
    }
}
