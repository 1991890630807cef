//! Periodic resyncs, released oldest-due first and only as fast as reconciles finish.
//!
//! kube-runtime's scheduler serves what comes due in no fair order, and a resync queued there
//! competes for the same workers as new ExternalSecrets and events: at a short interval with
//! thousands of ExternalSecrets, some were never served. Here resyncs wait in our own queue,
//! ordered by due time, and at most `limit` are handed to the controller at once. So the
//! controller's queue stays short (a new ExternalSecret or an event waits behind at most
//! `limit` resyncs), and a controller that cannot keep up delays every resync alike instead
//! of starving some. While an ExternalSecret has not had its first reconcile (cold start, a
//! burst of new ones) or an event waits for its refresh, resyncs trickle one at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use futures::channel::mpsc;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::api::ExternalSecret;

/// A released resync whose reconcile never reported back (its ExternalSecret was deleted in
/// between, say) stops holding a place after this long.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the pacer looks again when nothing wakes it (a held queue, a clock jump).
const IDLE_LOOK: Duration = Duration::from_secs(1);

type Key = ObjectRef<ExternalSecret>;

pub struct Pacer {
    state: Mutex<State>,
    wake: Notify,
    limit: usize,
    sender: mpsc::UnboundedSender<Key>,
}

/// What the pacer knows of each ExternalSecret (one waiting resync, or one released) is held
/// by two maps: they share one reference.
#[derive(Default)]
struct State {
    /// Due time and arrival order → ExternalSecret: the oldest due first.
    queue: BTreeMap<(Instant, u64), Arc<Key>>,
    /// Each waiting ExternalSecret's place in `queue`.
    places: HashMap<Arc<Key>, (Instant, u64)>,
    /// Handed to the controller and not finished yet: when, and when it was due.
    released: HashMap<Arc<Key>, Released>,
    arrivals: u64,
}

impl Pacer {
    /// A pacer handing at most `limit` resyncs to the controller at once, and the stream of
    /// ExternalSecrets to give to `Controller::reconcile_on`.
    pub fn new(limit: usize) -> (Self, impl Stream<Item = Key> + Send + 'static) {
        let (sender, receiver) = mpsc::unbounded();
        let pacer = Pacer {
            state: Mutex::default(),
            wake: Notify::new(),
            limit: limit.max(1),
            sender,
        };
        (pacer, receiver)
    }

    /// Resyncs `object` once `after` has passed, instead of any resync planned before.
    pub fn schedule(&self, object: &Key, after: Duration) {
        self.schedule_at(object, Instant::now() + after);
    }

    fn schedule_at(&self, object: &Key, due: Instant) {
        let mut state = self.state.lock().expect("pacer lock");
        state.remove(object);
        state.arrivals += 1;
        let place = (due, state.arrivals);
        let object = Arc::new(object.clone());
        state.queue.insert(place, object.clone());
        state.places.insert(object, place);
        drop(state);
        self.wake.notify_one();
    }

    /// Forgets any planned resync of `object` (it waits for a change, or retries on failure).
    pub fn cancel(&self, object: &Key) {
        self.state.lock().expect("pacer lock").remove(object);
    }

    /// A reconcile of `object` has finished: a released resync of it no longer holds a place,
    /// and what holds resyncs back (see [`Pacer::run`]) may have ended.
    pub fn finished(&self, object: &Key) {
        self.state
            .lock()
            .expect("pacer lock")
            .released
            .remove(object);
        self.wake.notify_one();
    }

    /// When the resync of `object` handed to the controller came due, if one was: a resync
    /// that runs late still accepts what it would have accepted on time.
    pub fn due(&self, object: &Key) -> Option<std::time::Instant> {
        let state = self.state.lock().expect("pacer lock");
        state.released.get(object).map(|r| r.due.into_std())
    }

    /// Resyncs due and not yet handed to the controller.
    pub fn due_waiting(&self) -> usize {
        let now = Instant::now();
        let state = self.state.lock().expect("pacer lock");
        state.queue.range(..=(now, u64::MAX)).count()
    }

    /// Resyncs waiting, and resyncs handed to the controller and not finished.
    pub fn depth(&self) -> (usize, usize) {
        let state = self.state.lock().expect("pacer lock");
        (state.queue.len(), state.released.len())
    }

    /// Takes the resyncs due at `now` that fit under the limit (`1` while `held`); returns
    /// them and when the next one comes due, if one is not due yet. When due resyncs wait for
    /// a place, there is no such time: the pacer waits for a reconcile to finish.
    fn release(&self, now: Instant, held: bool) -> (Vec<Key>, Option<Instant>) {
        let mut state = self.state.lock().expect("pacer lock");
        state
            .released
            .retain(|_, released| now.duration_since(released.at) < RELEASE_TIMEOUT);
        let limit = if held { 1 } else { self.limit };
        let mut ready = Vec::new();
        while state.released.len() < limit {
            let Some(entry) = state.queue.first_entry() else {
                break;
            };
            let due = entry.key().0;
            if due > now {
                break;
            }
            let object = entry.remove();
            state.places.remove(&object);
            state
                .released
                .insert(object.clone(), Released { at: now, due });
            ready.push(Arc::unwrap_or_clone(object));
        }
        let next = state
            .queue
            .first_key_value()
            .map(|((due, _), _)| *due)
            .filter(|due| *due > now);
        (ready, next)
    }

    /// Hands due resyncs to the controller until the controller's stream is gone. `exists`
    /// says whether an ExternalSecret is still there; `held` whether work that goes before
    /// resyncs is waiting (an ExternalSecret not reconciled yet, an event's refresh).
    pub async fn run(&self, exists: impl Fn(&Key) -> bool, held: impl Fn() -> bool) {
        loop {
            let now = Instant::now();
            let (ready, next) = self.release(now, held());
            for object in ready {
                if !exists(&object) {
                    self.finished(&object);
                } else if self.sender.unbounded_send(object).is_err() {
                    return;
                }
            }
            let look = next.map_or(now + IDLE_LOOK, |due| due.min(now + IDLE_LOOK));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(look) => {}
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Released {
    at: Instant,
    due: Instant,
}

impl State {
    fn remove(&mut self, object: &Key) {
        if let Some(place) = self.places.remove(object) {
            self.queue.remove(&place);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn es(name: &str) -> Key {
        ObjectRef::new(name).within("ns")
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[tokio::test]
    async fn releases_the_oldest_due_first_and_no_more_than_the_limit() {
        let (pacer, _stream) = Pacer::new(2);
        let t0 = Instant::now();
        pacer.schedule_at(&es("late"), t0 + secs(30));
        pacer.schedule_at(&es("a"), t0 + secs(10));
        pacer.schedule_at(&es("b"), t0 + secs(11));
        pacer.schedule_at(&es("c"), t0 + secs(12));
        let (ready, next) = pacer.release(t0, false);
        assert!(ready.is_empty(), "nothing is due yet");
        assert_eq!(next, Some(t0 + secs(10)));

        let later = t0 + secs(20);
        let (ready, _) = pacer.release(later, false);
        assert_eq!(
            ready,
            vec![es("a"), es("b")],
            "oldest due first, two at most"
        );
        let (ready, next) = pacer.release(later, false);
        assert!(ready.is_empty(), "no place until one finishes");
        assert_eq!(
            next, None,
            "a due resync waiting for a place sets no timer (no spin)"
        );
        pacer.finished(&es("a"));
        let (ready, next) = pacer.release(later, false);
        assert_eq!(ready, vec![es("c")]);
        assert_eq!(next, Some(t0 + secs(30)));
        assert_eq!(pacer.depth(), (1, 2));
        assert_eq!(pacer.due_waiting(), 0, "the one left is not due yet");
    }

    #[tokio::test]
    async fn a_new_schedule_replaces_the_old_and_cancel_forgets() {
        let (pacer, _stream) = Pacer::new(10);
        let t0 = Instant::now();
        pacer.schedule_at(&es("a"), t0 + secs(5));
        pacer.schedule_at(&es("a"), t0 + secs(50));
        pacer.schedule_at(&es("b"), t0 + secs(5));
        pacer.cancel(&es("b"));
        let (ready, next) = pacer.release(t0 + secs(10), false);
        assert!(ready.is_empty());
        assert_eq!(next, Some(t0 + secs(50)));
        assert_eq!(pacer.depth(), (1, 0));
    }

    #[tokio::test]
    async fn held_trickles_one_and_lost_releases_time_out() {
        let (pacer, _stream) = Pacer::new(10);
        let now = Instant::now();
        for name in ["a", "b", "c"] {
            pacer.schedule_at(&es(name), now);
        }
        assert_eq!(pacer.due_waiting(), 3);
        assert_eq!(pacer.release(now, true).0, vec![es("a")]);
        assert!(
            pacer.release(now, true).0.is_empty(),
            "one at a time while held"
        );
        // "a" never reports back: its place frees after the timeout.
        let (ready, _) = pacer.release(now + RELEASE_TIMEOUT, true);
        assert_eq!(ready, vec![es("b")]);
    }

    #[tokio::test]
    async fn run_hands_due_resyncs_to_the_controller_and_skips_deleted_ones() {
        let (pacer, mut stream) = Pacer::new(10);
        let pacer = std::sync::Arc::new(pacer);
        pacer.schedule(&es("gone"), Duration::from_millis(1));
        pacer.schedule(&es("here"), Duration::from_millis(2));
        let running = pacer.clone();
        let task =
            tokio::spawn(
                async move { running.run(|object| object.name != "gone", || false).await },
            );
        assert_eq!(stream.next().await, Some(es("here")));
        assert_eq!(pacer.depth(), (0, 1), "the deleted one holds no place");
        task.abort();
    }
}
