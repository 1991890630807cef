//! The one table the bench prints: event mode, polling only and ESO side by side.

use std::time::Duration;

use crate::probe::rss;
use crate::runs::{
    BURST_REPEATS, CONCURRENCY, Calls, EVENT_TIMEOUT, EventRun, PollingRun, STEADY_INTERVALS,
    Settings, median, percentile, secrets_manager_calls,
};

/// Secrets Manager's price: $0.05 per 10,000 API calls.
const DOLLARS_PER_CALL: f64 = 0.05 / 10_000.0;
const SECONDS_PER_MONTH: f64 = 30.0 * 24.0 * 3600.0;

pub fn print(settings: &Settings, event: &EventRun, polling: Option<&PollingRun>) {
    let n = settings.n;
    let interval = &settings.interval_text;
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut row = |phase: &str, what: String, ours: String, poll: String, eso: String| {
        rows.push([phase.to_owned(), what, ours, poll, eso]);
    };
    let poll = |f: &dyn Fn(&PollingRun) -> String| polling.map(f).unwrap_or_default();

    row(
        "cold",
        format!("{n} ExternalSecrets (1 SecretStore, 1 key each) → all Secrets written"),
        secs(event.cold.took),
        poll(&|p| secs(p.cold.took)),
        String::new(),
    );
    row(
        "cold",
        "CPU time used during the cold start, by process".into(),
        event.cold.cpu.to_string(),
        poll(&|p| p.cold.cpu.to_string()),
        String::new(),
    );
    if let Some((floor, cpu)) = &event.cold.floor {
        row(
            "cold",
            format!(
                "floor: {n} secrets read in BatchGetSecretValue calls of 20 + {n} SSA Secret writes by the bench, {CONCURRENCY} at once; cold start ÷ floor"
            ),
            format!(
                "{}; ×{:.1}",
                secs(*floor),
                event.cold.took.as_secs_f64() / floor.as_secs_f64()
            ),
            String::new(),
            String::new(),
        );
        row(
            "cold",
            "CPU time used during the floor, by process".into(),
            cpu.to_string(),
            String::new(),
            String::new(),
        );
    }
    row(
        "cold",
        "AWS calls by operation".into(),
        operations(&event.cold.calls),
        poll(&|p| operations(&p.cold.calls)),
        format!("GetSecretValue {n}"),
    );
    row(
        "cold",
        "controller RSS / peak (VmRSS / VmHWM)".into(),
        rss(event.cold.memory),
        poll(&|p| rss(p.cold.memory)),
        String::new(),
    );
    let (window, eso_reads) = match settings.steady_for {
        Some(window) => (
            format!("{} s", window.as_secs()),
            (n as f64 * window.as_secs_f64() / settings.interval.as_secs_f64()).round() as usize,
        ),
        None => (
            format!("{STEADY_INTERVALS} × {interval}"),
            n * STEADY_INTERVALS as usize,
        ),
    };
    row(
        "steady",
        format!("AWS calls by operation, {window} with no change"),
        operations(&event.steady.calls),
        poll(&|p| operations(&p.steady.calls)),
        format!("GetSecretValue {eso_reads}"),
    );
    row(
        "steady",
        "resyncs served per ExternalSecret per interval (1.0: keeping up)".into(),
        format!("{:.2}", event.steady.resyncs_per_es_per_interval()),
        poll(&|p| format!("{:.2}", p.steady.resyncs_per_es_per_interval())),
        "1.0".into(),
    );
    row(
        "steady",
        "Secrets Manager calls per ExternalSecret per interval".into(),
        format!("{:.3}", event.steady.secrets_manager_per_es_per_interval()),
        poll(&|p| format!("{:.3}", p.steady.secrets_manager_per_es_per_interval())),
        "1.0".into(),
    );
    let lat = &event.events.latencies;
    row(
        "events",
        format!(
            "{} rotations one at a time: event sent → Secret written, p50 / p99 / max",
            lat.len() + event.events.missed
        ),
        format!(
            "{} / {} / {}{}",
            millis(percentile(lat, 50)),
            millis(percentile(lat, 99)),
            millis(percentile(lat, 100)),
            if event.events.missed > 0 {
                format!(
                    "; {} not written within {EVENT_TIMEOUT:?} (left out)",
                    event.events.missed
                )
            } else {
                String::new()
            }
        ),
        poll(&|p| {
            format!(
                "{} / {} / {} (no events: next resync)",
                millis(percentile(&p.latencies, 50)),
                millis(percentile(&p.latencies, 99)),
                millis(percentile(&p.latencies, 100))
            )
        }),
        format!("≈ {interval}/2 / {interval} (resync)"),
    );
    let floors = &event.events.floors;
    row(
        "events",
        "floor: the same path by the bench alone after each rotation (its event through a bus and queue of its own, GetSecretValue, SSA write, same watch; straight to the emulator, not through the counting proxy), p50 / p99 / max; events p50 ÷ floor p50".into(),
        format!(
            "{} / {} / {}; {:.2}×{}",
            millis(percentile(floors, 50)),
            millis(percentile(floors, 99)),
            millis(percentile(floors, 100)),
            percentile(lat, 50).as_secs_f64() / percentile(floors, 50).as_secs_f64().max(1e-9),
            match event.events.missed_floors {
                0 => String::new(),
                n => format!("; {n} not done within {EVENT_TIMEOUT:?} (left out)"),
            }
        ),
        String::new(),
        String::new(),
    );
    let lag = &event.events.lag;
    row(
        "events",
        format!(
            "controller's secret_bridge_event_lag_seconds (SQS arrival → written; {} obs.), p50 / p99 from buckets, mean",
            lag.count
        ),
        format!(
            "{} / {} / {}",
            opt_millis(lag.quantile(0.5)),
            opt_millis(lag.quantile(0.99)),
            opt_millis(lag.mean())
        ),
        String::new(),
        String::new(),
    );
    row(
        "events",
        per_rotation_measure(),
        format!(
            "{:.2} (background ≈ {:.0}); {}",
            event.events.per_rotation,
            event.events.background,
            operations(&event.events.calls)
        ),
        String::new(),
        String::new(),
    );
    let burst = &event.burst;
    let b = settings.burst.min(n);
    let ratios: Vec<f64> = burst
        .took
        .iter()
        .zip(&burst.floor)
        .map(|(t, f)| t.as_secs_f64() / f.as_secs_f64())
        .collect();
    row(
        "burst",
        format!("{b} rotations announced at once → all written (median of {BURST_REPEATS})"),
        secs(median(&burst.took)),
        String::new(),
        String::new(),
    );
    row(
        "burst",
        format!(
            "floor: {b} GetSecretValue + {b} SSA writes by the bench, {CONCURRENCY} at once (median of {BURST_REPEATS})"
        ),
        secs(median(&burst.floor)),
        String::new(),
        String::new(),
    );
    row(
        "burst",
        format!(
            "event delivery alone: the same {b} events published to a bus of the bench's and received from its queue, 10 at a time (median of {BURST_REPEATS})"
        ),
        secs(median(&burst.delivery)),
        String::new(),
        String::new(),
    );
    row(
        "burst",
        "burst / floor (median of per-burst ratios)".into(),
        format!("{:.2}×", median_f64(&ratios)),
        String::new(),
        String::new(),
    );
    row(
        "burst",
        per_rotation_measure(),
        format!(
            "{:.2} (background ≈ {:.0}); {}",
            burst.per_rotation,
            burst.background,
            operations(&burst.calls)
        ),
        String::new(),
        String::new(),
    );
    row(
        "end",
        "controller RSS / peak (VmRSS / VmHWM)".into(),
        rss(event.memory_end),
        poll(&|p| rss(p.memory_end)),
        String::new(),
    );
    let ours = event.steady.secrets_manager_per_es_per_interval();
    for (count, every, seconds) in [
        ("1,000", "1m", 60.0),
        ("1,000", "1h", 3600.0),
        ("10,000", "1m", 60.0),
        ("10,000", "1h", 3600.0),
    ] {
        let externalsecrets: f64 = count.replace(',', "").parse().expect("a count");
        let bill = |per_es_per_interval: f64| {
            dollars(externalsecrets * per_es_per_interval * SECONDS_PER_MONTH / seconds)
        };
        row(
            "bill",
            format!(
                "{count} ExternalSecrets, refreshInterval {every}: $/month at $0.05 per 10,000 calls"
            ),
            format!("{} + $0.05 per 10,000 changes", bill(ours)),
            poll(&|p| bill(p.steady.secrets_manager_per_es_per_interval())),
            bill(1.0),
        );
    }

    println!(
        "\n| phase | measure | secret-bridge, events (SQS) | secret-bridge, polling only | ESO |"
    );
    println!("|---|---|---|---|---|");
    for cells in rows {
        println!("| {} |", cells.join(" | "));
    }
}

fn per_rotation_measure() -> String {
    "Secrets Manager calls per rotation, resyncs in the phase included (the steady rate's \
     share of the phase beside it); calls by operation"
        .into()
}

fn operations(calls: &Calls) -> String {
    if calls.is_empty() {
        return "none".into();
    }
    let listed: Vec<String> = calls.iter().map(|(op, n)| format!("{op} {n}")).collect();
    format!(
        "{} (Secrets Manager: {})",
        listed.join(", "),
        secrets_manager_calls(calls)
    )
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

fn opt_millis(d: Option<Duration>) -> String {
    d.map(millis).unwrap_or_else(|| "–".into())
}

fn dollars(calls_per_month: f64) -> String {
    format!("${:.2}", calls_per_month * DOLLARS_PER_CALL)
}

fn median_f64(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}
