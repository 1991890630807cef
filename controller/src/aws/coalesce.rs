//! Reads of `AWSCURRENT` shared across reconciles: the cost promise of the brief (a resync of
//! N unchanged secrets in N/20 calls, one read per change however many ExternalSecrets read
//! the secret).
//!
//! Every reconcile asks one [`Coalescer`] per region and credentials (one per AWS client, see
//! [`crate::aws::credentials`]). A read that finds no call under way goes out at once (an
//! event pays no added latency); reads that arrive while calls are under way wait and go out
//! together in the next BatchGetSecretValue of up to 20 distinct secrets. Urgent reads (an
//! event's, a first sync's) have calls of their own beside the resyncs', so that they never
//! wait behind resyncs nor ride in their larger calls. Of those, only an event's read starts
//! a call whenever one is free; the others wait while two urgent calls are under way, and so
//! go out twenty at a time when thousands of ExternalSecrets sync at once. A read answers
//! every asker whose [`Freshness`] it meets for a while, so a rotation read by a thousand
//! ExternalSecrets is read once. A read joins a call of its secret under way only if that
//! call started late enough for it: an event that arrives while an older read is under way
//! waits for the next call, or it could be answered with the value from before the rotation
//! it announces.
//!
//! Periodic resyncs come due one by one, spread over their interval, so on their own they
//! would rarely meet in a batch. A resync therefore accepts a value read a little before it
//! started (a tenth of its interval, at most a minute: staleness no one can tell from the
//! interval itself), and a resync that must read fills its batch with the secrets this
//! coalescer read longest ago, which are the ones whose resyncs come due next. N unchanged
//! secrets thus cost about N/20 calls per interval. Events never accept an older read.
//!
//! Each secret keeps its own error, and an error is never reused by a later reconcile; when
//! the credentials may not call BatchGetSecretValue, reads fall back to GetSecretValue one by
//! one (and nothing is prefetched).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future;
use secret_bridge::secret_id;
use tokio::sync::oneshot;

use crate::aws::{
    AwsError, BATCH_SIZE, BatchPage, BatchSelection, ListPage, SecretFilter, SecretMetadata,
    SecretValue, SecretsSource, VersionSelector,
};

/// Calls of periodic resyncs under way at once per coalescer; further reads wait and are
/// batched.
const CALLS_AT_ONCE: usize = 4;
/// Calls that only urgent reads (events, first syncs, retries) may make on top: those never
/// wait behind resyncs' calls, nor ride in them.
const URGENT_CALLS: usize = 2;
/// Calls that urgent reads which may gather (first syncs, spec changes, retries: not events)
/// start while other urgent calls are under way. Those reads then wait for a call under way to
/// end and go out together, up to 20 a call: a cold start of 10,000 ExternalSecrets reads in
/// batches instead of a GetSecretValue each time a call happens to be free. The bound is on
/// starting calls: any call that ends (an event's, a resync's) goes on with the reads waiting,
/// urgent ones first, so more calls may carry them at once.
const GATHERING_CALLS: usize = 2;
/// Calls of periodic resyncs under way at once while urgent reads wait or are under way: the
/// rest of the room goes to the urgent ones (a burst of rotations gets AWS's, or an
/// emulator's, time), and resyncs still move.
const CALLS_AT_ONCE_BESIDE_URGENT: usize = 1;
/// How often reads no longer shared and secrets no longer asked for are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How long a read is kept for later askers whose [`Freshness`] it meets: the longest
/// tolerance a resync is given. Values stay in memory only this long.
const SHARED_FOR: Duration = Duration::from_secs(60);
/// A secret is forgotten (no longer prefetched) when no reconcile asked for it this long.
const KNOWN_FOR: Duration = Duration::from_secs(24 * 3600);

/// What read a reconcile accepts.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// A value from a read that started at or after this.
    pub values_since: Instant,
    /// An error from a read that started at or after this (never earlier than the asker's
    /// own start, so that a retry does not get the error it retries).
    pub errors_since: Instant,
    /// Fill a call with the secrets whose resyncs come due next (a periodic resync).
    pub prefetch: bool,
    /// The asker's resync interval: when its secret's next resync comes due.
    pub every: Option<Duration>,
    /// An urgent read that may wait for a call under way, to go out with others (see
    /// [`GATHERING_CALLS`]); an event's read never waits.
    pub gather: bool,
}

impl Freshness {
    /// An event's refresh, or any read that must see AWS as it is now: `since` is when the
    /// event arrived (or the reconcile started).
    pub fn strict(since: Instant) -> Self {
        Freshness {
            values_since: since,
            errors_since: since,
            prefetch: false,
            every: None,
            gather: false,
        }
    }

    /// A read that must see AWS as it is at `since` but is not an event's (a first sync, a
    /// changed spec, a retry): it goes out at once when few calls are under way, and otherwise
    /// waits to go out with others.
    pub fn gathered(since: Instant) -> Self {
        Freshness {
            gather: true,
            ..Freshness::strict(since)
        }
    }

    /// A periodic resync that started at `started`, with interval `interval`.
    pub fn resync(started: Instant, interval: Duration) -> Self {
        Freshness {
            values_since: started.checked_sub(tolerance(interval)).unwrap_or(started),
            errors_since: started,
            prefetch: true,
            every: Some(interval),
            gather: false,
        }
    }

    fn accepts(&self, started: Instant, answer: &Answer) -> bool {
        match answer {
            Ok(_) => started >= self.values_since,
            Err(_) => started >= self.errors_since,
        }
    }
}

/// How much older than its start a resync at `interval` accepts a value: a tenth of the
/// interval, at most a minute.
pub fn tolerance(interval: Duration) -> Duration {
    (interval / 10).min(SHARED_FOR)
}

type Answer = Result<SecretValue, AwsError>;

/// A map emptied after holding more than this many keeps its room.
const KEPT_ROOM: usize = 64;

/// Whether a map or queue holding `len` in room for `capacity` is three-quarters empty and
/// should hand its room back.
fn mostly_empty(len: usize, capacity: usize) -> bool {
    capacity > KEPT_ROOM && len * 4 < capacity
}

fn give_back_room<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if mostly_empty(map.len(), map.capacity()) {
        map.shrink_to_fit();
    }
}

pub struct Coalescer<S> {
    source: S,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Reads waiting for the next call of their secret, by secret id.
    waiting: HashMap<String, Vec<oneshot::Sender<Answer>>>,
    /// The latest call of each secret under way: reads that accept a read started then join
    /// it; the others wait for the next call.
    under_way: HashMap<String, UnderWay>,
    /// Calls started so far: each call's number.
    started_calls: u64,
    /// Ids that an event's read waits for, in the order they started waiting: they go first.
    prompt: VecDeque<String>,
    /// Ids that other urgent reads wait for (and no event's), in the order they started
    /// waiting.
    urgent: VecDeque<String>,
    /// Ids only periodic resyncs wait for, in the order they started waiting.
    routine: VecDeque<String>,
    /// Calls under way, and how many of them carry periodic resyncs.
    calls: usize,
    routine_calls: usize,
    /// Calls under way that carry urgent reads.
    urgent_calls: usize,
    /// The credentials may not call BatchGetSecretValue: read one by one.
    batch_refused: bool,
    /// Recent reads: when each started, and its answer.
    recent: HashMap<String, (Instant, Answer)>,
    /// Every secret asked for: when it was last read, and last asked for.
    known: HashMap<String, Known>,
    swept: Option<Instant>,
    /// A sweep is planned for when the last shared read expires (no call may come to sweep).
    late_sweep: bool,
}

impl State {
    /// Where a read that accepts `freshness` waits for a call.
    fn queue(&mut self, freshness: Freshness) -> &mut VecDeque<String> {
        match (freshness.prefetch, freshness.gather) {
            (true, _) => &mut self.routine,
            (false, true) => &mut self.urgent,
            (false, false) => &mut self.prompt,
        }
    }

    /// How many calls periodic resyncs may have under way now.
    fn routine_room(&self) -> usize {
        match self.urgent_calls > 0 || !self.urgent.is_empty() || !self.prompt.is_empty() {
            true => CALLS_AT_ONCE_BESIDE_URGENT,
            false => CALLS_AT_ONCE,
        }
    }

    /// Forgets reads no longer shared and secrets no longer asked for, once a [`SWEEP_EVERY`].
    fn sweep(&mut self) {
        if self.swept.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
            return;
        }
        self.swept = Some(Instant::now());
        self.recent.retain(|_, (at, _)| at.elapsed() < SHARED_FOR);
        self.known
            .retain(|_, known| known.asked.elapsed() < KNOWN_FOR);
        // A cold start of thousands fills these at once; the room they grew to is handed
        // back once they are mostly empty again.
        give_back_room(&mut self.recent);
        give_back_room(&mut self.known);
        give_back_room(&mut self.waiting);
        give_back_room(&mut self.under_way);
        for queue in [&mut self.prompt, &mut self.urgent, &mut self.routine] {
            if mostly_empty(queue.len(), queue.capacity()) {
                queue.shrink_to_fit();
            }
        }
    }

    /// When the newest shared read expires, if any is kept.
    fn late_sweep_at(&self) -> Option<Instant> {
        let newest = self.recent.values().map(|(at, _)| *at).max()?;
        Some(newest + SHARED_FOR + SWEEP_EVERY)
    }

    /// The planned sweep: sweeps, and says when to come back, while shared reads are kept
    /// and no call (which sweeps, and plans again when the last one ends) is under way.
    fn late_sweep(&mut self) -> Option<Instant> {
        self.swept = None;
        self.sweep();
        let later = match self.calls {
            0 => self.late_sweep_at(),
            _ => None,
        };
        self.late_sweep = later.is_some();
        later
    }

    /// Up to `room` known secrets whose resyncs come due next (never read first), other than
    /// `taken` and those waiting already: those due within half their resync's tolerance
    /// (a read now is what that resync will accept, resync jitter included), or, when no
    /// resync asked for them yet, not read within the shared window.
    fn stalest(&self, room: usize, taken: &[String]) -> Vec<String> {
        if room == 0 {
            return Vec::new();
        }
        let mut candidates: Vec<(Option<Instant>, &String)> = self
            .known
            .iter()
            .filter(|(id, known)| {
                !taken.contains(id)
                    && !self.waiting.contains_key(*id)
                    && !self.under_way.contains_key(*id)
                    && known.due_soon()
            })
            .map(|(id, known)| (known.due(), id))
            .collect();
        if candidates.len() > room {
            candidates.select_nth_unstable_by_key(room, |(due, _)| *due);
            candidates.truncate(room);
        }
        candidates.into_iter().map(|(_, id)| id.clone()).collect()
    }
}

/// A call of one secret under way, and the reads that joined it after it started.
struct UnderWay {
    call: u64,
    started: Instant,
    joined: Vec<oneshot::Sender<Answer>>,
}

#[derive(Clone, Copy)]
struct Known {
    read: Option<Instant>,
    asked: Instant,
    /// The resync interval of the last resync that asked.
    every: Option<Duration>,
}

impl Known {
    /// When its next resync comes due, about: an interval after a resync last asked for it
    /// (the asker's next resync is scheduled as it finishes) or after it was last read,
    /// whichever is later. `None`: never read.
    fn due(&self) -> Option<Instant> {
        let read = self.read?;
        Some(match self.every {
            Some(every) => read.max(self.asked) + every,
            None => read + SHARED_FOR,
        })
    }

    /// Due within half the tolerance of its resync (a read now is what that resync will
    /// accept, its jitter included); without a resync interval, not read within the shared
    /// window.
    fn due_soon(&self) -> bool {
        let Some(read) = self.read else {
            return true;
        };
        match self.every {
            Some(every) => {
                let last = read.max(self.asked);
                last.elapsed() + tolerance(every) / 2 >= every
            }
            None => read.elapsed() >= SHARED_FOR / 2,
        }
    }
}

impl<S: SecretsSource + 'static> Coalescer<S> {
    pub fn new(source: S) -> Arc<Self> {
        Arc::new(Coalescer {
            source,
            state: Mutex::default(),
        })
    }

    /// The `AWSCURRENT` value of `id`, from a read that meets `freshness`.
    pub async fn current(self: &Arc<Self>, id: &str, freshness: Freshness) -> Answer {
        let receiver = {
            let mut state = self.state.lock().expect("coalescer lock");
            let now = Instant::now();
            let known = state.known.entry(id.to_owned()).or_insert(Known {
                read: None,
                asked: now,
                every: None,
            });
            known.asked = now;
            known.every = freshness.every.or(known.every);
            if let Some((started, answer)) = state.recent.get(id)
                && freshness.accepts(*started, answer)
            {
                return answer.clone();
            }
            let (sender, receiver) = oneshot::channel();
            // A call that started before this read may not see what this read must (an event
            // that came after it started): such a read waits for the next call.
            match state.under_way.get_mut(id) {
                Some(call)
                    if call.started >= freshness.values_since.max(freshness.errors_since) =>
                {
                    call.joined.push(sender)
                }
                _ => self.wait_for_next_call(&mut state, id, freshness, sender),
            }
            receiver
        };
        receiver.await.unwrap_or_else(|_| abandoned(id))
    }

    /// Queues a read of `id` for the next call of its secret, and starts a call if there is
    /// room for one.
    fn wait_for_next_call(
        self: &Arc<Self>,
        state: &mut State,
        id: &str,
        freshness: Freshness,
        sender: oneshot::Sender<Answer>,
    ) {
        let urgent = !freshness.prefetch;
        let waiting = state.waiting.entry(id.to_owned()).or_default();
        let first = waiting.is_empty();
        waiting.push(sender);
        if first {
            state.queue(freshness).push_back(id.to_owned());
        } else if urgent {
            // Already waiting in a later queue: it moves up to this asker's.
            let moved =
                take(&mut state.routine, id) || (!freshness.gather && take(&mut state.urgent, id));
            if moved {
                state.queue(freshness).push_back(id.to_owned());
            }
        }
        let room = match urgent {
            true if freshness.gather => {
                // Calls under way or starting that do not carry resyncs.
                let urgent_calls = state.calls - state.routine_calls;
                state.calls < CALLS_AT_ONCE + URGENT_CALLS && urgent_calls < GATHERING_CALLS
            }
            true => state.calls < CALLS_AT_ONCE + URGENT_CALLS,
            false => state.calls < CALLS_AT_ONCE && state.routine_calls < state.routine_room(),
        };
        if room {
            state.calls += 1;
            self.spawn_drain();
        }
    }

    /// Makes calls while reads are waiting, up to 20 secrets each: urgent reads first, on
    /// their own; then periodic resyncs' reads (at most [`CALLS_AT_ONCE`] such calls at once,
    /// [`CALLS_AT_ONCE_BESIDE_URGENT`] while urgent reads wait or are under way), each call
    /// filled with the secrets whose resyncs come due next.
    async fn drain(self: Arc<Self>) {
        loop {
            let (ids, one_by_one, routine, call, started, waiters) = {
                let mut state = self.state.lock().expect("coalescer lock");
                let state = &mut *state;
                let routine = state.prompt.is_empty() && state.urgent.is_empty();
                if routine
                    && (state.routine.is_empty() || state.routine_calls >= state.routine_room())
                {
                    state.calls -= 1;
                    self.plan_late_sweep(state);
                    return;
                }
                // Events' reads first, in calls of their own (a batch of others' would slow
                // them down); then the other urgent reads; then resyncs'.
                let queue = if !state.prompt.is_empty() {
                    &mut state.prompt
                } else if !state.urgent.is_empty() {
                    &mut state.urgent
                } else {
                    &mut state.routine
                };
                let take = queue.len().min(BATCH_SIZE);
                let mut ids: Vec<String> = queue.drain(..take).collect();
                if routine {
                    state.routine_calls += 1;
                    // Prefetches wait while urgent reads are under way: they would compete
                    // with them for AWS's (or an emulator's) time.
                    if !state.batch_refused && state.urgent_calls == 0 {
                        let room = BATCH_SIZE - ids.len();
                        ids.extend(state.stalest(room, &ids));
                    }
                } else {
                    state.urgent_calls += 1;
                }
                // The reads waiting for these secrets go with this call, and so do those that
                // joined an earlier call of one of them still under way: this read is newer.
                state.started_calls += 1;
                let (call, started) = (state.started_calls, Instant::now());
                let waiters: Vec<Vec<oneshot::Sender<Answer>>> = ids
                    .iter()
                    .map(|id| {
                        let mut waiters = state.waiting.remove(id).unwrap_or_default();
                        let this = UnderWay {
                            call,
                            started,
                            joined: Vec::new(),
                        };
                        if let Some(earlier) = state.under_way.insert(id.clone(), this) {
                            waiters.extend(earlier.joined);
                        }
                        waiters
                    })
                    .collect();
                (ids, state.batch_refused, routine, call, started, waiters)
            };
            let answers = if ids.len() == 1 || one_by_one {
                self.one_by_one(&ids).await
            } else {
                self.batch(&ids).await
            };
            let mut state = self.state.lock().expect("coalescer lock");
            state.routine_calls -= usize::from(routine);
            state.urgent_calls -= usize::from(!routine);
            state.sweep();
            for ((id, answer), mut waiters) in ids.into_iter().zip(answers).zip(waiters) {
                if state.under_way.get(&id).is_some_and(|c| c.call == call) {
                    let this = state.under_way.remove(&id).expect("this call");
                    waiters.extend(this.joined);
                }
                for waiter in waiters {
                    let _ = waiter.send(answer.clone());
                }
                if let Some(known) = state.known.get_mut(&id) {
                    known.read = Some(known.read.map_or(started, |read| read.max(started)));
                }
                // A later call of this secret may have finished first.
                if state.recent.get(&id).is_none_or(|(at, _)| *at <= started) {
                    state.recent.insert(id, (started, answer));
                }
            }
            // The last urgent call is done: resyncs get their room back. This task goes on
            // with one of their calls; more start beside it.
            if !routine && state.routine_room() == CALLS_AT_ONCE && !state.routine.is_empty() {
                let more_batches = state.routine.len().div_ceil(BATCH_SIZE) - 1;
                let room = CALLS_AT_ONCE.saturating_sub(state.calls);
                for _ in 0..more_batches.min(room) {
                    state.calls += 1;
                    self.spawn_drain();
                }
            }
        }
    }

    /// Starts one more [`Coalescer::drain`] (its place in `calls` is taken already).
    fn spawn_drain(self: &Arc<Self>) {
        tokio::spawn(self.clone().drain());
    }

    /// Once no call is under way, shared reads (secret values) would stay in memory until
    /// the next call sweeps them: a sweep is planned for when the newest of them expires.
    fn plan_late_sweep(self: &Arc<Self>, state: &mut State) {
        if state.late_sweep || state.calls > 0 {
            return;
        }
        let Some(mut wake) = state.late_sweep_at() else {
            return;
        };
        state.late_sweep = true;
        let coalescer = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep_until(wake.into()).await;
                let Some(coalescer) = coalescer.upgrade() else {
                    return;
                };
                match coalescer.state.lock().expect("coalescer lock").late_sweep() {
                    Some(later) => wake = later,
                    None => return,
                }
            }
        });
    }

    async fn one_by_one(&self, ids: &[String]) -> Vec<Answer> {
        let current = VersionSelector::current();
        future::join_all(
            ids.iter()
                .map(|id| self.source.get_secret_value(id, &current)),
        )
        .await
    }

    /// One BatchGetSecretValue for `ids`; a secret the batch did not answer for (or failed
    /// for) is read on its own, and a refused batch (no permission, say) switches to one by
    /// one for good.
    async fn batch(&self, ids: &[String]) -> Vec<Answer> {
        let page = match self
            .source
            .batch_get_secret_value(BatchSelection::Ids(ids), None)
            .await
        {
            Ok(page) => page,
            Err(error) => {
                if error.code == "AccessDeniedException" {
                    tracing::info!(%error, "BatchGetSecretValue is not allowed; reading secrets one by one");
                    self.state.lock().expect("coalescer lock").batch_refused = true;
                } else {
                    tracing::debug!(%error, "BatchGetSecretValue failed; reading these secrets one by one");
                }
                return self.one_by_one(ids).await;
            }
        };
        // A secret the batch failed for is read again on its own: its error then says what
        // GetSecretValue says (ESO's wording, which status and conformance rely on). Errors
        // are rare; the cost of the extra read is too.
        let mut values = page.values;
        let mut answers: Vec<Option<Answer>> = ids
            .iter()
            .map(|id| {
                values
                    .iter()
                    .position(|v| secret_id::identifies(id, &v.name, &v.arn))
                    .map(|at| Ok(values.swap_remove(at)))
            })
            .collect();
        let unanswered: Vec<String> = ids
            .iter()
            .zip(&answers)
            .filter(|(_, answer)| answer.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let mut retried = self.one_by_one(&unanswered).await.into_iter();
        answers
            .iter_mut()
            .map(|answer| match answer.take() {
                Some(answer) => answer,
                None => retried.next().expect("one retry per unanswered id"),
            })
            .collect()
    }
}

/// A [`SecretsSource`] for one reconcile: `AWSCURRENT` reads go through the coalescer and
/// must meet `freshness`; everything else goes straight to AWS.
pub struct CoalescingSource<S> {
    pub coalescer: Arc<Coalescer<S>>,
    pub freshness: Freshness,
}

impl<S: SecretsSource + 'static> SecretsSource for CoalescingSource<S> {
    async fn get_secret_value(&self, key: &str, version: &VersionSelector) -> Answer {
        if *version == VersionSelector::current() {
            self.coalescer.current(key, self.freshness).await
        } else {
            self.coalescer.source.get_secret_value(key, version).await
        }
    }

    async fn describe_secret(&self, key: &str) -> Result<SecretMetadata, AwsError> {
        self.coalescer.source.describe_secret(key).await
    }

    async fn batch_get_secret_value(
        &self,
        selection: BatchSelection<'_>,
        next_token: Option<&str>,
    ) -> Result<BatchPage, AwsError> {
        match selection {
            // A sync's own batch joins the others': each id is one coalesced read.
            BatchSelection::Ids(ids) if next_token.is_none() => {
                let answers = future::join_all(
                    ids.iter()
                        .map(|id| self.coalescer.current(id, self.freshness)),
                )
                .await;
                let mut page = BatchPage::default();
                for answer in answers {
                    match answer {
                        Ok(value) => page.values.push(value),
                        Err(error) => page.errors.push(error),
                    }
                }
                Ok(page)
            }
            selection => {
                self.coalescer
                    .source
                    .batch_get_secret_value(selection, next_token)
                    .await
            }
        }
    }

    async fn list_secrets(
        &self,
        filters: &[SecretFilter],
        next_token: Option<&str>,
    ) -> Result<ListPage, AwsError> {
        self.coalescer
            .source
            .list_secrets(filters, next_token)
            .await
    }
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;

/// Takes `id` out of `queue`; returns whether it was there.
fn take(queue: &mut VecDeque<String>, id: &str) -> bool {
    let at = queue.iter().position(|waiting| waiting == id);
    at.map(|at| queue.remove(at)).is_some()
}

/// The answer of a read whose call was dropped (the process is shutting down).
fn abandoned(id: &str) -> Answer {
    Err(AwsError {
        operation: "GetSecretValue",
        secret: id.to_owned(),
        code: "RequestFailed".into(),
        message: "the read was abandoned (shutting down)".into(),
    })
}
