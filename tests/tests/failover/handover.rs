//! Clean handovers: SIGTERM makes the leader stop its writers and release the Lease, so the
//! standby leads at once; and a rolling update (new replicas start, old ones are terminated
//! one by one, during rotations) never leaves a Secret on an older value.

use std::time::{Duration, Instant, SystemTime};

use secret_bridge_tests::ControllerProcess;
use secret_bridge_tests::faults::{controller_pid, is_alive};
use secret_bridge_tests::wait::{wait_for_empty_queue, wait_until};

use crate::burst::Burst;
use crate::history::History;
use crate::{
    BECAME_LEADER, assert_idle_until_leading, candidate, led_at, serial, wait_leading,
    wait_standing_by,
};

const EXTERNAL_SECRETS: usize = 40;
const CONVERGE: Duration = Duration::from_secs(120);
/// A released Lease is free at once: the standby sees the release on its watch.
const HANDOVER_LIMIT: Duration = Duration::from_secs(3);

/// Sends SIGTERM to `controller` (as the kubelet does) and waits until it has exited.
async fn terminate(controller: &ControllerProcess) -> SystemTime {
    let pid = controller_pid(controller);
    let at = SystemTime::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
    wait_until(
        "the terminated controller to exit",
        Duration::from_secs(60),
        || std::future::ready(!is_alive(pid)),
    )
    .await;
    at
}

#[tokio::test]
async fn sigterm_hands_the_lease_over_at_once() {
    let _serial = serial().await;
    Burst::new("failover-term", EXTERNAL_SECRETS, 5, None)
        .await
        .run(async |burst: &Burst| {
            let history = History::watch(burst);
            let leader = candidate(burst, "a");
            wait_leading(&leader, Duration::from_secs(30)).await;
            assert_eq!(burst.wait_round(0, CONVERGE).await, burst.len());
            let standby = candidate(burst, "b");
            wait_standing_by(&standby).await;

            let half = burst.len() / 2;
            burst.publish(1, 0..half).await;
            let started = Instant::now();
            let terminated_at = terminate(&leader).await;
            assert!(
                leader.logs().contains("released the Lease"),
                "the leader releases the Lease on SIGTERM ({})",
                leader.log_path.display()
            );
            burst.publish(1, half..burst.len()).await;
            wait_leading(&standby, Duration::from_secs(30)).await;
            let handover = led_at(&standby)
                .map(|at| at.duration_since(terminated_at).unwrap_or_default())
                .expect("the time the standby took the Lease");
            let arrived = burst.wait_round(1, CONVERGE).await;
            println!(
                "failover: SIGTERM of the leader: standby led {handover:.1?} after the signal; {arrived}/{} updates arrived {:.1?} after it",
                burst.len(),
                started.elapsed()
            );
            assert_eq!(arrived, burst.len(), "updates lost across the handover");
            assert!(
                handover <= HANDOVER_LIMIT,
                "the handover took {handover:?}, more than {HANDOVER_LIMIT:?}"
            );
            wait_for_empty_queue(&burst.aws, &burst.queue, CONVERGE).await;
            assert_idle_until_leading(&standby);
            history.assert_never_went_back();
            burst.assert_logs_hide_values();
        })
        .await;
}

const ROUNDS: u32 = 4;

#[tokio::test]
async fn rolling_update_never_ends_on_an_older_value() {
    let _serial = serial().await;
    Burst::new("failover-roll", EXTERNAL_SECRETS, 5, None)
        .await
        .run(async |burst: &Burst| {
            let history = History::watch(burst);
            // One after the other, so that the first one leads.
            let first = candidate(burst, "old-1");
            wait_leading(&first, Duration::from_secs(30)).await;
            let old = [first, candidate(burst, "old-2")];
            wait_standing_by(&old[1]).await;
            assert_eq!(burst.wait_round(0, CONVERGE).await, burst.len());

            // As a Deployment with maxSurge 1 and maxUnavailable 0 rolls two replicas, while
            // rotations keep arriving: a new replica starts and is ready, then an old one is
            // terminated (the leader first), and again.
            let mut new = Vec::new();
            let roll = async {
                for (i, old) in old.iter().enumerate() {
                    let replica = candidate(burst, &format!("new-{}", i + 1));
                    wait_standing_by(&replica).await;
                    new.push(replica);
                    terminate(old).await;
                }
            };
            let publish = async {
                for round in 1..=ROUNDS {
                    burst.publish_round(round).await;
                }
            };
            tokio::join!(roll, publish);

            let arrived = burst.wait_round(ROUNDS, CONVERGE).await;
            let leaders = new
                .iter()
                .filter(|c| c.logs().contains(BECAME_LEADER))
                .count();
            println!(
                "failover: rolling update of 2 replicas during {ROUNDS} rounds of {} rotations: {arrived}/{} Secrets hold the last round, {leaders} new replica led",
                burst.len(),
                burst.len()
            );
            assert_eq!(arrived, burst.len(), "Secrets not on the last round");
            assert_eq!(leaders, 1, "exactly one new replica leads");
            wait_for_empty_queue(&burst.aws, &burst.queue, CONVERGE).await;
            for replica in &new {
                assert_idle_until_leading(replica);
            }
            history.assert_never_went_back();
            burst.assert_logs_hide_values();
        })
        .await;
}
