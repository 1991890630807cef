//! Event mode against polling mode, side by side in one run on the local stack.
//!
//! For each mode: N ExternalSecrets (each reading its own AWS secret) exist before the
//! controller starts, and the time until all their Secrets are written is measured (cold start); then R secrets are rotated one at a time and the time until the new value is
//! in the Kubernetes Secret is measured. Event mode announces each rotation with its
//! EventBridge event; polling mode is ESO's way, a `refreshInterval` and no events. Finally
//! the controller's resident memory is read. No secret value is printed.
//!
//! Usage: `secret-bridge-bench [N] [R] [POLL_INTERVAL]` (defaults 200, 20, 10s), after
//! `scripts/stack up` and `cargo build --release -p secret-bridge-controller -p secret-bridge-tests`.

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::install_crds;
use secret_bridge_tests::manifest::Manifest;
use secret_bridge_tests::wait::wait_for_secret_value;
use secret_bridge_tests::{Stack, Tenant, unique};

struct Run {
    mode: &'static str,
    cold_start: Duration,
    latencies: Vec<Duration>,
    rss_kib: Option<u64>,
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let rotations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let poll = args.next().unwrap_or_else(|| "10s".into());
    let stack = Stack::connect().await;
    install_crds(&stack.kube).await;
    println!(
        "secret-bridge bench: {n} ExternalSecrets, {rotations} rotations one at a time, polling interval {poll}"
    );
    let event = run(&stack, "event", n, rotations, None).await;
    let polling = run(&stack, "polling", n, rotations, Some(&poll)).await;

    println!(
        "\n| mode | cold start ({n} ES) | rotation → Secret p50 | p99 | max | controller RSS |"
    );
    println!("|---|---|---|---|---|---|");
    for r in [&event, &polling] {
        println!(
            "| {} | {:.2} s | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            r.mode,
            r.cold_start.as_secs_f64(),
            ms(percentile(&r.latencies, 50)),
            ms(percentile(&r.latencies, 99)),
            ms(percentile(&r.latencies, 100)),
            r.rss_kib
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "?".into()),
        );
    }
    println!(
        "\nEvent mode brings a rotation to the cluster {:.0}× faster than polling every {poll} (median).",
        percentile(&polling.latencies, 50).as_secs_f64()
            / percentile(&event.latencies, 50).as_secs_f64()
    );
}

async fn run(
    stack: &Stack,
    mode: &'static str,
    n: usize,
    rotations: usize,
    poll: Option<&str>,
) -> Run {
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(stack, &format!("bench-{mode}"), "us-east-1").await;
    let tenant = &tenant;
    let ns = tenant.namespace.as_str();
    let names: Vec<String> = (0..n).map(|i| format!("{ns}/s{i}")).collect();
    stream::iter(&names)
        .for_each_concurrent(16, |name| {
            let aws = &aws;
            async move {
                aws.upsert_secret(name, r#"{"v":"initial"}"#).await;
            }
        })
        .await;
    let bus = unique("bench-bus");
    let queue = aws.event_queue(&unique("bench"), &bus, None, 30).await;
    let mut args = Vec::new();
    if poll.is_none() {
        args.extend(["--queue-url", queue.as_str()]);
    }
    let interval = poll.unwrap_or("1h");
    stream::iter(names.iter().enumerate())
        .for_each_concurrent(16, |(i, name)| async move {
            tenant
                .external_secret(&format!("es{i}"))
                .refresh_interval(interval)
                .extract(name)
                .apply(kube, ns)
                .await;
        })
        .await;
    // Cold start: every ExternalSecret exists before the controller starts.
    let start = Instant::now();
    let controller = tenant.start_controller(stack, &args);
    for i in 0..n {
        wait_for_secret_value(
            kube,
            ns,
            &format!("es{i}"),
            "v",
            "initial",
            Duration::from_secs(300),
        )
        .await;
    }
    let cold_start = start.elapsed();
    println!(
        "[{mode}] cold start: {n} Secrets synced in {:.2} s",
        cold_start.as_secs_f64()
    );

    let mut latencies = Vec::new();
    for r in 0..rotations {
        let i = (r * 7919) % n;
        let value = unique("rotated");
        let written = aws
            .rotate(&names[i], &format!(r#"{{"v":"{value}"}}"#))
            .await;
        let start = Instant::now();
        if poll.is_none() {
            aws.publish_label_updated(&bus, &names[i], &written).await;
        }
        wait_for_secret_value(
            kube,
            ns,
            &format!("es{i}"),
            "v",
            &value,
            Duration::from_secs(120),
        )
        .await;
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let rss_kib = controller.rss_kib();
    drop(controller);
    // Leave the stack as we found it: the namespace's ExternalSecrets and Secrets go with it.
    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(kube.clone());
    let _ = namespaces.delete(ns, &Default::default()).await;
    Run {
        mode,
        cold_start,
        latencies,
        rss_kib,
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() * p).div_ceil(100))
        .saturating_sub(1)
        .min(sorted.len() - 1);
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
