//! SIGKILL the leader in the middle of a burst of rotations: the standby takes the Lease once
//! it expires (15 s, the chart's default), every update arrives, and no Secret goes back.

use std::time::{Duration, Instant, SystemTime};

use secret_bridge_tests::faults::{controller_pid, sigkill};
use secret_bridge_tests::wait::wait_for_empty_queue;

use crate::burst::Burst;
use crate::history::History;
use crate::{assert_idle_until_leading, candidate, led_at, serial, wait_leading, wait_standing_by};

const EXTERNAL_SECRETS: usize = 60;
/// Generous: messages the killed leader had received come back after the visibility timeout.
const CONVERGE: Duration = Duration::from_secs(120);
/// The goal is the lease duration, 15 s: the standby watches the Lease, so it sees the last
/// renewal at once and takes over when that renewal is 15 s old. A loaded machine may add a
/// little scheduling delay.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(17);

#[tokio::test]
async fn sigkill_of_the_leader_during_a_burst_loses_no_update() {
    let _serial = serial().await;
    Burst::new("failover-kill", EXTERNAL_SECRETS, 5, None)
        .await
        .run(kill_the_leader)
        .await;
}

async fn kill_the_leader(burst: &Burst) {
    let history = History::watch(burst);
    let leader = candidate(burst, "a");
    wait_leading(&leader, Duration::from_secs(30)).await;
    assert_eq!(
        burst.wait_round(0, CONVERGE).await,
        burst.len(),
        "initial sync"
    );
    let standby = candidate(burst, "b");
    wait_standing_by(&standby).await;

    // Half the burst, the kill, then the other half: the leader dies with messages in flight.
    let half = burst.len() / 2;
    burst.publish(1, 0..half).await;
    let killed_at = SystemTime::now();
    let killed = Instant::now();
    sigkill(controller_pid(&leader));
    burst.publish(1, half..burst.len()).await;

    wait_leading(&standby, Duration::from_secs(60)).await;
    let takeover = led_at(&standby)
        .and_then(|at| at.duration_since(killed_at).ok())
        .expect("the time the standby took the Lease, after the kill");
    let arrived = burst.wait_round(1, CONVERGE).await;
    println!(
        "failover: SIGKILL of the leader mid-burst: standby led after {takeover:.1?} (lease 15s, renew deadline 10s, retry 2s); {arrived}/{} updates arrived {:.1?} after the kill",
        burst.len(),
        killed.elapsed()
    );
    assert_eq!(
        arrived,
        burst.len(),
        "updates lost across the failover (logs: {}, {})",
        leader.log_path.display(),
        standby.log_path.display()
    );
    assert!(
        takeover <= TAKEOVER_LIMIT,
        "the takeover took {takeover:?}, more than {TAKEOVER_LIMIT:?}"
    );
    wait_for_empty_queue(&burst.aws, &burst.queue, CONVERGE).await;
    assert_idle_until_leading(&standby);
    history.assert_never_went_back();
    burst.assert_logs_hide_values();
}
