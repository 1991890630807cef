//! `kill -9` the controller at random moments while bursts of rotations arrive: every update
//! still reaches its Secret, and the queue drains (no message is stuck or forgotten).

use std::time::{Duration, Instant};

use secret_bridge_tests::faults::{Rng, controller_pid, is_alive, sigkill};
use secret_bridge_tests::wait::{wait_for_empty_queue, wait_until};

use crate::burst::Burst;
use crate::serial;

const EXTERNAL_SECRETS: usize = 100;
const ROUNDS: u32 = 5;
const KILLS_PER_ROUND: usize = 2;
/// Kills fall within this long after a round starts publishing (a round publishes for 5–10 s
/// on the local stack), so they hit receives, reads, writes and deletes alike.
const KILL_WINDOW: Duration = Duration::from_secs(6);
/// Generous: after a kill, messages in flight come back after the visibility timeout.
const CONVERGE: Duration = Duration::from_secs(180);

#[tokio::test]
async fn sigkill_during_bursts_loses_no_update() {
    let _serial = serial().await;
    Burst::new("faults-kill", EXTERNAL_SECRETS, 5, None)
        .await
        .run(kills_during_rounds)
        .await;
}

async fn kills_during_rounds(burst: &Burst) {
    let mut rng = Rng::from_env_or_clock();
    let mut starts = 0;
    let mut controller = burst.start_controller("start-0", &[]);
    let synced = burst.wait_round(0, CONVERGE).await;
    assert_eq!(synced, burst.len(), "initial sync");

    let (mut kills, mut arrived_total) = (0, 0);
    for round in 1..=ROUNDS {
        let mut moments: Vec<Duration> = (0..KILLS_PER_ROUND)
            .map(|_| rng.below(KILL_WINDOW))
            .collect();
        moments.sort();
        let pauses: Vec<Duration> = moments
            .iter()
            .map(|_| rng.below(Duration::from_millis(500)))
            .collect();
        let began = Instant::now();
        let killer = async {
            for (at, pause) in moments.iter().zip(&pauses) {
                tokio::time::sleep_until((began + *at).into()).await;
                let pid = controller_pid(&controller);
                sigkill(pid);
                wait_until(
                    "the killed controller to be gone",
                    Duration::from_secs(5),
                    || std::future::ready(!is_alive(pid)),
                )
                .await;
                kills += 1;
                tokio::time::sleep(*pause).await;
                starts += 1;
                // Dropping the old process reaps it; the new one reads the same queue.
                controller = burst.start_controller(&format!("start-{starts}"), &[]);
            }
        };
        let (_, published) = tokio::join!(killer, async {
            burst.publish_round(round).await;
            began.elapsed()
        });
        let arrived = burst.wait_round(round, CONVERGE).await;
        println!(
            "faults: round {round}: published {} rotations in {published:?}, killed at {moments:?}, {arrived}/{} arrived after {:?}",
            burst.len(),
            burst.len(),
            began.elapsed()
        );
        arrived_total += arrived;
        assert_eq!(
            arrived,
            burst.len(),
            "round {round}: {} updates lost after kills at {moments:?} (logs: target/test-logs/{}-start-*.log)",
            burst.len() - arrived,
            burst.tenant.namespace
        );
        wait_for_empty_queue(&burst.aws, &burst.queue, CONVERGE).await;
    }

    let expected = burst.len() * ROUNDS as usize;
    println!(
        "faults: {kills} kills during {ROUNDS} rounds of {} ExternalSecrets: {arrived_total}/{expected} updates arrived, {} lost",
        burst.len(),
        expected - arrived_total
    );
    assert!(controller.is_running(), "the last controller still runs");
    burst.assert_logs_hide_values();
}
