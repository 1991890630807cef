//! The kube-apiserver dies (SIGKILL) in the middle of a burst of rotations and comes back a
//! few seconds later: the controller recovers by itself (same process), every update arrives,
//! and events after the restart are applied as before.

use std::time::{Duration, Instant};

use secret_bridge_tests::faults::{ApiserverOutage, Rng, controller_pid};

use crate::burst::Burst;
use crate::serial;

const EXTERNAL_SECRETS: usize = 100;
const CONVERGE: Duration = Duration::from_secs(180);

#[tokio::test]
async fn an_apiserver_restart_mid_burst_loses_no_update() {
    let _serial = serial().await;
    Burst::new("faults-apiserver", EXTERNAL_SECRETS, 5, None)
        .await
        .run(apiserver_restart)
        .await;
}

async fn apiserver_restart(burst: &Burst) {
    let mut rng = Rng::from_env_or_clock();
    let mut controller = burst.start_controller("run", &[]);
    assert_eq!(
        burst.wait_round(0, CONVERGE).await,
        burst.len(),
        "initial sync"
    );
    let pid = controller_pid(&controller);

    let kill_at = rng.below(Duration::from_millis(1500));
    let down_for = Duration::from_secs(2) + rng.below(Duration::from_secs(3));
    let began = Instant::now();
    let outage = async {
        tokio::time::sleep(kill_at).await;
        // Dropped (apiserver started again) even if the burst panics.
        let outage = ApiserverOutage::begin();
        tokio::time::sleep(down_for).await;
        let restart = Instant::now();
        outage.end(&burst.stack).await;
        restart.elapsed()
    };
    let (back_after, ()) = tokio::join!(outage, burst.publish_round(1));
    let arrived = burst.wait_round(1, CONVERGE).await;
    println!(
        "faults: kube-apiserver killed {kill_at:?} into a burst of {n} rotations, down {down_for:?} + {back_after:?} to answer again: {arrived}/{n} updates arrived after {:?}, {} lost",
        began.elapsed(),
        burst.len() - arrived,
        n = burst.len(),
    );
    assert_eq!(
        arrived,
        burst.len(),
        "updates lost across the apiserver restart (log: {})",
        controller.log_path.display()
    );

    // The same process, still live, and its watches serve new events as before.
    let began = Instant::now();
    burst.publish_round(2).await;
    let arrived = burst.wait_round(2, Duration::from_secs(60)).await;
    println!(
        "faults: after the apiserver restart, the next burst: {arrived}/{} arrived in {:?}",
        burst.len(),
        began.elapsed()
    );
    assert_eq!(arrived, burst.len(), "events after the restart");
    assert!(controller.is_running(), "the controller survived");
    assert_eq!(controller_pid(&controller), pid, "without a restart");
    let (status, body) = controller.probe_get("/healthz").await;
    assert_eq!(status, 200, "/healthz after the apiserver restart: {body}");
    burst.assert_logs_hide_values();
}
