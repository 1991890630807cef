use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use futures::FutureExt;
use futures::future::BoxFuture;
use secret_bridge_controller::aws::credentials::ClientFactory;
use secret_bridge_controller::cache::Caches;
use secret_bridge_controller::cluster_external_secret::{self, ClusterExternalSecretController};
use secret_bridge_controller::events::consumer::{Consumer, Refresher};
use secret_bridge_controller::events::eso_trigger::EsoTrigger;
use secret_bridge_controller::external_secret::controller::{
    Context, ExternalSecretController, Settings,
};
use secret_bridge_controller::leader::ElectionArgs;
use secret_bridge_controller::rollout::Rollouts;
use secret_bridge_controller::store::status as store_status;
use secret_bridge_controller::telemetry::eso::{EXTERNAL_SECRET_CONTROLLER, Served};
use secret_bridge_controller::telemetry::health::Health;
use secret_bridge_controller::telemetry::metrics::Metrics;
use secret_bridge_controller::telemetry::{self, probe as http};
use tokio::sync::watch;
use tracing::{info, warn};

/// Syncs external-secrets.io ExternalSecrets from AWS Secrets Manager into Kubernetes Secrets,
/// refreshed by Secrets Manager events from SQS and by periodic resyncs.
#[derive(Parser, Debug)]
#[command(version = secret_bridge_controller::VERSION)]
struct Args {
    /// SQS queue with Secrets Manager events (EventBridge); without it, only periodic resyncs.
    #[arg(long, env = "SQS_QUEUE_URL")]
    queue_url: Option<String>,

    /// Serve only stores whose `spec.controller` is this class (default: stores without one).
    #[arg(long, env = "CONTROLLER_CLASS")]
    controller_class: Option<String>,

    /// Serve ClusterExternalSecrets (stamp ExternalSecrets into the namespaces they select).
    /// Default: only without `--controller-class`, since a secret-bridge running beside ESO
    /// must leave them to ESO, which serves every ClusterExternalSecret (they have no class).
    #[arg(long, env = "CLUSTER_EXTERNAL_SECRETS", action = clap::ArgAction::Set)]
    cluster_external_secrets: Option<bool>,

    /// Let a namespaced SecretStore without `auth` (or with only `role`) use this controller's
    /// own AWS identity, as ESO does. `false` (the Helm chart's default) refuses such stores:
    /// anyone who may create a SecretStore in their namespace could otherwise read whatever
    /// the controller can.
    #[arg(long, env = "NAMESPACED_STORE_AMBIENT_CREDENTIALS", default_value_t = true, action = clap::ArgAction::Set)]
    namespaced_store_ambient_credentials: bool,

    /// ESO's flood gate: while a store is not `Ready`, its ExternalSecrets are not synced and
    /// say so (`SecretSyncedError`, `SecretStore "x" is not ready: ...`). Off by default, unlike
    /// ESO: our store check also calls STS `GetCallerIdentity`, so a cluster that reaches
    /// Secrets Manager but not STS would have every sync blocked.
    #[arg(long, env = "FLOOD_GATE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    flood_gate: bool,

    /// The shortest `refreshInterval` honoured: an ExternalSecret asking for less is resynced
    /// at this interval and says so in its status (so that a tenant's `1ms` cannot keep the
    /// controller and its AWS quota busy).
    #[arg(long, env = "MIN_REFRESH_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    min_refresh_interval: Duration,

    /// Reconciles running at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,

    /// How long an event waits for its reconciles before the message is left for a retry.
    #[arg(long, env = "EVENT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    event_timeout: Duration,

    /// Address of the /healthz, /readyz and /metrics endpoint (port 0: any free port).
    #[arg(long, env = "PROBE_ADDR", default_value = "0.0.0.0:8080")]
    probe_addr: std::net::SocketAddr,

    /// `sync` writes Secrets; `eso-trigger` only sets ESO's force-sync annotation on events.
    #[arg(long, env = "MODE", value_enum, default_value_t = Mode::Sync)]
    mode: Mode,

    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(flatten)]
    restarts: RestartArgs,

    #[command(flatten)]
    election: ElectionArgs,
}

/// Restarting the workloads that read a Secret whose data changed (sync mode only).
#[derive(clap::Args, Debug)]
struct RestartArgs {
    /// Restart the Deployments, StatefulSets and DaemonSets that opted in (Reloader's
    /// annotations, or `secret-bridge.io/restart` on the ExternalSecret) when a Secret's data
    /// changes. Off by default in the binary: it needs RBAC to watch and patch those kinds,
    /// which the Helm chart grants when its `restartWorkloads.enabled` (on by default) is set.
    #[arg(long, env = "RESTART_WORKLOADS", default_value_t = false, action = clap::ArgAction::Set)]
    restart_workloads: bool,

    /// A workload is restarted at most once per this interval; a later change waits for it.
    #[arg(long, env = "RESTART_MIN_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    restart_min_interval: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Sync,
    EsoTrigger,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    secret_bridge::duration::parse(text).map_err(|e| e.to_string())
}

/// Threads for blocking work at most (DNS lookups, template rendering, /metrics scrapes: at
/// most four, see `telemetry::scrape`), beside the workers.
const BLOCKING_THREADS: usize = 16;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tune_malloc();
    init_tracing(args.log_format);
    rustls_ring_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()?
        .block_on(args.run())
}

/// glibc, tuned for a long-running process whose memory follows its cluster:
/// - glibc gives each thread that allocates at once its own heap (up to eight per core), and
///   memory freed in one is not reused by another: with 10,000 ExternalSecrets the controller
///   held 190 MiB in 17 of them. Two are enough for two workers.
/// - glibc raises its threshold for serving a large block from `mmap` to the largest block
///   freed so far, up to 32 MiB. After one re-list of 10,000 ExternalSecrets, every later
///   block of that size comes from the heap and stays there, fragmented, after it is freed.
///   A fixed 128 KiB threshold hands large blocks back to the kernel when they are freed.
///
/// jemalloc (tikv-jemallocator) in place of glibc so tuned was measured at 10,000
/// ExternalSecrets and not taken: with its defaults the RSS after the cold start was 4.7 MiB
/// higher; with background purging and two arenas 0.8 MiB lower (2.7 MiB lower at rest), which
/// does not pay for a second allocator built from C.
///
/// The `MALLOC_ARENA_MAX` and `MALLOC_MMAP_THRESHOLD_` environment variables, when set, still
/// decide.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread.
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
            }
        }
    }
}

impl Args {
    /// Wires the caches, controllers, consumer and probe endpoint, and runs them until
    /// SIGTERM or Ctrl-C.
    async fn run(self) -> anyhow::Result<()> {
        if self.mode == Mode::EsoTrigger && self.queue_url.is_none() {
            anyhow::bail!(
                "--mode=eso-trigger needs --queue-url (SQS_QUEUE_URL): it only acts on events"
            );
        }
        let client = kube::Client::try_default().await?;
        let base = secret_bridge::aws::base_config().await;
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            info!("shutting down");
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let metrics = Arc::new(Metrics::default());
        metrics
            .eso
            .set_max_concurrent_reconciles(EXTERNAL_SECRET_CONTROLLER, self.concurrency);
        let served = match self.mode {
            Mode::Sync => Served::Class(self.controller_class.clone()),
            Mode::EsoTrigger => Served::Nothing,
        };
        let health = Health::default();
        let listener = tokio::net::TcpListener::bind(self.probe_addr)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot listen on {} (--probe-addr): {e}", self.probe_addr)
            })?;
        let serve_cluster_secrets = self
            .cluster_external_secrets
            .unwrap_or(self.controller_class.is_none());
        info!(
            mode = ?self.mode,
            queue = self.queue_url.as_deref().unwrap_or("none (periodic resync only)"),
            controller_class = self.controller_class.as_deref().unwrap_or(""),
            cluster_external_secrets = serve_cluster_secrets,
            leader_elect = self.election.enabled,
            "starting secret-bridge controller"
        );
        let (caches, subscriptions, watches) = Caches::new(&client, self.mode == Mode::Sync);
        tokio::spawn(watches);
        let probe = tokio::spawn(http::serve(
            listener,
            caches.clone(),
            health.clone(),
            metrics.clone(),
            served,
            stopped(stop_rx.clone()),
        ));
        // Leader election: a standby serves its probes and keeps its caches warm, but runs
        // no controller and no queue consumer until it holds the Lease.
        let elector = (self.election)
            .elector(&client, metrics.leader.clone())
            .map_err(anyhow::Error::msg)?;
        let (mut subscriptions, leadership) = match elector {
            None => {
                metrics.leader.set(1);
                (subscriptions, None)
            }
            Some(elector) => {
                let acquired = elector.acquire(stopped(stop_rx.clone()));
                match subscriptions.hold_until(acquired).await {
                    (_, None) => return Ok(()),
                    (subscriptions, leadership) => (subscriptions, leadership),
                }
            }
        };
        let recorder = telemetry::recorder(&client);
        let aws = ClientFactory::new(base.clone(), client.clone())
            .counting_calls_in(metrics.aws_calls.clone());
        let mut tasks: Vec<BoxFuture<'static, ()>> = Vec::new();

        let refresher = match self.mode {
            Mode::Sync => {
                let mut take = subscriptions.take();
                let controller = ExternalSecretController::new(
                    &client,
                    take.external_secrets(),
                    self.concurrency,
                );
                tasks.push(
                    store_status::run(
                        store_status::StoreStatusContext::new(
                            client.clone(),
                            aws.clone(),
                            caches.clone(),
                            self.controller_class.clone(),
                            recorder.clone(),
                            self.namespaced_store_ambient_credentials,
                        )
                        .reconciling(controller.triggers()),
                        take.secret_stores(),
                        take.cluster_secret_stores(),
                        stopped(stop_rx.clone()),
                    )
                    .boxed(),
                );
                let rollouts = if self.restarts.restart_workloads {
                    let (rollouts, run) = Rollouts::start(
                        client.clone(),
                        recorder.clone(),
                        metrics.rollout.clone(),
                        self.restarts.restart_min_interval,
                    );
                    tasks.push(until(run, stopped(stop_rx.clone())));
                    rollouts
                } else {
                    Rollouts::disabled()
                };
                let context = Arc::new(
                    Context::new(
                        client.clone(),
                        aws.clone(),
                        recorder.clone(),
                        &controller,
                        metrics.clone(),
                        caches.clone(),
                        Settings {
                            controller_class: self.controller_class.clone(),
                            namespaced_ambient_credentials: self
                                .namespaced_store_ambient_credentials,
                            flood_gate: self.flood_gate,
                            min_refresh_interval: self.min_refresh_interval,
                        },
                    )
                    .with_rollouts(rollouts),
                );
                let refresher = Refresher::Reconcile(controller.triggers());
                tasks.push(controller.run(context, stopped(stop_rx.clone())).boxed());
                if serve_cluster_secrets {
                    let cluster = ClusterExternalSecretController::new(
                        &client,
                        take.namespaces(),
                        take.cluster_external_secret_owners(),
                    );
                    metrics.eso.watch_cluster_external_secrets(cluster.store());
                    let context = Arc::new(cluster_external_secret::Context {
                        client: client.clone(),
                        caches: caches.clone(),
                    });
                    tasks.push(cluster.run(context, stopped(stop_rx.clone())).boxed());
                }
                refresher
            }
            Mode::EsoTrigger => {
                if self.restarts.restart_workloads {
                    warn!(
                        "--restart-workloads is ignored with --mode=eso-trigger: ESO writes the Secrets"
                    );
                }
                Refresher::EsoForceSync(Arc::new(EsoTrigger::new(client.clone(), recorder.clone())))
            }
        };
        // Subscriptions nobody took would hold their watches back.
        drop(subscriptions);
        if let Some(queue_url) = self.queue_url.clone() {
            let consumer = Consumer {
                sqs: aws_sdk_sqs::Client::new(&base),
                queue_url,
                caches: caches.clone(),
                refresher,
                reconcile_timeout: self.event_timeout,
                metrics: metrics.clone(),
                health: health.clone(),
                concurrency: self.concurrency.into(),
            };
            tasks.push(consumer.run(stopped(stop_rx.clone())).boxed());
        }
        futures::future::join_all(tasks).await;
        // Only once every writer has stopped: then a standby may start at once.
        if let Some(leadership) = leadership {
            leadership.release().await;
        }
        if probe.is_finished() {
            // Say why the endpoint stopped, if it failed.
            probe.await??;
        }
        Ok(())
    }
}

/// Runs `task` until `stop` resolves.
fn until(
    task: impl Future<Output = ()> + Send + 'static,
    stop: impl Future<Output = ()> + Send + 'static,
) -> BoxFuture<'static, ()> {
    async move {
        tokio::select! {
            () = task => {}
            () = stop => {}
        }
    }
    .boxed()
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube_runtime=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.event_format(telemetry::logs::EsoJson).init(),
    }
}

/// kube and the AWS client both use rustls with ring; make it the process default explicitly.
fn rustls_ring_default() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn args_are_consistent() {
        super::Args::command().debug_assert();
    }
}
