//! The two runs: event mode (cold, steady, events, burst) and polling only (cold, steady,
//! rotations found by resyncs), each with the controller behind the counting proxy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use futures::{StreamExt, stream};
use secret_bridge_tests::aws::{Aws, Written};
use secret_bridge_tests::aws_proxy::AwsProxy;
use secret_bridge_tests::kube_helpers::put_secret;
use secret_bridge_tests::{ControllerProcess, Stack, unique};
use serde_json::json;

use crate::fixture::{Cleanup, Fixture};
use crate::probe::{self, Cpu, Histogram, Memory};
use crate::watch::SecretWatch;

/// The controller's default `--concurrency`; the floor of a burst uses the same.
pub const CONCURRENCY: usize = 32;
/// Bursts (and floors, alternating with them) per run; the report gives medians.
pub const BURST_REPEATS: usize = 3;
/// Resync intervals the steady phase watches.
pub const STEADY_INTERVALS: u32 = 3;
/// Time for the last reconciles of a phase to finish (status writes, metrics) before counting.
const SETTLE: Duration = Duration::from_millis(500);
/// The longest the bench waits for one announced rotation before counting it as missed.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
const EVENT_LAG: &str = "secret_bridge_event_lag_seconds";
const RECONCILED: &str = r#"secret_bridge_reconciles_total{result="success"}"#;
/// Secrets per BatchGetSecretValue, as the controller reads them.
const BATCH: usize = 20;
/// BatchGetSecretValue calls under way at once, as the controller's coalescer makes them.
const BATCH_CALLS: usize = 4;
/// The Secret the floor of single events writes.
const EVENT_FLOOR_SECRET: &str = "event-floor";

pub type Calls = BTreeMap<String, u64>;

pub struct Settings {
    pub n: usize,
    pub rotations: usize,
    pub burst: usize,
    pub interval: Duration,
    pub interval_text: String,
    /// More arguments for the controller (after `--` on the bench's command line).
    pub controller_args: Vec<String>,
    /// `--steady-for`: how long the steady phase watches, instead of [`STEADY_INTERVALS`]
    /// intervals (to measure events with many ExternalSecrets at a long interval).
    pub steady_for: Option<Duration>,
}

impl Settings {
    /// How long the steady phase waits before counting, and then counts.
    fn steady_window(&self) -> (Duration, Duration) {
        match self.steady_for {
            Some(window) => ((self.interval / 2).min(Duration::from_secs(10)), window),
            None => (self.interval / 2, self.interval * STEADY_INTERVALS),
        }
    }
}

pub struct Cold {
    pub took: Duration,
    /// The same reads and writes done by the bench alone (event run only), and the CPU time
    /// each process used for them.
    pub floor: Option<(Duration, Cpu)>,
    /// The CPU time each process used during the cold start.
    pub cpu: Cpu,
    pub calls: Calls,
    pub memory: Option<Memory>,
}

pub struct Steady {
    pub calls: Calls,
    /// Reconciles the controller finished in the window: 1 per ExternalSecret per interval
    /// when it keeps up with the resyncs asked for.
    pub reconciles: f64,
    pub window: Duration,
    pub n: usize,
    pub interval: Duration,
}

impl Steady {
    /// Resyncs served per ExternalSecret per interval (1.0: keeping up).
    pub fn resyncs_per_es_per_interval(&self) -> f64 {
        let intervals = self.window.as_secs_f64() / self.interval.as_secs_f64();
        self.reconciles / self.n as f64 / intervals
    }

    pub fn secrets_manager_per_es_per_interval(&self) -> f64 {
        let intervals = self.window.as_secs_f64() / self.interval.as_secs_f64();
        secrets_manager_calls(&self.calls) as f64 / self.n as f64 / intervals
    }

    /// Secrets Manager calls per second with nothing changing, to subtract from other phases.
    fn background_per_second(&self) -> f64 {
        secrets_manager_calls(&self.calls) as f64 / self.window.as_secs_f64()
    }
}

pub struct Events {
    /// PutEvents → Secret seen by the bench's watch, one rotation at a time.
    pub latencies: Vec<Duration>,
    /// The same path done by the bench alone after each rotation ([`event_floor`]), sorted.
    pub floors: Vec<Duration>,
    /// Floors not done within [`EVENT_TIMEOUT`] (not in `floors`).
    pub missed_floors: usize,
    /// Rotations whose Secret was not written within [`EVENT_TIMEOUT`] (not in `latencies`).
    pub missed: usize,
    /// The controller's own `secret_bridge_event_lag_seconds` over the phase.
    pub lag: Histogram,
    pub calls: Calls,
    /// Secrets Manager calls per rotation, resyncs during the phase included.
    pub per_rotation: f64,
    /// Secrets Manager calls the steady rate predicts for the phase's duration. Only a
    /// guide: resyncs come in clumps (every Secret was first written at about the same time),
    /// so a short phase may see none or many of them.
    pub background: f64,
}

pub struct Burst {
    pub took: Vec<Duration>,
    pub floor: Vec<Duration>,
    /// The emulator's event path alone: the same events published to a bus of the bench's
    /// own and received from its queue by the bench, per burst.
    pub delivery: Vec<Duration>,
    pub calls: Calls,
    pub per_rotation: f64,
    pub background: f64,
}

pub struct EventRun {
    pub cold: Cold,
    pub steady: Steady,
    pub events: Events,
    pub burst: Burst,
    pub memory_end: Option<Memory>,
}

pub struct PollingRun {
    pub cold: Cold,
    pub steady: Steady,
    /// Rotation → Secret seen, all rotated at once and found by resyncs.
    pub latencies: Vec<Duration>,
    pub memory_end: Option<Memory>,
}

pub fn secrets_manager_calls(calls: &Calls) -> u64 {
    calls
        .iter()
        .filter(|(op, _)| op.starts_with("secretsmanager."))
        .map(|(_, n)| n)
        .sum()
}

/// The controller, its proxy and the watch of its namespace, started for a fixture.
struct Running {
    fixture: Fixture,
    watch: SecretWatch,
    proxy: AwsProxy,
    controller: ControllerProcess,
    pid: Option<u32>,
    cold: Cold,
}

impl Running {
    /// Starts the controller on a ready fixture and waits until every Secret is written.
    async fn cold_start(
        stack: &Stack,
        fixture: Fixture,
        floor: Option<(Duration, Cpu)>,
        extra_args: &[String],
    ) -> Running {
        let watch = SecretWatch::start(&stack.kube, &fixture.namespace, "v").await;
        let proxy = AwsProxy::start(&stack.env["AWS_ENDPOINT_URL"]).await;
        let proxy_url = proxy.url();
        let expected: Vec<(String, String)> = (0..fixture.keys.len())
            .map(|i| (format!("es{i}"), "initial".to_owned()))
            .collect();
        let cpu_before = Cpu::now(None);
        let start = Instant::now();
        let controller = ControllerProcess::start_with_env(
            stack,
            &fixture.namespace,
            &fixture
                .controller_args()
                .into_iter()
                .chain(extra_args.iter().map(String::as_str))
                .collect::<Vec<_>>(),
            &[("AWS_ENDPOINT_URL", proxy_url.as_str())],
        );
        let timeout = Duration::from_secs(60 + fixture.keys.len() as u64 / 10);
        let done = watch.wait_for(&expected, timeout).await;
        let took = done.saturating_duration_since(start);
        tokio::time::sleep(SETTLE).await;
        let pid = probe::controller_pid(&fixture.namespace);
        let cold = Cold {
            took,
            floor,
            cpu: Cpu::now(pid).since(&cpu_before),
            calls: proxy.take_calls(),
            memory: pid.and_then(probe::memory),
        };
        println!(
            "[{}] cold start: {} Secrets in {:.2} s; controller RSS / peak {}; CPU: {}",
            fixture.namespace,
            fixture.keys.len(),
            took.as_secs_f64(),
            probe::rss(cold.memory),
            cold.cpu
        );
        Running {
            fixture,
            watch,
            proxy,
            controller,
            pid,
            cold,
        }
    }

    /// Nothing changes for [`STEADY_INTERVALS`] intervals; counting starts half an interval
    /// in, so each ExternalSecret's resyncs fall into the window about that many times. With
    /// `--steady-for`, counting starts at most 10 s in and lasts that long: shorter than the
    /// interval, it may see no resync at all.
    async fn steady(&self, settings: &Settings) -> Steady {
        let interval = settings.interval;
        let (wait, window) = settings.steady_window();
        tokio::time::sleep(wait).await;
        self.proxy.take_calls();
        let reconciled = self.controller.metrics().await.value(RECONCILED);
        let start = Instant::now();
        tokio::time::sleep(window).await;
        let steady = Steady {
            calls: self.proxy.take_calls(),
            reconciles: self.controller.metrics().await.value(RECONCILED) - reconciled,
            window: start.elapsed(),
            n: self.fixture.keys.len(),
            interval,
        };
        println!(
            "[{}] steady: {:.3} Secrets Manager calls and {:.2} resyncs per ExternalSecret per interval; controller RSS / peak {}",
            self.fixture.namespace,
            steady.secrets_manager_per_es_per_interval(),
            steady.resyncs_per_es_per_interval(),
            probe::rss(self.memory())
        );
        steady
    }

    async fn metrics_histogram(&self) -> Histogram {
        let (_, text) = self.controller.probe_get("/metrics").await;
        Histogram::parse(&text, EVENT_LAG)
    }

    fn memory(&self) -> Option<Memory> {
        self.pid.and_then(probe::memory)
    }
}

pub async fn event_run(stack: &Stack, cleanup: &Cleanup, settings: &Settings) -> EventRun {
    let aws = Aws::untracked(&stack.aws);
    let fixture = Fixture::create(
        stack,
        cleanup,
        "event",
        settings.n,
        &settings.interval_text,
        true,
    )
    .await;
    let floor = cold_floor(stack, &aws, &fixture).await;
    let running = Running::cold_start(stack, fixture, Some(floor), &settings.controller_args).await;
    let steady = running.steady(settings).await;
    // A queue and bus of the bench's own, for the floors of the emulator's event path.
    let bench_events = cleanup.event_queue(&aws).await;
    let events = events(
        stack,
        &running,
        &aws,
        &bench_events,
        &steady,
        settings.rotations,
    )
    .await;
    let burst = bursts(
        stack,
        &running,
        &aws,
        &bench_events,
        &steady,
        settings.burst,
    )
    .await;
    EventRun {
        memory_end: running.memory(),
        cold: running.cold,
        steady,
        events,
        burst,
    }
}

/// What the emulator and the apiserver alone need for a cold start's reads and writes, before
/// the controller starts: every secret read in BatchGetSecretValue calls of [`BATCH`]
/// ([`BATCH_CALLS`] at once, as the controller reads them) and one server-side-apply Secret
/// write each, [`CONCURRENCY`] at once. (The controller also reads each target Secret, writes
/// each status and records an Event.)
async fn cold_floor(stack: &Stack, aws: &Aws, fixture: &Fixture) -> (Duration, Cpu) {
    let namespace = &fixture.namespace;
    let cpu_before = Cpu::now(None);
    let start = Instant::now();
    stream::iter(fixture.keys.chunks(BATCH).enumerate())
        .map(|(c, chunk)| async move {
            let page = aws
                .secrets
                .batch_get_secret_value()
                .set_secret_id_list(Some(chunk.to_vec()))
                .send()
                .await
                .expect("BatchGetSecretValue");
            let values = page.secret_values.unwrap_or_default();
            assert_eq!(values.len(), chunk.len(), "every secret read");
            stream::iter(
                values.into_iter().enumerate().map(move |(k, value)| {
                    (c * BATCH + k, value.secret_string.unwrap_or_default())
                }),
            )
        })
        .buffer_unordered(BATCH_CALLS)
        .flatten()
        .for_each_concurrent(CONCURRENCY, |(j, value)| async move {
            put_secret(
                &stack.kube,
                namespace,
                &format!("cold-floor-{j}"),
                &[("v", &value)],
            )
            .await;
        })
        .await;
    let took = start.elapsed();
    let cpu = Cpu::now(None).since(&cpu_before);
    println!(
        "[{namespace}] cold floor: {} reads and writes in {:.2} s; CPU: {cpu}",
        fixture.keys.len(),
        took.as_secs_f64()
    );
    (took, cpu)
}

/// Rotations one at a time, each announced with its event, each followed by its floor.
async fn events(
    stack: &Stack,
    running: &Running,
    aws: &Aws,
    bench_events: &(String, String),
    steady: &Steady,
    rotations: usize,
) -> Events {
    let (_, bus) = running
        .fixture
        .queue
        .as_ref()
        .expect("event mode has a queue");
    let keys = &running.fixture.keys;
    let lag_before = running.metrics_histogram().await;
    running.proxy.take_calls();
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut floors = Vec::new();
    let (mut missed, mut missed_floors) = (0, 0);
    for r in 0..rotations {
        let i = (r * 7919) % keys.len();
        let value = unique("rotated");
        let written = aws.rotate(&keys[i], &json!({"v": value}).to_string()).await;
        let sent = Instant::now();
        aws.publish_label_updated(bus, &keys[i], &written).await;
        let seen = running
            .watch
            .wait_within(&[(format!("es{i}"), value.clone())], EVENT_TIMEOUT)
            .await;
        match seen {
            Ok(seen) => latencies.push(seen.saturating_duration_since(sent)),
            Err(_) => {
                println!(
                    "[{}] rotation {r}: es{i} not written within {EVENT_TIMEOUT:?}",
                    running.fixture.namespace
                );
                missed += 1;
            }
        }
        // The controller's status write and Event go before the floor starts.
        tokio::time::sleep(SETTLE).await;
        let rotated = (i, value, written);
        match event_floor(stack, running, aws, bench_events, &rotated).await {
            Some(floor) => floors.push(floor),
            None => {
                println!(
                    "[{}] rotation {r}: the bench's own event or write not seen within {EVENT_TIMEOUT:?}",
                    running.fixture.namespace
                );
                missed_floors += 1;
            }
        }
    }
    tokio::time::sleep(SETTLE).await;
    // The floors' calls went straight to the emulator, not through the controller's proxy.
    let calls = running.proxy.take_calls();
    let background = steady.background_per_second() * start.elapsed().as_secs_f64();
    let lag = running.metrics_histogram().await.since(&lag_before);
    latencies.sort();
    floors.sort();
    println!(
        "[{}] events: {rotations} rotations, median {:.1} ms, the same path by the bench alone {:.1} ms",
        running.fixture.namespace,
        percentile(&latencies, 50).as_secs_f64() * 1000.0,
        percentile(&floors, 50).as_secs_f64() * 1000.0
    );
    Events {
        latencies,
        floors,
        missed,
        missed_floors,
        lag,
        per_rotation: secrets_manager_calls(&calls) as f64 / rotations as f64,
        background,
        calls,
    }
}

/// `b` rotations announced at once, alternating with the floor: the same reads and writes
/// done by the bench itself, straight to the emulator and the apiserver.
async fn bursts(
    stack: &Stack,
    running: &Running,
    aws: &Aws,
    (delivery_queue, delivery_bus): &(String, String),
    steady: &Steady,
    b: usize,
) -> Burst {
    let (_, bus) = running
        .fixture
        .queue
        .as_ref()
        .expect("event mode has a queue");
    let keys = &running.fixture.keys;
    let namespace = &running.fixture.namespace;
    let b = b.min(keys.len());
    stream::iter(0..b)
        .for_each_concurrent(CONCURRENCY, |j| async move {
            put_secret(&stack.kube, namespace, &format!("floor-{j}"), &[("v", "")]).await;
        })
        .await;
    let mut burst = Burst {
        took: Vec::new(),
        floor: Vec::new(),
        delivery: Vec::new(),
        calls: Calls::new(),
        per_rotation: 0.0,
        background: 0.0,
    };
    let mut phase_time = Duration::ZERO;
    for repeat in 0..BURST_REPEATS {
        let indices: Vec<usize> = (0..b).map(|j| (repeat * b + j) % keys.len()).collect();
        let rotated: Vec<(usize, String, Written)> = stream::iter(&indices)
            .map(|&i| async move {
                let value = unique("burst");
                let written = aws.rotate(&keys[i], &json!({"v": value}).to_string()).await;
                (i, value, written)
            })
            .buffer_unordered(16)
            .collect()
            .await;
        running.proxy.take_calls();
        let start = Instant::now();
        publish_all(aws, bus, keys, &rotated).await;
        let expected: Vec<(String, String)> = rotated
            .iter()
            .map(|(i, value, _)| (format!("es{i}"), value.clone()))
            .collect();
        let done = running
            .watch
            .wait_for(&expected, Duration::from_secs(120 + b as u64 / 5))
            .await;
        burst.took.push(done.saturating_duration_since(start));
        tokio::time::sleep(SETTLE).await;
        phase_time += start.elapsed();
        for (op, n) in running.proxy.take_calls() {
            *burst.calls.entry(op).or_default() += n;
        }
        burst
            .floor
            .push(floor(stack, aws, namespace, keys, &indices).await);
        burst
            .delivery
            .push(delivery(aws, delivery_bus, delivery_queue, keys, &rotated).await);
        println!(
            "[{namespace}] burst {}: {b} rotations in {:.2} s, floor {:.2} s, event delivery alone {:.2} s",
            repeat + 1,
            burst.took[repeat].as_secs_f64(),
            burst.floor[repeat].as_secs_f64(),
            burst.delivery[repeat].as_secs_f64()
        );
    }
    burst.background = steady.background_per_second() * phase_time.as_secs_f64();
    burst.per_rotation = secrets_manager_calls(&burst.calls) as f64 / (b * BURST_REPEATS) as f64;
    burst
}

/// The native `Secret Label Updated` events of `rotated`, ten per PutEvents (its maximum).
async fn publish_all(aws: &Aws, bus: &str, keys: &[String], rotated: &[(usize, String, Written)]) {
    stream::iter(rotated.chunks(10))
        .for_each_concurrent(8, |chunk| async move {
            let entries = chunk.iter().map(|(i, _, written)| {
                let detail = json!({"name": keys[*i], "labelUpdated": "AWSCURRENT", "versionId": written.version_id});
                PutEventsRequestEntry::builder()
                    .event_bus_name(bus)
                    .source("aws.secretsmanager")
                    .detail_type("Secret Label Updated")
                    .detail(detail.to_string())
                    .resources(&written.arn)
                    .build()
            });
            let out = aws
                .events
                .put_events()
                .set_entries(Some(entries.collect()))
                .send()
                .await
                .expect("PutEvents");
            assert_eq!(out.failed_entry_count, 0, "PutEvents failed some entries");
        })
        .await;
}

/// The emulator's event path alone: the events of `rotated` published to `bus` (as the burst
/// publishes them) and received from `queue`, whose rule takes them, and deleted, ten at a
/// time as the controller receives them. The burst can be no faster than this.
async fn delivery(
    aws: &Aws,
    bus: &str,
    queue: &str,
    keys: &[String],
    rotated: &[(usize, String, Written)],
) -> Duration {
    let start = Instant::now();
    let receive = async {
        let mut received = 0;
        while received < rotated.len() && start.elapsed() < EVENT_TIMEOUT * 5 {
            received += aws.receive_and_delete(queue).await.len();
        }
        assert_eq!(
            received,
            rotated.len(),
            "every event delivered to the bench's queue"
        );
    };
    futures::join!(publish_all(aws, bus, keys, rotated), receive);
    start.elapsed()
}

/// One rotation's path done by the bench alone, as the controller does it: its event
/// published to the bench's bus while the bench's long poll waits on the bench's queue (as the
/// controller's always does), one GetSecretValue, the value taken from its JSON, one
/// server-side-apply Secret write seen through the same watch, and only then the message
/// deleted. What an event costs without the controller: matching, coalescing and its queue
/// (and the counting proxy in front of the emulator, which the bench's calls skip). `None`
/// when the event or the write was not seen within [`EVENT_TIMEOUT`].
async fn event_floor(
    stack: &Stack,
    running: &Running,
    aws: &Aws,
    (queue, bus): &(String, String),
    rotated: &(usize, String, Written),
) -> Option<Duration> {
    let keys = &running.fixture.keys;
    let (i, value, _) = rotated;
    let published = async {
        // Time for the long poll to reach the emulator and wait there.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = Instant::now();
        publish_all(aws, bus, keys, std::slice::from_ref(rotated)).await;
        sent
    };
    let received = async {
        let start = Instant::now();
        while start.elapsed() < EVENT_TIMEOUT {
            let messages = aws.receive(queue).await;
            if !messages.is_empty() {
                return Some(messages);
            }
        }
        None
    };
    let (sent, messages) = futures::join!(published, received);
    let messages = messages?;
    let text = aws
        .secrets
        .get_secret_value()
        .secret_id(&keys[*i])
        .send()
        .await
        .expect("GetSecretValue")
        .secret_string
        .unwrap_or_default();
    let read: serde_json::Value = serde_json::from_str(&text).expect("the secret is JSON");
    let read = read["v"].as_str().expect("the secret has \"v\"");
    let namespace = &running.fixture.namespace;
    put_secret(&stack.kube, namespace, EVENT_FLOOR_SECRET, &[("v", read)]).await;
    let seen = running
        .watch
        .wait_within(&[(EVENT_FLOOR_SECRET.into(), value.clone())], EVENT_TIMEOUT)
        .await;
    for message in &messages {
        aws.delete_message(queue, message).await;
    }
    Some(seen.ok()?.saturating_duration_since(sent))
}

/// One GetSecretValue and one server-side-apply write per index, [`CONCURRENCY`] at once.
async fn floor(
    stack: &Stack,
    aws: &Aws,
    namespace: &str,
    keys: &[String],
    indices: &[usize],
) -> Duration {
    let start = Instant::now();
    stream::iter(indices.iter().enumerate())
        .for_each_concurrent(CONCURRENCY, |(j, &i)| async move {
            let value = aws
                .secrets
                .get_secret_value()
                .secret_id(&keys[i])
                .send()
                .await
                .expect("GetSecretValue")
                .secret_string
                .unwrap_or_default();
            put_secret(
                &stack.kube,
                namespace,
                &format!("floor-{j}"),
                &[("v", &value)],
            )
            .await;
        })
        .await;
    start.elapsed()
}

pub async fn polling_run(stack: &Stack, cleanup: &Cleanup, settings: &Settings) -> PollingRun {
    let aws = Aws::untracked(&stack.aws);
    let fixture = Fixture::create(
        stack,
        cleanup,
        "polling",
        settings.n,
        &settings.interval_text,
        false,
    )
    .await;
    let running = Running::cold_start(stack, fixture, None, &settings.controller_args).await;
    let steady = running.steady(settings).await;
    let keys = &running.fixture.keys;
    let aws = &aws;
    // All at once: resyncs find them spread over one interval, as they would one at a time.
    let rotated: Vec<(String, String, Instant)> =
        stream::iter(0..settings.rotations.min(keys.len()))
            .map(|r| async move {
                let i = (r * 7919) % keys.len();
                let value = unique("rotated");
                aws.rotate(&keys[i], &json!({"v": value}).to_string()).await;
                (format!("es{i}"), value, Instant::now())
            })
            .buffer_unordered(16)
            .collect()
            .await;
    let expected: Vec<(String, String)> = rotated
        .iter()
        .map(|(name, value, _)| (name.clone(), value.clone()))
        .collect();
    running
        .watch
        .wait_for(&expected, settings.interval * 3 + Duration::from_secs(60))
        .await;
    let mut latencies: Vec<Duration> = rotated
        .iter()
        .filter_map(|(name, _, at)| {
            Some(running.watch.seen_at(name)?.saturating_duration_since(*at))
        })
        .collect();
    latencies.sort();
    PollingRun {
        memory_end: running.memory(),
        cold: running.cold,
        steady,
        latencies,
    }
}

/// The `p`th percentile (nearest rank) of sorted samples.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = (sorted.len() * p)
        .div_ceil(100)
        .saturating_sub(1)
        .min(sorted.len() - 1);
    sorted[index]
}

pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    percentile(&sorted, 50)
}
