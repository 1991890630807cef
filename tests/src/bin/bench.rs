//! Cost and scale of the controller on the local stack, in one table.
//!
//! The controller (the release build beside this binary) reaches AWS through a counting proxy,
//! so every AWS call it makes is counted by operation. Event mode, in one run:
//! - **cold**: N ExternalSecrets (one SecretStore, one key each) exist before the controller
//!   starts; time until all their Secrets are written;
//! - **steady**: three resync intervals with no change; calls by operation;
//! - **events**: R rotations one at a time, each announced with its EventBridge event;
//!   event → Secret latency, the controller's own `secret_bridge_event_lag_seconds`;
//! - **burst**: B rotations announced at once, against the floor: the same B reads and B
//!   server-side-apply writes done by the bench itself, alternating, in the same run.
//!
//! Then the same N without a queue (polling only) for comparison, and the implied monthly bill
//! beside ESO's one GetSecretValue per ExternalSecret per interval. No secret value is printed.
//! Everything created is deleted at the end, also after a failure or Ctrl-C.
//!
//! Usage: `secret-bridge-bench [N] [R] [B] [INTERVAL] [--no-polling] [--steady-for=DURATION]
//! [-- CONTROLLER-ARGS]` (defaults 1000 20 200 20s; the steady phase watches three intervals
//! unless `--steady-for` says how long, to measure events at a long interval; arguments after
//! `--` go to the controller, e.g. `-- --concurrency 64`), after `scripts/stack up` and
//! `cargo build --release -p secret-bridge-controller -p secret-bridge-tests --bins`.

#[path = "../bench/fixture.rs"]
mod fixture;
#[path = "../bench/probe.rs"]
mod probe;
#[path = "../bench/report.rs"]
mod report;
#[path = "../bench/runs.rs"]
mod runs;
#[path = "../bench/watch.rs"]
mod watch;

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use secret_bridge_tests::Stack;
use secret_bridge_tests::kube_helpers::install_crds;

use crate::fixture::Cleanup;
use crate::runs::Settings;

fn settings() -> (Settings, bool) {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let controller_args = match args.iter().position(|a| a == "--") {
        Some(at) => args.split_off(at).split_off(1),
        None => Vec::new(),
    };
    let polling = !args.iter().any(|a| a == "--no-polling");
    let steady_for = args.iter().find_map(|a| {
        let text = a.strip_prefix("--steady-for=")?;
        Some(
            secret_bridge::duration::parse(text)
                .unwrap_or_else(|e| panic!("--steady-for {text:?}: {e}")),
        )
    });
    let mut positional = args.iter().filter(|a| !a.starts_with("--"));
    let mut number = |default: usize| {
        positional
            .next()
            .map(|a| a.parse().unwrap_or_else(|_| panic!("{a:?} is not a count")))
            .unwrap_or(default)
    };
    let (n, rotations, burst) = (number(1000), number(20), number(200));
    let interval_text = positional.next().cloned().unwrap_or_else(|| "20s".into());
    let interval = secret_bridge::duration::parse(&interval_text)
        .unwrap_or_else(|e| panic!("interval {interval_text:?}: {e}"));
    assert!(
        n > 0 && rotations > 0 && burst > 0,
        "N, R and B must be positive"
    );
    let settings = Settings {
        n,
        rotations,
        burst,
        interval,
        interval_text,
        controller_args,
        steady_for,
    };
    (settings, polling)
}

#[tokio::main]
async fn main() {
    let (settings, with_polling) = settings();
    let command: Vec<String> = std::env::args().collect();
    println!("command: {}", command.join(" "));
    println!(
        "secret-bridge bench: N={} ExternalSecrets, R={} rotations, B={} burst, refreshInterval {}{}",
        settings.n,
        settings.rotations,
        settings.burst,
        settings.interval_text,
        if with_polling {
            ", then polling only"
        } else {
            ""
        }
    );
    let stack = Stack::connect().await;
    install_crds(&stack.kube).await;
    let cleanup = Cleanup::default();
    let work = {
        let (stack, cleanup) = (stack.clone(), cleanup.clone());
        async move {
            let event = runs::event_run(&stack, &cleanup, &settings).await;
            // Each run's resources go before the next starts: moto slows down as it fills.
            cleanup.run(&stack).await;
            let polling = if with_polling {
                Some(runs::polling_run(&stack, &cleanup, &settings).await)
            } else {
                None
            };
            report::print(&settings, &event, polling.as_ref());
        }
    };
    // A panic comes back here as an error, so that the cleanup still runs. (Not a spawned
    // task: applying YAML holds a non-Send parser across an await.)
    let outcome = tokio::select! {
        outcome = AssertUnwindSafe(work).catch_unwind() => outcome,
        _ = tokio::signal::ctrl_c() => {
            // The work is dropped here, and with it the controller process.
            println!("interrupted");
            cleanup.run(&stack).await;
            std::process::exit(130);
        }
    };
    cleanup.run(&stack).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
