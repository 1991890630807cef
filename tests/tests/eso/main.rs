//! secret-bridge on External Secrets Operator's own CRDs (`tests/fixtures/eso-crds/`), as on a
//! cluster that runs ESO. The CRDs are cluster-wide and every other test uses ours, so each
//! case swaps them for ESO's only for its own run, restores ours even when it fails, and runs
//! alone ([`serial`]); cargo runs this binary after the others, not beside them.

mod schema;

use tokio::sync::{Mutex, MutexGuard};

/// Held by each case for its whole run. A tokio mutex is not poisoned by a failed case.
pub async fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::const_new(());
    SERIAL.lock().await
}
