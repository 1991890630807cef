//! Event-driven refreshes go through the controller (so they are queued, deduplicated and
//! rate-limited like any other reconcile), and the caller learns when they are done.
//!
//! A caller registers a waiter per ExternalSecret, then sends the trigger. A reconcile *takes*
//! the waiters registered before it started and answers them when it ends; a waiter registered
//! while a reconcile runs is answered by the next one, which the controller schedules for the
//! trigger. So a success always comes from a read of AWS made after the event arrived.
//!
//! An ExternalSecret whose reconcile stopped at its store (missing, or held by the flood gate)
//! is *parked*: it is woken when that store's status changes, and only then, so that no
//! reconcile runs for the others (one right after a sync could read a stale cache).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{Stream, future};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::oneshot;

use crate::api::ExternalSecret;

type Registry = HashMap<ObjectRef<ExternalSecret>, Waiters>;

/// The callers waiting on one ExternalSecret's next reconcile.
#[derive(Default)]
pub struct Waiters {
    senders: Vec<oneshot::Sender<bool>>,
    /// When the latest of them registered: the reconcile must read AWS after this.
    pub since: Option<Instant>,
}

impl Waiters {
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }
}

/// Outcome of the reconciles for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub succeeded: usize,
    pub failed: usize,
    pub timed_out: usize,
}

impl Outcome {
    pub fn all_succeeded(&self) -> bool {
        self.failed == 0 && self.timed_out == 0
    }
}

pub struct Triggers {
    sender: mpsc::UnboundedSender<ObjectRef<ExternalSecret>>,
    waiters: Mutex<Registry>,
    parked: Mutex<HashSet<ObjectRef<ExternalSecret>>>,
}

impl Triggers {
    /// The registry, and the stream to give to `Controller::reconcile_on`.
    pub fn new() -> (
        Self,
        impl Stream<Item = ObjectRef<ExternalSecret>> + Send + 'static,
    ) {
        let (sender, receiver) = mpsc::unbounded();
        (
            Triggers {
                sender,
                waiters: Mutex::default(),
                parked: Mutex::default(),
            },
            receiver,
        )
    }

    /// Reconciles `objects` now and waits until each reconcile that started after this call
    /// has finished, or until `timeout`.
    pub async fn refresh(
        &self,
        objects: Vec<ObjectRef<ExternalSecret>>,
        timeout: Duration,
    ) -> Outcome {
        let receivers: Vec<_> = {
            let mut waiters = self.waiters.lock().expect("waiters lock");
            objects
                .iter()
                .map(|object| {
                    let (tx, rx) = oneshot::channel();
                    let entry = waiters.entry(object.clone()).or_default();
                    entry.senders.push(tx);
                    entry.since = Some(Instant::now());
                    rx
                })
                .collect()
        };
        for object in objects {
            // The receiver lives as long as the controller; if it is gone we are shutting down
            // and the waiters time out, leaving the message for a retry.
            let _ = self.sender.unbounded_send(object);
        }
        let results = future::join_all(
            receivers
                .into_iter()
                .map(|rx| tokio::time::timeout(timeout, rx)),
        )
        .await;
        let mut outcome = Outcome {
            succeeded: 0,
            failed: 0,
            timed_out: 0,
        };
        for result in results {
            match result {
                Ok(Ok(true)) => outcome.succeeded += 1,
                Ok(Ok(false)) | Ok(Err(_)) => outcome.failed += 1,
                Err(_) => outcome.timed_out += 1,
            }
        }
        // Drop waiters whose caller gave up, so they do not accumulate.
        self.waiters
            .lock()
            .expect("waiters lock")
            .retain(|_, waiters| {
                waiters.senders.retain(|tx| !tx.is_closed());
                !waiters.senders.is_empty()
            });
        outcome
    }

    /// Parks `object` (when `parked`) until its store changes, or unparks it.
    pub fn park(&self, object: &ObjectRef<ExternalSecret>, parked: bool) {
        let mut set = self.parked.lock().expect("parked lock");
        if parked {
            set.insert(object.clone());
        } else {
            set.remove(object);
        }
    }

    /// Forgets the parked ExternalSecrets for which `keep` is false (those deleted since).
    pub fn retain_parked(&self, keep: impl Fn(&ObjectRef<ExternalSecret>) -> bool) {
        self.parked.lock().expect("parked lock").retain(|o| keep(o));
    }

    /// Reconciles those of `objects` that are parked, waiting for nothing; returns how many.
    pub fn wake_parked(
        &self,
        objects: impl IntoIterator<Item = ObjectRef<ExternalSecret>>,
    ) -> usize {
        let woken: Vec<_> = {
            let mut set = self.parked.lock().expect("parked lock");
            objects.into_iter().filter(|o| set.remove(o)).collect()
        };
        for object in &woken {
            let _ = self.sender.unbounded_send(object.clone());
        }
        woken.len()
    }

    /// Whether an event waits for the refresh of some ExternalSecret.
    pub fn has_waiting(&self) -> bool {
        self.waiting() > 0
    }

    /// How many ExternalSecrets an event waits for.
    pub fn waiting(&self) -> usize {
        self.waiters.lock().expect("waiters lock").len()
    }

    /// Called when a reconcile of `object` starts: the waiters it will answer.
    pub fn take(&self, object: &ObjectRef<ExternalSecret>) -> Waiters {
        self.waiters
            .lock()
            .expect("waiters lock")
            .remove(object)
            .unwrap_or_default()
    }

    /// Called when that reconcile ends.
    pub fn answer(waiters: Waiters, succeeded: bool) {
        for waiter in waiters.senders {
            let _ = waiter.send(succeeded);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_refresh_is_answered_only_by_a_reconcile_that_started_after_it() {
        let (triggers, mut stream) = Triggers::new();
        let triggers = std::sync::Arc::new(triggers);
        let object = ObjectRef::<ExternalSecret>::new("app").within("ns");

        // A reconcile already running takes no waiter: there is none yet.
        let running = triggers.take(&object);
        let waiting = {
            let triggers = triggers.clone();
            let object = object.clone();
            tokio::spawn(
                async move { triggers.refresh(vec![object], Duration::from_secs(5)).await },
            )
        };
        assert_eq!(stream.next().await, Some(object.clone()));
        Triggers::answer(running, true);
        assert!(triggers.has_waiting(), "the event still waits");

        // The next reconcile, scheduled by the trigger, answers it.
        let next = triggers.take(&object);
        assert!(!triggers.has_waiting());
        assert_eq!(next.senders.len(), 1);
        assert!(next.since.is_some());
        Triggers::answer(next, false);
        let outcome = waiting.await.unwrap();
        assert_eq!(
            outcome,
            Outcome {
                succeeded: 0,
                failed: 1,
                timed_out: 0
            }
        );
        assert!(!outcome.all_succeeded());
    }

    #[tokio::test]
    async fn unanswered_refreshes_time_out_and_are_forgotten() {
        let (triggers, _stream) = Triggers::new();
        let object = ObjectRef::<ExternalSecret>::new("gone").within("ns");
        let outcome = triggers
            .refresh(vec![object.clone()], Duration::from_millis(10))
            .await;
        assert_eq!(outcome.timed_out, 1);
        assert!(triggers.take(&object).is_empty());
    }

    #[tokio::test]
    async fn only_parked_external_secrets_are_woken_once() {
        let (triggers, mut stream) = Triggers::new();
        let parked = ObjectRef::<ExternalSecret>::new("parked").within("ns");
        let unparked = ObjectRef::<ExternalSecret>::new("unparked").within("ns");
        let deleted = ObjectRef::<ExternalSecret>::new("deleted").within("ns");
        for object in [&parked, &unparked, &deleted] {
            triggers.park(object, true);
        }
        triggers.park(&unparked, false);
        triggers.retain_parked(|o| o != &deleted);
        let all = [parked.clone(), unparked.clone(), deleted.clone()];
        assert_eq!(triggers.wake_parked(all.clone()), 1);
        assert_eq!(stream.next().await, Some(parked));
        assert_eq!(
            triggers.wake_parked(all),
            0,
            "woken once, then no longer parked"
        );
    }
}
