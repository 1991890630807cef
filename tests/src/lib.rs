//! Harness for the end-to-end tests and the demo: the local stack written by `scripts/stack up`
//! (a real kube-apiserver + etcd + controller-manager and the moto AWS emulator), clients for
//! both, the controller run as a real process, builders for the ESO resources, tenants, waits
//! for observable progress, and the deployment artefacts (Helm chart, CloudFormation, guides).
//!
//! A test that cannot find its stack fails with instructions; it never passes by skipping.

pub mod aws;
pub mod aws_proxy;
pub mod cleanup;
pub mod conformance;
pub mod controller;
pub mod deploy;
pub mod eso_crds;
pub mod faults;
pub mod kube_helpers;
pub mod manifest;
pub mod metrics;
pub mod stack;
pub mod tenant;
pub mod tutorial;
pub mod wait;

pub use controller::ControllerProcess;
pub use stack::Stack;
pub use tenant::Tenant;
pub use wait::wait_for;

use std::sync::atomic::{AtomicU32, Ordering};

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
