//! Scale, on the real local stack: thousands of ExternalSecrets with a short refresh interval,
//! all created before the controller starts (ESO's "new ExternalSecrets take minutes"). Every
//! one is synced while the resyncs of the others keep coming due (none starves), and the
//! resyncs read AWS in batches: far fewer calls than one per resync, which is what ESO makes.
//!
//! Its own test binary, so that its load does not run beside the other end-to-end tests
//! (cargo runs test binaries one after the other).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use secret_bridge_controller::api::ExternalSecret;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::manifest::Manifest;
use secret_bridge_tests::{ControllerProcess, Stack, Tenant};
use serde_json::json;

const COUNT: usize = 2000;
const INTERVAL: Duration = Duration::from_secs(10);

#[tokio::test]
async fn thousands_of_external_secrets_at_a_short_interval_all_sync_and_resync_in_batches() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "scale", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let names: Vec<String> = (0..COUNT).map(|i| format!("{ns}/s{i}")).collect();
    stream::iter(names.iter().enumerate())
        .for_each_concurrent(16, |(i, name)| {
            let aws = &aws;
            async move {
                aws.upsert_secret(name, &json!({ "v": value(i) }).to_string())
                    .await;
            }
        })
        .await;
    let interval = format!("{}s", INTERVAL.as_secs());
    stream::iter(names.iter().enumerate())
        .for_each_concurrent(16, |(i, name)| {
            let external_secret = tenant
                .external_secret(&format!("es{i}"))
                .refresh_interval(&interval)
                .extract(name);
            async move { external_secret.apply(kube, ns).await }
        })
        .await;

    let controller = tenant.start_controller(&stack, &[]);
    let outcome = measure(&controller, kube, ns).await;
    // Every controller of the other tests watches all ExternalSecrets: leave none behind.
    Api::<Namespace>::all(kube.clone())
        .delete(ns, &DeleteParams::default())
        .await
        .expect("delete the namespace");
    stream::iter(&names)
        .for_each_concurrent(16, |name| {
            let client = aws_sdk_secretsmanager::Client::new(&stack.aws);
            async move {
                let _ = client
                    .delete_secret()
                    .secret_id(name)
                    .force_delete_without_recovery(true)
                    .send()
                    .await;
            }
        })
        .await;
    controller.assert_logs_hide(&[&value(0), &value(COUNT - 1)]);
    let outcome = outcome.unwrap_or_else(|failure| panic!("{failure}"));
    println!("{outcome}");
}

/// Cold start, then three intervals of resyncs; `Err` says what went wrong.
async fn measure(
    controller: &ControllerProcess,
    kube: &kube::Client,
    ns: &str,
) -> Result<String, String> {
    let started = Instant::now();
    let api = Api::<ExternalSecret>::namespaced(kube.clone(), ns);
    let mut last_progress = Instant::now();
    loop {
        let ready = ready_count(&api).await;
        if ready == COUNT {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!(
                "only {ready} of {COUNT} ExternalSecrets synced after {:?}: some starve",
                started.elapsed()
            ));
        }
        if last_progress.elapsed() > Duration::from_secs(10) {
            println!(
                "scale: {ready}/{COUNT} synced after {:?}",
                started.elapsed()
            );
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cold_start = started.elapsed();
    let after_cold = aws_calls(controller).await;

    // Resyncs with nothing changed in AWS: the work of three intervals (3 × COUNT reconciles,
    // from the controller's own counter). They read AWS in batches.
    const RECONCILES: &str = r#"secret_bridge_reconciles_total{result="success"}"#;
    let reconciled_before = controller.metrics().await.value(RECONCILES);
    let window = Instant::now();
    let syncs_before = sync_counts(controller).await;
    let target = reconciled_before + 3.0 * COUNT as f64;
    loop {
        if controller.metrics().await.value(RECONCILES) >= target {
            break;
        }
        // Generous: this is a check that resyncs go on, not a speed test (the bench is).
        if window.elapsed() > 30 * INTERVAL {
            let done = controller.metrics().await.value(RECONCILES) - reconciled_before;
            return Err(format!(
                "only {done} of {} resyncs within {:?}",
                3 * COUNT,
                window.elapsed()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let intervals = 3.0;
    let steady = aws_calls(controller).await;
    // Fairness: three intervals' worth of resyncs reached every ExternalSecret, not the same
    // few again and again.
    let syncs_after = sync_counts(controller).await;
    let stale = (0..COUNT)
        .filter(|i| {
            let name = format!("es{i}");
            syncs_after.get(&name).copied().unwrap_or(0.0)
                <= syncs_before.get(&name).copied().unwrap_or(0.0)
        })
        .count();
    if stale > 0 {
        return Err(format!(
            "{stale} of {COUNT} ExternalSecrets were not resynced during {} resyncs in {:.1?}: resyncs starve",
            3 * COUNT,
            window.elapsed()
        ));
    }
    let calls: f64 = steady
        .iter()
        .map(|(operation, count)| count - after_cold.get(operation).copied().unwrap_or(0.0))
        .sum();
    let per_es_per_interval = calls / (COUNT as f64 * intervals);
    let report = format!(
        "scale: {COUNT} ExternalSecrets synced from scratch in {cold_start:.1?} (calls: {after_cold:?}); \
         {} resyncs at {INTERVAL:?} in {:.1?}: {calls} calls = {per_es_per_interval:.3} per resync \
         (ESO: 1.0; calls: {steady:?})",
        3 * COUNT,
        window.elapsed()
    );
    // ESO makes one call per resync; the brief's goal is 0.05. The bound catches batching
    // that stopped working.
    if per_es_per_interval > 0.5 {
        return Err(format!("resyncs must read AWS in batches: {report}"));
    }
    Ok(report)
}

async fn ready_count(api: &Api<ExternalSecret>) -> usize {
    let Ok(list) = api.list(&ListParams::default()).await else {
        return 0;
    };
    list.items
        .iter()
        .filter(|es| {
            es.status.as_ref().is_some_and(|status| {
                status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .count()
}

/// ESO's `externalsecret_sync_calls_total` by ExternalSecret name. (Not `status.refreshTime`:
/// a resync that changes nothing leaves the status as it is.)
async fn sync_counts(controller: &ControllerProcess) -> BTreeMap<String, f64> {
    let metrics = controller.metrics().await;
    metrics
        .text()
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("externalsecret_sync_calls_total{name=\"")?;
            let (name, rest) = rest.split_once('"')?;
            let value = rest.rsplit(' ').next()?.parse().ok()?;
            Some((name.to_owned(), value))
        })
        .collect()
}

/// `secret_bridge_aws_calls_total` by operation.
async fn aws_calls(controller: &ControllerProcess) -> BTreeMap<String, f64> {
    let metrics = controller.metrics().await;
    let mut calls = BTreeMap::new();
    for line in metrics.text().lines() {
        let Some(rest) = line.strip_prefix("secret_bridge_aws_calls_total{operation=\"") else {
            continue;
        };
        let Some((operation, rest)) = rest.split_once('"') else {
            continue;
        };
        let value: f64 = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *calls.entry(operation.to_owned()).or_default() += value;
    }
    calls
}

/// The value of secret `i`: recognisable, so that the log can be searched for it.
fn value(i: usize) -> String {
    format!("scale-value-{i}")
}
