//! The AWS endpoint fails for a while (the controller reaches AWS through [`AwsProxy`]):
//! first every connection is refused, then Secrets Manager answers HTTP 500, then it
//! throttles. Rotations and their events arrive all along. Nothing can be read until the
//! endpoint heals; then every update arrives, without a restart, and `/healthz` stays ok
//! throughout.

use std::time::{Duration, Instant};

use secret_bridge_tests::aws_proxy::{AwsProxy, Fault};
use secret_bridge_tests::controller::ControllerProcess;
use secret_bridge_tests::faults::controller_pid;
use secret_bridge_tests::wait::wait_for_empty_queue;

use crate::burst::Burst;
use crate::serial;

const EXTERNAL_SECRETS: usize = 48;
/// How long each fault lasts: three of them make a 45 s outage.
const PHASE: Duration = Duration::from_secs(15);
const CONVERGE: Duration = Duration::from_secs(120);

#[tokio::test]
async fn an_aws_outage_loses_no_update() {
    let _serial = serial().await;
    Burst::new("faults-aws", EXTERNAL_SECRETS, 5, None)
        .await
        .run(aws_outage)
        .await;
}

async fn aws_outage(burst: &Burst) {
    let proxy = AwsProxy::start(&burst.stack.env["AWS_ENDPOINT_URL"]).await;
    let endpoint = proxy.url();
    let controller =
        burst.start_controller_with_env("run", &[], &[("AWS_ENDPOINT_URL", endpoint.as_str())]);
    assert_eq!(
        burst.wait_round(0, CONVERGE).await,
        burst.len(),
        "initial sync"
    );
    let pid = controller_pid(&controller);

    // Secrets Manager stays unreachable from the first phase to the last. Each phase rotates
    // its own third of the secrets: each of their events must be kept
    // and retried until it can be applied, whatever the others do.
    let third = burst.len() / 3;
    let phases = [
        ("refused connections (every service)", "", Fault::Refuse),
        (
            "HTTP 500 (Secrets Manager)",
            "secretsmanager",
            Fault::Status(500),
        ),
        (
            "throttling (Secrets Manager)",
            "secretsmanager",
            Fault::Throttle,
        ),
    ];
    let began = Instant::now();
    let mut healthy = 0;
    for (n, (what, prefix, fault)) in phases.into_iter().enumerate() {
        proxy.clear_faults();
        proxy.set_fault(prefix, fault);
        proxy.take_calls();
        let phase_began = Instant::now();
        burst.publish(1, n * third..(n + 1) * third).await;
        healthy += hold_healthy(&controller, phase_began + PHASE).await;
        let reads: u64 = proxy
            .take_calls()
            .iter()
            .filter(|(key, _)| key.starts_with("secretsmanager."))
            .map(|(_, calls)| calls)
            .sum();
        println!(
            "faults: AWS {what} for {:?}: {third} rotations published, {reads} Secrets Manager calls tried ({:.1}/s)",
            phase_began.elapsed(),
            reads as f64 / phase_began.elapsed().as_secs_f64()
        );
    }
    let rounds: Vec<u32> = (0..burst.len()).map(|i| u32::from(i < 3 * third)).collect();
    let before_healing = burst.arrived_rounds(&rounds).await;
    let untouched = burst.len() - 3 * third;
    assert_eq!(
        before_healing, untouched,
        "no update could arrive while Secrets Manager failed: the faults did not take effect"
    );

    proxy.clear_faults();
    let healed = Instant::now();
    let arrived = burst.wait_rounds(&rounds, CONVERGE).await;
    let took = healed.elapsed();
    let updates = 3 * third;
    println!(
        "faults: AWS endpoint failing for {:?} (refused, 500, throttled): {}/{updates} updates arrived {took:?} after it healed, {} lost; /healthz ok {healthy} times out of {healthy}",
        healed - began,
        arrived - untouched,
        burst.len() - arrived,
    );
    assert_eq!(
        arrived,
        burst.len(),
        "updates lost across the AWS outage (log: {})",
        controller.log_path.display()
    );
    wait_for_empty_queue(&burst.aws, &burst.queue, CONVERGE).await;
    assert_eq!(controller_pid(&controller), pid, "without a restart");
    let (status, body) = controller.probe_get("/healthz").await;
    assert_eq!(status, 200, "/healthz after the outage: {body}");
    burst.assert_logs_hide_values();
}

/// Checks `/healthz` every second until `until`; panics unless it answers 200 each time.
/// Returns how many times it did.
async fn hold_healthy(controller: &ControllerProcess, until: Instant) -> usize {
    let mut checks = 0;
    while Instant::now() < until {
        let (status, body) = controller.probe_get("/healthz").await;
        assert_eq!(status, 200, "/healthz during the AWS outage: {body}");
        checks += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    checks
}
