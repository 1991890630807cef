//! New and changed ExternalSecrets, handed to the controller at most `limit` at a time.
//!
//! kube-runtime's scheduler takes every object its trigger stream yields at once, and keeps
//! the room it grew to: after a start with 10,000 ExternalSecrets, its queue, its map of
//! scheduled objects and its set of held ones each kept room for 10,000 (about 7 MB of the
//! controller's 48 MB heap, heaptrack) for the life of the process. Here they wait in our own
//! queue, in the order they came, each once however often it changed while waiting; the
//! controller holds at most `limit` of them, and the queue hands its room back once it is
//! empty. An ExternalSecret the controller already holds passes straight through (a change
//! during its reconcile must run it again; kube-runtime holds it until that one ends).
//!
//! The bound is soft: a place is freed by any reconcile of its ExternalSecret (an event's
//! that was already running, say) and after [`ADMIT_TIMEOUT`] in any case, so kube-runtime
//! may hold a few more than `limit` for a while. Nothing waits forever on a place.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::api::ExternalSecret;
use crate::cache;

/// An admitted ExternalSecret whose reconcile never reported back (it was deleted before the
/// controller ran it, say) stops holding a place after this long.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the intake looks again when nothing wakes it (every place held by an
/// ExternalSecret that may be gone).
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// A queue emptied after holding more than this many keeps no room.
const KEPT_ROOM: usize = 64;

type Key = ObjectRef<ExternalSecret>;

pub struct Intake {
    state: Mutex<State>,
    wake: Notify,
    limit: usize,
    sender: mpsc::UnboundedSender<Key>,
}

#[derive(Default)]
struct State {
    /// Waiting to be handed to the controller, oldest first; each once (`queued`).
    waiting: VecDeque<Key>,
    queued: HashSet<Key>,
    /// Handed to the controller, reconcile not finished yet: since when.
    admitted: HashMap<Key, Instant>,
}

impl Intake {
    /// An intake handing at most `limit` ExternalSecrets to the controller at once, and the
    /// stream of them to give to `Controller::reconcile_on`.
    pub fn new(limit: usize) -> (Self, impl Stream<Item = Key> + Send + 'static) {
        let (sender, receiver) = mpsc::unbounded();
        let intake = Intake {
            state: Mutex::default(),
            wake: Notify::new(),
            limit: limit.max(1),
            sender,
        };
        (intake, receiver)
    }

    /// A reconcile of `object` has finished: it no longer holds a place.
    pub fn finished(&self, object: &Key) {
        let freed = self
            .state
            .lock()
            .expect("intake lock")
            .admitted
            .remove(object)
            .is_some();
        if freed {
            self.wake.notify_one();
        }
    }

    /// ExternalSecrets waiting for a place.
    pub fn waiting(&self) -> usize {
        self.state.lock().expect("intake lock").waiting.len()
    }

    /// Takes `changes` (new and changed ExternalSecrets) and hands them on until either
    /// `changes` ends or the controller's stream is gone. `exists` says whether an
    /// ExternalSecret is still there.
    pub async fn run(
        &self,
        changes: impl Stream<Item = Arc<ExternalSecret>>,
        exists: impl Fn(&Key) -> bool,
    ) {
        let mut changes = std::pin::pin!(changes);
        loop {
            let now = Instant::now();
            let (ready, waiting) = {
                let mut state = self.state.lock().expect("intake lock");
                let ready = state.release(now, self.limit, &exists);
                (ready, !state.waiting.is_empty())
            };
            for object in ready {
                if self.sender.unbounded_send(object).is_err() {
                    return;
                }
            }
            // Places held by ExternalSecrets that may be gone are looked at again only
            // while others wait for them.
            let look = async {
                match waiting {
                    true => tokio::time::sleep_until(now + IDLE_LOOK).await,
                    false => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                change = changes.next() => match change {
                    Some(object) => {
                        let object = cache::reference(&*object);
                        if self.state.lock().expect("intake lock").arrive(&object)
                            && self.sender.unbounded_send(object).is_err()
                        {
                            return;
                        }
                    }
                    None => return,
                },
                _ = self.wake.notified() => {}
                () = look => {}
            }
        }
    }
}

impl State {
    /// Queues `object`; returns whether it passes straight through (the controller holds it).
    fn arrive(&mut self, object: &Key) -> bool {
        if self.admitted.contains_key(object) {
            return true;
        }
        if self.queued.insert(object.clone()) {
            self.waiting.push_back(object.clone());
        }
        false
    }

    /// Takes the oldest waiting ExternalSecrets that fit under `limit`, skipping those gone.
    fn release(&mut self, now: Instant, limit: usize, exists: &impl Fn(&Key) -> bool) -> Vec<Key> {
        if self.admitted.len() >= limit {
            self.admitted
                .retain(|object, at| now.duration_since(*at) < ADMIT_TIMEOUT && exists(object));
        }
        let mut ready = Vec::new();
        while self.admitted.len() < limit {
            let Some(object) = self.waiting.pop_front() else {
                break;
            };
            self.queued.remove(&object);
            if exists(&object) {
                self.admitted.insert(object.clone(), now);
                ready.push(object);
            }
        }
        if self.waiting.is_empty() && self.waiting.capacity() > KEPT_ROOM {
            self.waiting = VecDeque::new();
            self.queued = HashSet::new();
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es(name: &str) -> Key {
        ObjectRef::new(name).within("ns")
    }

    fn all(_: &Key) -> bool {
        true
    }

    #[test]
    fn at_most_limit_are_handed_on_oldest_first() {
        let mut state = State::default();
        let now = Instant::now();
        for name in ["a", "b", "c", "d"] {
            assert!(!state.arrive(&es(name)));
        }
        assert_eq!(state.release(now, 2, &all), vec![es("a"), es("b")]);
        assert_eq!(state.release(now, 2, &all), vec![]);
        state.admitted.remove(&es("b"));
        assert_eq!(state.release(now, 2, &all), vec![es("c")]);
        assert_eq!(state.waiting, [es("d")]);
    }

    #[test]
    fn a_change_while_waiting_queues_once_and_a_held_one_passes_through() {
        let mut state = State::default();
        let now = Instant::now();
        assert!(!state.arrive(&es("a")));
        assert_eq!(state.release(now, 1, &all), vec![es("a")]);
        assert!(!state.arrive(&es("b")));
        assert!(!state.arrive(&es("b")));
        assert_eq!(state.waiting.len(), 1);
        // `a` is held by the controller: its change goes on at once, beyond the limit.
        assert!(state.arrive(&es("a")));
        assert_eq!(state.waiting, [es("b")]);
    }

    #[test]
    fn gone_objects_are_skipped_and_free_their_places() {
        let mut state = State::default();
        let now = Instant::now();
        for name in ["a", "b", "c"] {
            state.arrive(&es(name));
        }
        let only_c = |object: &Key| object.name == "c";
        // `a` and `b` went away while waiting.
        assert_eq!(state.release(now, 1, &only_c), vec![es("c")]);
        assert!(state.waiting.is_empty() && state.queued.is_empty());

        // `c` went away after it was handed on, and its reconcile never reported back.
        state.arrive(&es("d"));
        let only_d = |object: &Key| object.name == "d";
        assert_eq!(state.release(now, 1, &only_d), vec![es("d")]);

        // A place held past the timeout is freed even if the object is still there.
        state.arrive(&es("e"));
        assert_eq!(state.release(now, 1, &all), vec![]);
        assert_eq!(state.release(now + ADMIT_TIMEOUT, 1, &all), vec![es("e")]);
    }

    #[test]
    fn an_emptied_queue_hands_its_room_back() {
        let mut state = State::default();
        let now = Instant::now();
        for i in 0..1000 {
            state.arrive(&es(&format!("es-{i}")));
        }
        let mut handed = 0;
        while !state.waiting.is_empty() {
            let ready = state.release(now, 10, &all);
            handed += ready.len();
            for object in ready {
                state.admitted.remove(&object);
            }
        }
        assert_eq!(handed, 1000);
        assert_eq!(state.waiting.capacity(), 0);
        assert_eq!(state.queued.capacity(), 0);
    }

    #[tokio::test]
    async fn hands_on_as_reconciles_finish() {
        let (intake, mut admitted) = Intake::new(2);
        let intake = Arc::new(intake);
        let (changes_tx, changes) = mpsc::unbounded();
        let running = intake.clone();
        let task = tokio::spawn(async move { running.run(changes, all).await });
        let object = |name: &str| {
            let mut es = ExternalSecret::new(name, Default::default());
            es.metadata.namespace = Some("ns".into());
            Arc::new(es)
        };
        for name in ["a", "b", "c"] {
            changes_tx.unbounded_send(object(name)).unwrap();
        }
        assert_eq!(admitted.next().await, Some(es("a")));
        assert_eq!(admitted.next().await, Some(es("b")));
        tokio::task::yield_now().await;
        assert_eq!(intake.waiting(), 1);
        // A change of a held ExternalSecret goes on at once.
        changes_tx.unbounded_send(object("a")).unwrap();
        assert_eq!(admitted.next().await, Some(es("a")));
        intake.finished(&es("b"));
        assert_eq!(admitted.next().await, Some(es("c")));
        assert_eq!(intake.waiting(), 0);
        drop(changes_tx);
        task.await.unwrap();
    }
}
