//! Fault injection on the real local stack: "nothing lost, nothing leaked". Each case disturbs
//! what other tests share (it kills processes, the kube-apiserver among them), so the cases of
//! this binary run one at a time ([`serial`]); cargo runs test binaries one after another.
//! Each prints what it survived.

mod aws_outage;
mod burst;
mod hostile_input;
mod hostile_messages;
mod kill_apiserver;
mod kill_controller;

use tokio::sync::{Mutex, MutexGuard};

/// Held by each case for its whole run. A tokio mutex is not poisoned by a failed case.
pub async fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::const_new(());
    SERIAL.lock().await
}
