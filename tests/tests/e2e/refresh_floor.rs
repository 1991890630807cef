//! A tenant's `refreshInterval: 1ms` is raised to `--min-refresh-interval`, and its status
//! says so; an ExternalSecret above the floor keeps its own interval and ESO's message.

use std::time::{Duration, Instant};

use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::manifest::Manifest;
use secret_bridge_tests::wait::wait_for_ready;
use secret_bridge_tests::{Stack, Tenant, unique};

const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_refresh_interval_below_the_floor_is_raised_and_reported() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "floor", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let key = unique("floor");
    aws.upsert_secret(&key, r#"{"v":"floor-value-1"}"#).await;
    let controller = tenant.start_controller(&stack, &["--min-refresh-interval", "2s"]);
    for (name, interval) in [("greedy", "1ms"), ("calm", "1h")] {
        tenant
            .external_secret(name)
            .refresh_interval(interval)
            .extract(&key)
            .apply(kube, ns)
            .await;
    }

    let (reason, message) = wait_for_ready(kube, ns, "greedy", "True", TIMEOUT).await;
    assert_eq!(reason, "SecretSynced");
    assert_eq!(
        message,
        "secret synced; spec.refreshInterval 1ms is below this controller's minimum: resynced every 2s"
    );
    let (_, message) = wait_for_ready(kube, ns, "calm", "True", TIMEOUT).await;
    assert_eq!(message, "secret synced");

    // It still resyncs, but no more often than every 2 s: the first of three more syncs ends
    // after `start` (give or take a scrape), the third at least two intervals later.
    let syncs = format!(r#"externalsecret_sync_calls_total{{name="greedy",namespace="{ns}"}}"#);
    let before = controller.wait_for_metric(&syncs, 1.0, TIMEOUT).await;
    let start = Instant::now();
    let after = controller
        .wait_for_metric(&syncs, before + 3.0, TIMEOUT)
        .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(3500),
        "{} syncs in {took:?}: faster than the 2 s floor",
        after - before
    );
}
