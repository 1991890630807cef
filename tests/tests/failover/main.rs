//! Failover on the real local stack: two controller processes elect a leader with a Lease (the
//! chart's default timings, 15 s / 10 s / 2 s), and bursts of rotations arrive by event while
//! the leader is killed, stopped, or replaced as a rolling update replaces it. Every update
//! must arrive, no Secret may ever go back to an older value, and each case prints how long
//! the takeover took. The cases run one at a time ([`serial`]): takeover times are measured.

#[path = "../faults/burst.rs"]
mod burst;
mod handover;
mod history;
mod sigkill;

use std::time::{Duration, SystemTime};

use secret_bridge_tests::ControllerProcess;
use secret_bridge_tests::wait_for;
use tokio::sync::{Mutex, MutexGuard};

use crate::burst::Burst;

/// Held by each case for its whole run. A tokio mutex is not poisoned by a failed case.
pub async fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::const_new(());
    SERIAL.lock().await
}

/// The log line of a process that took the Lease.
const BECAME_LEADER: &str = "became leader";
/// The log line of a process that found another leader.
const STANDING_BY: &str = "another replica leads";

/// A controller of the burst with leader election on, its Lease in the tenant's namespace (so
/// that deleting the namespace removes it).
pub fn candidate(burst: &Burst, name: &str) -> ControllerProcess {
    burst.start_controller(
        name,
        &[
            "--leader-elect",
            "true",
            "--leader-elect-resource-namespace",
            &burst.tenant.namespace,
        ],
    )
}

/// Waits until `controller` leads.
pub async fn wait_leading(controller: &ControllerProcess, timeout: Duration) {
    wait_for(
        &format!("{} to lead", controller.log_path.display()),
        timeout,
        || async { controller.logs().contains(BECAME_LEADER).then_some(()) },
    )
    .await;
}

/// Waits until `controller` stands by behind another leader, and checks that a standby is
/// ready (its caches are listed), writes nothing and says so in its metrics.
pub async fn wait_standing_by(controller: &ControllerProcess) {
    wait_for(
        &format!("{} to stand by", controller.log_path.display()),
        Duration::from_secs(30),
        || async { controller.logs().contains(STANDING_BY).then_some(()) },
    )
    .await;
    // Its caches list every ExternalSecret of the cluster: on a shared stack under load (a
    // scale run's thousands), that takes a while.
    wait_for(
        "the standby to be ready (caches listed)",
        Duration::from_secs(120),
        || async { (controller.probe_get("/readyz").await.0 == 200).then_some(()) },
    )
    .await;
    let (_, metrics) = controller.probe_get("/metrics").await;
    assert!(
        metrics.contains("secret_bridge_leader 0"),
        "a standby reports secret_bridge_leader 0:\n{metrics}"
    );
    assert!(
        !controller.logs().contains(BECAME_LEADER),
        "two leaders at once"
    );
}

/// When `controller` logged that it took the Lease.
pub fn led_at(controller: &ControllerProcess) -> Option<SystemTime> {
    controller
        .logs()
        .lines()
        .find(|line| line.contains(BECAME_LEADER))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|stamp| chrono::DateTime::parse_from_rfc3339(stamp).ok())
        .map(SystemTime::from)
}

/// Asserts that a standby wrote nothing before it led: no reconcile is logged before the
/// line that says it took the Lease.
pub fn assert_idle_until_leading(controller: &ControllerProcess) {
    let logs = controller.logs();
    let before = logs.split(BECAME_LEADER).next().unwrap_or_default();
    assert!(
        !before.contains(" reconciled"),
        "a standby reconciled before it held the Lease ({})",
        controller.log_path.display()
    );
}
