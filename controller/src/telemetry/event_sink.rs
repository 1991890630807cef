//! Kubernetes Events published off a reconcile's path: the reconcile hands its Event over and
//! goes on, and a few are published at once in the background. With 10,000 new
//! ExternalSecrets, each `Created` Event would otherwise hold a worker for one more apiserver
//! round trip. When the backlog is full (the apiserver is not keeping up), reconciles wait
//! for room: no Event is dropped.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::Event;
use tokio::sync::mpsc;
use tracing::debug;

use crate::telemetry::recorder::EventRecorder;

/// Events handed over and not yet published, at most.
const BACKLOG: usize = 1024;
/// Events being published at once.
const AT_ONCE: usize = 8;

#[derive(Clone)]
pub struct EventSink {
    sender: mpsc::Sender<(Event, ObjectReference)>,
}

impl EventSink {
    /// A sink publishing through `recorder` (kube's: it folds repeats into a series) from a
    /// background task, which ends when every clone of the sink is gone.
    pub fn spawn(recorder: EventRecorder) -> Self {
        let (sender, receiver) = mpsc::channel::<(Event, ObjectReference)>(BACKLOG);
        let events = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|event| (event, receiver))
        });
        tokio::spawn(
            events.for_each_concurrent(AT_ONCE, move |(event, regarding)| {
                let recorder = recorder.clone();
                async move {
                    if let Err(error) = recorder.publish(&event, &regarding).await {
                        debug!(%error, reason = %event.reason, "could not publish event");
                    }
                }
            }),
        );
        EventSink { sender }
    }

    /// Publishes `event` about `regarding` soon; waits only while the backlog is full.
    pub async fn publish(&self, event: Event, regarding: ObjectReference) {
        if self.sender.send((event, regarding)).await.is_err() {
            debug!("event not published: shutting down");
        }
    }
}
