//! Restarts waiting to be made, as a pure state machine over explicit times: changes to one
//! workload within a short window become one restart, and a workload is restarted at most once
//! per minimum interval (a later change waits for it, it is never dropped). Failed restarts
//! come back with a backoff, a few times.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;

use crate::rollout::workload::WorkloadKey;

/// Changed Secrets remembered per pending restart; more are counted, not kept.
const MAX_CAUSES: usize = 64;
/// Attempts of one restart before it is given up (and reported).
pub const MAX_ATTEMPTS: u32 = 5;

/// One changed Secret, as the reconcile reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    pub secret: String,
    /// The Secret's new `reconcile.external-secrets.io/data-hash`.
    pub data_hash: String,
    /// The ExternalSecret that wrote it (for its Events).
    pub external_secret: ObjectReference,
    /// When the event that led to the change reached the controller, if one did.
    pub event_at: Option<Instant>,
}

/// A restart to make: the workload and every change it is for.
#[derive(Clone, Debug)]
pub struct Batch {
    pub key: WorkloadKey,
    pub uid: Option<String>,
    /// By Secret name: the latest change of each.
    pub causes: BTreeMap<String, Cause>,
    /// Changes left out beyond [`MAX_CAUSES`].
    pub more: usize,
    pub attempts: u32,
    due: Instant,
}

impl Batch {
    /// The earliest event among the causes: the start of the event → rollout lag.
    pub fn first_event(&self) -> Option<Instant> {
        self.causes.values().filter_map(|c| c.event_at).min()
    }

    fn add(&mut self, cause: Cause) {
        if self.causes.len() < MAX_CAUSES || self.causes.contains_key(&cause.secret) {
            let event_at = self
                .causes
                .get(&cause.secret)
                .and_then(|c| c.event_at)
                .into_iter()
                .chain(cause.event_at)
                .min();
            self.causes
                .insert(cause.secret.clone(), Cause { event_at, ..cause });
        } else {
            self.more += 1;
        }
    }
}

/// The restarts waiting, and when each workload was last restarted.
pub struct Pending {
    window: Duration,
    min_interval: Duration,
    batches: HashMap<WorkloadKey, Batch>,
    last: HashMap<WorkloadKey, Instant>,
}

impl Pending {
    /// Changes within `window` of the first are restarted together; a workload is restarted at
    /// most once per `min_interval`.
    pub fn new(window: Duration, min_interval: Duration) -> Pending {
        Pending {
            window,
            min_interval,
            batches: HashMap::new(),
            last: HashMap::new(),
        }
    }

    /// Records that `cause` restarts the workload `key`.
    pub fn add(&mut self, key: WorkloadKey, uid: Option<String>, cause: Cause, now: Instant) {
        let earliest = self.earliest_allowed(&key, now + self.window);
        let batch = self.batches.entry(key.clone()).or_insert_with(|| Batch {
            key,
            uid: None,
            causes: BTreeMap::new(),
            more: 0,
            attempts: 0,
            due: earliest,
        });
        batch.uid = uid.or(batch.uid.take());
        batch.add(cause);
    }

    /// When the next restart is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.batches.values().map(|b| b.due).min()
    }

    /// The restarts due at `now`, removed from the pending ones.
    pub fn take_due(&mut self, now: Instant) -> Vec<Batch> {
        let due: Vec<WorkloadKey> = self
            .batches
            .iter()
            .filter(|(_, b)| b.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut batches: Vec<Batch> = due
            .into_iter()
            .filter_map(|key| self.batches.remove(&key))
            .collect();
        batches.sort_by(|a, b| a.key.cmp(&b.key));
        let min_interval = self.min_interval;
        self.last
            .retain(|_, at| now.duration_since(*at) < min_interval);
        batches
    }

    /// Records a restart made at `now`.
    pub fn restarted(&mut self, key: WorkloadKey, now: Instant) {
        self.last.insert(key, now);
    }

    /// Schedules a failed restart again, `backoff` later (merged with any change that came
    /// meanwhile); returns `false` when its attempts are used up.
    pub fn retry(&mut self, mut batch: Batch, backoff: Duration, now: Instant) -> bool {
        batch.attempts += 1;
        if batch.attempts >= MAX_ATTEMPTS {
            return false;
        }
        match self.batches.get_mut(&batch.key) {
            Some(newer) => {
                newer.attempts = batch.attempts;
                for cause in batch.causes.into_values() {
                    if !newer.causes.contains_key(&cause.secret) {
                        newer.add(cause);
                    }
                }
            }
            None => {
                batch.due = now + backoff;
                self.batches.insert(batch.key.clone(), batch);
            }
        }
        true
    }

    fn earliest_allowed(&self, key: &WorkloadKey, wanted: Instant) -> Instant {
        match self.last.get(key) {
            Some(last) => wanted.max(*last + self.min_interval),
            None => wanted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::workload::Kind;

    fn key(name: &str) -> WorkloadKey {
        WorkloadKey {
            kind: Kind::Deployment,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn cause(secret: &str, hash: &str) -> Cause {
        Cause {
            secret: secret.into(),
            data_hash: hash.into(),
            external_secret: ObjectReference::default(),
            event_at: None,
        }
    }

    const WINDOW: Duration = Duration::from_millis(200);
    const INTERVAL: Duration = Duration::from_secs(10);

    #[test]
    fn changes_within_the_window_are_one_restart() {
        let mut pending = Pending::new(WINDOW, INTERVAL);
        let start = Instant::now();
        pending.add(key("api"), None, cause("a", "h1"), start);
        pending.add(key("api"), None, cause("b", "h2"), start + WINDOW / 2);
        pending.add(key("api"), None, cause("a", "h3"), start + WINDOW / 2);
        assert_eq!(pending.next_due(), Some(start + WINDOW));
        assert!(pending.take_due(start + WINDOW / 2).is_empty());
        let batches = pending.take_due(start + WINDOW);
        assert_eq!(batches.len(), 1);
        let hashes: Vec<_> = batches[0]
            .causes
            .values()
            .map(|c| c.data_hash.as_str())
            .collect();
        assert_eq!(
            hashes,
            ["h3", "h2"],
            "one restart, with each Secret's latest hash"
        );
        assert_eq!(pending.next_due(), None);
    }

    #[test]
    fn a_workload_restarted_recently_waits_for_the_minimum_interval() {
        let mut pending = Pending::new(WINDOW, INTERVAL);
        let start = Instant::now();
        pending.restarted(key("api"), start);
        pending.add(key("api"), None, cause("a", "h1"), start + WINDOW);
        pending.add(key("other"), None, cause("a", "h1"), start + WINDOW);
        assert_eq!(
            pending.take_due(start + 2 * WINDOW).len(),
            1,
            "only the other"
        );
        assert_eq!(pending.next_due(), Some(start + INTERVAL));
        assert_eq!(pending.take_due(start + INTERVAL)[0].key, key("api"));
    }

    #[test]
    fn failed_restarts_come_back_a_few_times_merged_with_newer_changes() {
        let mut pending = Pending::new(WINDOW, INTERVAL);
        let start = Instant::now();
        pending.add(key("api"), None, cause("a", "h1"), start);
        let mut batch = pending.take_due(start + WINDOW).remove(0);
        pending.add(key("api"), None, cause("b", "h2"), start + WINDOW);
        assert!(pending.retry(batch, Duration::from_secs(1), start + WINDOW));
        batch = pending.take_due(start + 2 * WINDOW).remove(0);
        assert_eq!(batch.causes.len(), 2);
        for _ in 1..MAX_ATTEMPTS - 1 {
            assert!(pending.retry(batch, Duration::ZERO, start));
            batch = pending.take_due(start).remove(0);
        }
        assert!(!pending.retry(batch, Duration::ZERO, start), "given up");
        assert_eq!(pending.next_due(), None);
    }

    #[test]
    fn causes_are_bounded() {
        let mut pending = Pending::new(WINDOW, INTERVAL);
        let start = Instant::now();
        for i in 0..100 {
            pending.add(key("api"), None, cause(&format!("s{i}"), "h"), start);
        }
        let batch = pending.take_due(start + WINDOW).remove(0);
        assert_eq!(
            (batch.causes.len(), batch.more),
            (MAX_CAUSES, 100 - MAX_CAUSES)
        );
    }
}
