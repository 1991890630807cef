//! Harness for the end-to-end tests and the demo: the local stack written by `scripts/stack up`
//! (a real kube-apiserver + etcd + controller-manager and the moto AWS emulator), clients for
//! both, the controller run as a real process, and small waiting helpers.
//!
//! A test that cannot find its stack fails with instructions; it never passes by skipping.

pub mod aws;
pub mod aws_proxy;
pub mod conformance;
pub mod controller;
pub mod deploy_steps;
pub mod kube_helpers;
pub mod stack;
pub mod tutorial;

pub use controller::ControllerProcess;
pub use stack::Stack;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A name unique to this test run, for resources that tests must not share.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!(
        "{prefix}-{:x}{:05x}{n}",
        std::process::id() % 0x1000,
        nanos >> 12
    )
}

/// Polls `probe` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
