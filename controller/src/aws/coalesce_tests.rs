use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future;

use super::*;
use crate::aws::fake::FakeSource;

fn source(count: usize) -> FakeSource {
    (0..count).fold(FakeSource::default(), |fake, i| {
        fake.secret(&format!("app/{i}"), &format!("value-{i}"))
    })
}

fn calls<S>(coalescer: &Coalescer<S>) -> usize
where
    S: std::ops::Deref<Target = FakeSource>,
{
    coalescer.source.count("GetSecretValue") + coalescer.source.count("BatchGetSecretValue")
}

/// Every known secret was read, and last asked for by a resync, an `interval` ago: each
/// resync is due now, and nothing read is still shared.
fn resyncs_due(coalescer: &Coalescer<Arc<FakeSource>>, interval: Duration) {
    let mut state = coalescer.state.lock().unwrap();
    state.recent.clear();
    let due = Instant::now().checked_sub(interval).unwrap();
    for known in state.known.values_mut() {
        known.read = Some(due);
        known.asked = due;
        known.every = Some(interval);
    }
}

async fn read_all(
    coalescer: &Arc<Coalescer<Arc<FakeSource>>>,
    ids: &[String],
    not_before: Instant,
) -> Vec<Answer> {
    future::join_all(
        ids.iter()
            .map(|id| coalescer.current(id, Freshness::strict(not_before))),
    )
    .await
}

/// A coalescer over 100 secrets `app/0`..`app/99`, each read once, whose resyncs (every
/// `interval`) are all due now.
async fn with_resyncs_due(interval: Duration) -> Arc<Coalescer<Arc<FakeSource>>> {
    let coalescer = Coalescer::new(Arc::new(source(100)));
    let ids: Vec<String> = (0..100).map(|i| format!("app/{i}")).collect();
    read_all(&coalescer, &ids, Instant::now()).await;
    resyncs_due(&coalescer, interval);
    coalescer
}

/// A read of `id` that accepts `freshness`, in its own task.
fn spawn_read(
    coalescer: &Arc<Coalescer<Arc<FakeSource>>>,
    id: &str,
    freshness: Freshness,
) -> tokio::task::JoinHandle<Answer> {
    let (coalescer, id) = (coalescer.clone(), id.to_owned());
    tokio::spawn(async move { coalescer.current(&id, freshness).await })
}

/// A resync (every `interval`) of `id`, asking now, in its own task.
fn spawn_resync(
    coalescer: &Arc<Coalescer<Arc<FakeSource>>>,
    id: &str,
    interval: Duration,
) -> tokio::task::JoinHandle<Answer> {
    spawn_read(coalescer, id, Freshness::resync(Instant::now(), interval))
}

#[tokio::test]
async fn reads_of_many_external_secrets_go_out_twenty_at_a_time() {
    let coalescer = Coalescer::new(Arc::new(source(100)));
    let ids: Vec<String> = (0..100).map(|i| format!("app/{i}")).collect();
    let answers = read_all(&coalescer, &ids, Instant::now()).await;
    for (i, answer) in answers.iter().enumerate() {
        let value = answer.as_ref().expect("read");
        assert_eq!(value.string.as_deref(), Some(format!("value-{i}").as_str()));
    }
    assert_eq!(coalescer.source.count("GetSecretValue"), 0);
    assert_eq!(
        coalescer.source.count("BatchGetSecretValue"),
        5,
        "100 secrets in 5 calls"
    );
}

#[tokio::test]
async fn one_change_read_by_many_is_read_once() {
    let coalescer = Coalescer::new(Arc::new(source(1)));
    let event = Instant::now();
    let ids = vec!["app/0".to_owned(); 1000];
    let answers = read_all(&coalescer, &ids, event).await;
    assert!(answers.iter().all(Result::is_ok));
    // Reconciles that start later, for the same event, share the read too.
    coalescer
        .current("app/0", Freshness::strict(event))
        .await
        .unwrap();
    assert_eq!(calls(&coalescer), 1);
    assert_eq!(
        coalescer.source.count("GetSecretValue"),
        1,
        "a lone read is not batched"
    );
}

#[tokio::test]
async fn a_read_that_started_before_the_asker_needs_it_is_not_reused() {
    let coalescer = Coalescer::new(Arc::new(source(1)));
    coalescer
        .current("app/0", Freshness::strict(Instant::now()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let later_event = Instant::now();
    coalescer
        .current("app/0", Freshness::strict(later_event))
        .await
        .unwrap();
    assert_eq!(calls(&coalescer), 2);
}

#[tokio::test]
async fn errors_stay_with_their_secret() {
    let fake = source(3).failing("app/1", "ResourceNotFoundException");
    let coalescer = Coalescer::new(Arc::new(fake));
    let ids: Vec<String> = (0..3).map(|i| format!("app/{i}")).collect();
    let answers = read_all(&coalescer, &ids, Instant::now()).await;
    assert!(answers[0].is_ok() && answers[2].is_ok());
    let error = answers[1].as_ref().unwrap_err();
    assert_eq!(error.code, "ResourceNotFoundException");
    assert_eq!(error.secret, "app/1");
    // Worded by GetSecretValue, as a sync reading it alone would report it.
    assert_eq!(error.operation, "GetSecretValue");
}

#[tokio::test]
async fn without_batch_permission_reads_go_one_by_one_and_the_batch_is_not_retried() {
    let coalescer = Coalescer::new(Arc::new(source(30).without_batch()));
    let ids: Vec<String> = (0..30).map(|i| format!("app/{i}")).collect();
    let answers = read_all(&coalescer, &ids, Instant::now()).await;
    assert!(answers.iter().all(Result::is_ok));
    let again = read_all(&coalescer, &ids, Instant::now()).await;
    assert!(again.iter().all(Result::is_ok));
    assert_eq!(
        coalescer.source.count("BatchGetSecretValue"),
        1,
        "refused once, then not asked again"
    );
    assert_eq!(coalescer.source.count("GetSecretValue"), 60);
}

#[tokio::test]
async fn a_syncs_own_batch_joins_the_others() {
    let coalescer = Coalescer::new(Arc::new(source(4)));
    let source = CoalescingSource {
        coalescer: coalescer.clone(),
        freshness: Freshness::strict(Instant::now()),
    };
    let ids: Vec<String> = (0..4).map(|i| format!("app/{i}")).collect();
    let (page, single) = future::join(
        source.batch_get_secret_value(BatchSelection::Ids(&ids[..3]), None),
        source.get_secret_value("app/3", &VersionSelector::current()),
    )
    .await;
    assert_eq!(page.unwrap().values.len(), 3);
    assert!(single.is_ok());
    assert!(calls(&coalescer) <= 2, "{:?}", coalescer.source.calls());
}

#[tokio::test]
async fn resyncs_spread_over_their_interval_cost_a_call_per_twenty_secrets() {
    let coalescer = Coalescer::new(Arc::new(source(100)));
    let interval = Duration::from_secs(3600);
    // Every secret read once (the cold start), in one go.
    let ids: Vec<String> = (0..100).map(|i| format!("app/{i}")).collect();
    read_all(&coalescer, &ids, Instant::now()).await;
    let cold = calls(&coalescer);
    // An interval later: every read is old and out of the shared window. Their resyncs come
    // due one at a time.
    {
        let mut state = coalescer.state.lock().unwrap();
        state.recent.clear();
        let hour_ago = Instant::now().checked_sub(interval).unwrap();
        for known in state.known.values_mut() {
            known.read = Some(hour_ago);
        }
    }
    let mut resync_calls = 0;
    for id in &ids {
        let before = calls(&coalescer);
        let value = coalescer
            .current(id, Freshness::resync(Instant::now(), interval))
            .await
            .unwrap();
        assert_eq!(value.name, *id);
        resync_calls += calls(&coalescer) - before;
    }
    assert_eq!(cold, 5);
    assert!(
        resync_calls <= 100 / 20 + 1,
        "{resync_calls} calls for 100 resyncs"
    );
    // An event still reads AWS, whatever was read before.
    let before = calls(&coalescer);
    coalescer
        .current("app/7", Freshness::strict(Instant::now()))
        .await
        .unwrap();
    assert_eq!(calls(&coalescer), before + 1);
}

#[tokio::test]
async fn resyncs_at_a_short_interval_prefetch_the_next_due() {
    let coalescer = Coalescer::new(Arc::new(source(100)));
    let interval = Duration::from_secs(10);
    let ids: Vec<String> = (0..100).map(|i| format!("app/{i}")).collect();
    read_all(&coalescer, &ids, Instant::now()).await;
    // A resync of each told the coalescer their interval; now they come due one at a time,
    // each read an interval ago (well within the shared window of a minute).
    resyncs_due(&coalescer, interval);
    let before = calls(&coalescer);
    for id in &ids {
        coalescer
            .current(id, Freshness::resync(Instant::now(), interval))
            .await
            .unwrap();
    }
    let resync_calls = calls(&coalescer) - before;
    assert!(
        resync_calls <= 100 / 20 + 1,
        "{resync_calls} calls for 100 resyncs"
    );
}

#[tokio::test]
async fn a_resync_never_gets_an_earlier_error() {
    let coalescer = Coalescer::new(Arc::new(source(1).failing("app/0", "ThrottlingException")));
    let first = coalescer
        .current("app/0", Freshness::strict(Instant::now()))
        .await;
    assert!(first.is_err());
    tokio::time::sleep(Duration::from_millis(2)).await;
    let retry = coalescer
        .current(
            "app/0",
            Freshness::resync(Instant::now(), Duration::from_secs(3600)),
        )
        .await;
    assert!(retry.is_err());
    assert_eq!(calls(&coalescer), 2, "the retry read AWS again");
}

#[tokio::test]
async fn urgent_reads_never_wait_behind_resyncs_calls() {
    let interval = Duration::from_secs(10);
    // Every secret's resync is due, and resyncs' calls are all under way.
    let coalescer = with_resyncs_due(interval).await;
    {
        let mut state = coalescer.state.lock().unwrap();
        state.calls += CALLS_AT_ONCE;
        state.routine_calls += CALLS_AT_ONCE;
    }
    let before = coalescer.source.calls().len();
    let resync = |id: &'static str| spawn_resync(&coalescer, id, interval);
    let waiting_resync = resync("app/1");
    let shared_resync = resync("app/2");
    tokio::task::yield_now().await;

    // An event's read goes out at once, alone: no prefetches ride in its call.
    let event = coalescer
        .current("app/3", Freshness::strict(Instant::now()))
        .await;
    assert!(event.is_ok());
    // Its read of a secret a resync waits for answers that resync too.
    coalescer
        .current("app/2", Freshness::strict(Instant::now()))
        .await
        .unwrap();
    assert!(shared_resync.await.unwrap().is_ok());
    assert_eq!(
        coalescer.source.calls()[before..],
        ["GetSecretValue app/3", "GetSecretValue app/2"]
    );
    assert!(
        !waiting_resync.is_finished(),
        "resyncs wait for their calls"
    );

    // When the resyncs' calls are done, the waiting resync goes out with prefetches.
    {
        let mut state = coalescer.state.lock().unwrap();
        state.calls -= CALLS_AT_ONCE;
        state.routine_calls -= CALLS_AT_ONCE;
    }
    resync("app/4").await.unwrap().unwrap();
    assert!(waiting_resync.await.unwrap().is_ok());
    assert_eq!(coalescer.source.count("BatchGetSecretValue"), 5 + 1);
}

#[tokio::test]
async fn resyncs_prefetch_nothing_while_urgent_reads_are_under_way() {
    let interval = Duration::from_secs(10);
    let coalescer = with_resyncs_due(interval).await;
    {
        let mut state = coalescer.state.lock().unwrap();
        // An event's call is under way.
        state.calls += 1;
        state.urgent_calls += 1;
    }
    let before = coalescer.source.calls().len();
    coalescer
        .current("app/1", Freshness::resync(Instant::now(), interval))
        .await
        .unwrap();
    assert_eq!(
        coalescer.source.calls()[before..],
        ["GetSecretValue app/1"],
        "the resync's own read only"
    );
}

#[tokio::test]
async fn resyncs_make_one_call_at_a_time_while_urgent_reads_are_under_way() {
    let interval = Duration::from_secs(10);
    let coalescer = with_resyncs_due(interval).await;
    {
        let mut state = coalescer.state.lock().unwrap();
        // An event's call and one resyncs' call are under way.
        state.calls += 2;
        state.urgent_calls += 1;
        state.routine_calls += 1;
    }
    let before = coalescer.source.calls().len();
    let resync = |id: &'static str| spawn_resync(&coalescer, id, interval);
    let waiting_resync = resync("app/1");
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    assert_eq!(
        coalescer.source.calls().len(),
        before,
        "no second resyncs' call beside an urgent one"
    );
    assert!(!waiting_resync.is_finished());

    // The urgent call is done: resyncs have their room again.
    {
        let mut state = coalescer.state.lock().unwrap();
        state.calls -= 1;
        state.urgent_calls -= 1;
    }
    resync("app/2").await.unwrap().unwrap();
    assert!(waiting_resync.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resyncs_get_their_calls_back_when_the_last_urgent_read_is_done() {
    let release = Arc::new(tokio::sync::Notify::new());
    let fake = source(400)
        .holding("app/0", release.clone())
        .batch_latency(Duration::from_millis(200));
    let coalescer = Coalescer::new(Arc::new(fake));
    let interval = Duration::from_secs(10);
    // Known, read long ago, read one by one (a batch would take the latency).
    for i in 1..400 {
        let id = format!("app/{i}");
        coalescer
            .current(&id, Freshness::strict(Instant::now()))
            .await
            .unwrap();
    }
    resyncs_due(&coalescer, interval);
    // An event's read is under way, and held there.
    let event = spawn_read(&coalescer, "app/0", Freshness::strict(Instant::now()));
    while !coalescer
        .source
        .calls()
        .contains(&"GetSecretValue app/0".to_owned())
    {
        tokio::task::yield_now().await;
    }
    // 300 resyncs come due: beside the event's read, their calls go one at a time.
    let asking = Instant::now();
    let resyncs: Vec<_> = (100..400)
        .map(|i| spawn_resync(&coalescer, &format!("app/{i}"), interval))
        .collect();
    // (Waits for every resync to have asked and their first call to start, however loaded
    // the machine, then gives a second call time to start.)
    let all_asked = || {
        let state = coalescer.state.lock().unwrap();
        (100..400).all(|i| state.known[&format!("app/{i}")].asked >= asking)
    };
    while coalescer.source.count("BatchGetSecretValue") == 0 || !all_asked() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(coalescer.source.most_batches_at_once(), 1);

    // The event's read is done: the resyncs' calls go several at once again.
    coalescer.source.count_batches_at_once_afresh();
    assert!(
        coalescer.state.lock().unwrap().routine.len() > 3 * 20,
        "more than three calls' worth still waits"
    );
    release.notify_one();
    assert!(event.await.unwrap().is_ok());
    for resync in resyncs {
        assert!(resync.await.unwrap().is_ok());
    }
    assert!(
        coalescer.source.most_batches_at_once() >= 3,
        "{} at once",
        coalescer.source.most_batches_at_once()
    );
}

type Read = tokio::task::JoinHandle<Answer>;

/// A first sync's read of `id`, in its own task.
fn spawn_sync(coalescer: &Arc<Coalescer<Arc<FakeSource>>>, id: &str) -> Read {
    spawn_read(coalescer, id, Freshness::gathered(Instant::now()))
}

fn seen(coalescer: &Coalescer<Arc<FakeSource>>, call: &str) -> bool {
    coalescer.source.calls().contains(&call.to_owned())
}

/// A coalescer over `count` secrets with two urgent calls under way: a first sync's read of
/// `app/0`, held until `release` is notified, and a batch of the first syncs of `app/1` to
/// `app/{batched}`. Batches take a second: long enough that none ends while a test queues its
/// reads, however loaded the machine. Returns the held read and the batched ones.
async fn with_two_urgent_calls_under_way(
    count: usize,
    batched: usize,
    release: Arc<tokio::sync::Notify>,
) -> (Arc<Coalescer<Arc<FakeSource>>>, Read, Vec<Read>) {
    let fake = source(count)
        .holding("app/0", release)
        .batch_latency(Duration::from_secs(1));
    let coalescer = Coalescer::new(Arc::new(fake));
    let held = spawn_sync(&coalescer, "app/0");
    while !seen(&coalescer, "GetSecretValue app/0") {
        tokio::task::yield_now().await;
    }
    let batch = (1..=batched)
        .map(|i| spawn_sync(&coalescer, &format!("app/{i}")))
        .collect();
    while coalescer.source.count("BatchGetSecretValue") == 0 {
        tokio::task::yield_now().await;
    }
    (coalescer, held, batch)
}

#[tokio::test]
async fn first_syncs_wait_for_calls_under_way_and_go_out_together_while_events_go_at_once() {
    let release = Arc::new(tokio::sync::Notify::new());
    // Two urgent calls under way: a first sync's read, held, and a batch of three.
    let (coalescer, held, first) = with_two_urgent_calls_under_way(40, 3, release.clone()).await;
    // First syncs arriving one by one wait for those calls instead of starting their own.
    let mut later = Vec::new();
    for i in 4..30 {
        later.push(spawn_sync(&coalescer, &format!("app/{i}")));
        tokio::task::yield_now().await;
    }
    assert_eq!(
        coalescer.source.calls().len(),
        2,
        "the waiting first syncs started no call"
    );
    // An event's read does not wait, and goes out on its own (its call then goes on with
    // the first syncs that wait).
    let event = spawn_read(&coalescer, "app/39", Freshness::strict(Instant::now()));
    assert!(event.await.unwrap().is_ok());
    assert!(seen(&coalescer, "GetSecretValue app/39"));
    for read in first.into_iter().chain(later) {
        assert!(read.await.unwrap().is_ok());
    }
    assert_eq!(
        coalescer.source.count("GetSecretValue"),
        2,
        "only the held read and the event's read went alone: {:?}",
        coalescer.source.calls()
    );
    assert_eq!(
        coalescer.source.count("BatchGetSecretValue"),
        3,
        "26 waiting first syncs in two calls of at most 20"
    );
    release.notify_one();
    assert!(held.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_read_never_takes_the_answer_of_a_call_that_started_before_it() {
    let release = Arc::new(tokio::sync::Notify::new());
    let coalescer = Coalescer::new(Arc::new(source(1).holding("app/0", release.clone())));
    let reads = |coalescer: &Coalescer<Arc<FakeSource>>| coalescer.source.count("GetSecretValue");
    // A resync's read is under way, from before a rotation.
    let resync = spawn_resync(&coalescer, "app/0", Duration::from_secs(3600));
    while reads(&coalescer) == 0 {
        tokio::task::yield_now().await;
    }
    // The rotation's event arrives: its read may not take that call's answer, and makes a
    // call of its own at once.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let event = spawn_read(&coalescer, "app/0", Freshness::strict(Instant::now()));
    let own_call = tokio::time::timeout(Duration::from_secs(10), async {
        while reads(&coalescer) < 2 {
            tokio::task::yield_now().await;
        }
    });
    assert!(
        own_call.await.is_ok(),
        "the event's read made a call of its own"
    );
    // A read that accepts what a call under way will answer joins it: no third call.
    let earlier = spawn_read(
        &coalescer,
        "app/0",
        Freshness::strict(Instant::now() - Duration::from_secs(1)),
    );
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!event.is_finished() && !resync.is_finished() && !earlier.is_finished());
    release.notify_one();
    assert!(resync.await.unwrap().is_ok());
    release.notify_one();
    assert!(event.await.unwrap().is_ok());
    assert!(earlier.await.unwrap().is_ok());
    assert_eq!(reads(&coalescer), 2);
}

#[tokio::test]
async fn an_events_read_takes_a_waiting_first_sync_of_its_secret_along_at_once() {
    let release = Arc::new(tokio::sync::Notify::new());
    // Two urgent calls under way: a held read and a slow batch.
    let (coalescer, held, batch) = with_two_urgent_calls_under_way(10, 2, release.clone()).await;
    let waiting = spawn_sync(&coalescer, "app/5");
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(coalescer.source.calls().len(), 2, "the first sync waits");
    // An event for the same secret: the waiting read moves up with it, and both are answered
    // by the event's call, before the batch is done.
    let event = spawn_read(&coalescer, "app/5", Freshness::strict(Instant::now()));
    assert!(event.await.unwrap().is_ok());
    assert!(waiting.await.unwrap().is_ok());
    assert!(seen(&coalescer, "GetSecretValue app/5"));
    assert!(batch.iter().all(|read| !read.is_finished()));
    for read in batch {
        assert!(read.await.unwrap().is_ok());
    }
    release.notify_one();
    assert!(held.await.unwrap().is_ok());
    assert_eq!(coalescer.source.calls().len(), 3);
}

#[tokio::test]
async fn shared_reads_are_dropped_and_room_handed_back_without_another_call() {
    let coalescer = Coalescer::new(Arc::new(source(1000)));
    let ids: Vec<String> = (0..1000).map(|i| format!("app/{i}")).collect();
    let answers = read_all(&coalescer, &ids, Instant::now()).await;
    assert!(answers.iter().all(Result::is_ok));
    // Give the last call's task time to end.
    tokio::time::timeout(Duration::from_secs(5), async {
        while coalescer.state.lock().unwrap().calls > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("calls end");
    {
        let state = coalescer.state.lock().unwrap();
        assert_eq!(state.recent.len(), 1000);
        assert!(
            state.late_sweep,
            "a sweep is planned for when the reads expire"
        );
    }
    // Before the reads expire, the planned sweep keeps them and comes back when they do.
    let mut state = coalescer.state.lock().unwrap();
    let newest = state.recent.values().map(|(at, _)| *at).max().unwrap();
    assert_eq!(state.late_sweep(), Some(newest + SHARED_FOR + SWEEP_EVERY));
    assert_eq!(state.recent.len(), 1000);
    assert!(state.late_sweep);
    // Once they expired, it drops them, hands the room back, and plans nothing more.
    let expired = Instant::now().checked_sub(SHARED_FOR).unwrap();
    for (at, _) in state.recent.values_mut() {
        *at = expired;
    }
    assert_eq!(state.late_sweep(), None);
    assert!(!state.late_sweep);
    assert!(state.recent.is_empty());
    assert!(state.recent.capacity() <= KEPT_ROOM);
    assert!(state.waiting.capacity() <= KEPT_ROOM);
    assert!(state.under_way.capacity() <= KEPT_ROOM);
    assert_eq!(
        state.known.len(),
        1000,
        "what is known of each secret stays"
    );
}
