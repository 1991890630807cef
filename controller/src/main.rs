use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use futures::FutureExt;
use futures::future::BoxFuture;
use secret_bridge_controller::cluster_external_secret::{self, ClusterExternalSecretController};
use secret_bridge_controller::controller::{
    Context, ExternalSecretController, external_secret_cache, run_cache_only,
};
use secret_bridge_controller::credentials::{self, ClientFactory};
use secret_bridge_controller::eso_trigger::EsoTrigger;
use secret_bridge_controller::http;
use secret_bridge_controller::index::ExternalSecretIndex;
use secret_bridge_controller::metrics::Metrics;
use secret_bridge_controller::queue::{Consumer, Refresher};
use secret_bridge_controller::store_status;
use secret_bridge_controller::stores::StoreCache;
use tokio::sync::watch;
use tracing::info;

/// Syncs external-secrets.io ExternalSecrets from AWS Secrets Manager into Kubernetes Secrets,
/// refreshed by Secrets Manager events from SQS and by periodic resyncs.
#[derive(Parser, Debug)]
#[command(version)]
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

    /// Reconciles running at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 32)]
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_format);
    rustls_ring_default();

    let client = kube::Client::try_default().await?;
    let base = credentials::base_config().await;
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
    let listener = tokio::net::TcpListener::bind(args.probe_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (--probe-addr): {e}", args.probe_addr))?;
    info!(
        mode = ?args.mode,
        queue = args.queue_url.as_deref().unwrap_or("none (periodic resync only)"),
        controller_class = args.controller_class.as_deref().unwrap_or(""),
        cluster_external_secrets = args.cluster_external_secrets.unwrap_or(args.controller_class.is_none()),
        "starting secret-bridge controller"
    );
    let (stores, run_stores) = StoreCache::new(&client);
    tokio::spawn(run_stores);
    let consumer = |store, index, refresher| {
        args.queue_url.clone().map(|queue_url| Consumer {
            sqs: aws_sdk_sqs::Client::new(&base),
            queue_url,
            store,
            index,
            stores: stores.clone(),
            refresher,
            reconcile_timeout: args.event_timeout,
            metrics: metrics.clone(),
        })
    };
    let (store, consumer, main_task): (_, _, BoxFuture<'static, ()>) = match args.mode {
        Mode::Sync => {
            tokio::spawn(store_status::run(
                store_status::StoreStatusContext::new(
                    client.clone(),
                    ClientFactory::new(base.clone(), client.clone()),
                    stores.clone(),
                    args.controller_class.clone(),
                ),
                stopped(stop_rx.clone()),
            ));
            let controller = ExternalSecretController::new(&client, args.concurrency);
            let context = Arc::new(Context::new(
                client.clone(),
                ClientFactory::new(base.clone(), client.clone()),
                controller.triggers(),
                args.controller_class.clone(),
                metrics.clone(),
                stores.clone(),
            ));
            let consumer = consumer(
                controller.store(),
                controller.index(),
                Refresher::Reconcile(controller.triggers()),
            );
            let serve_cluster_secrets = args
                .cluster_external_secrets
                .unwrap_or(args.controller_class.is_none());
            let cluster_secrets = serve_cluster_secrets.then(|| {
                let cluster = ClusterExternalSecretController::new(&client);
                let context = Arc::new(cluster_external_secret::Context {
                    client: client.clone(),
                    external_secrets: controller.store(),
                    namespaces: cluster.namespaces(),
                });
                tokio::spawn(cluster.run(context, stopped(stop_rx.clone())))
            });
            let store = controller.store();
            let run = controller.run(context, stopped(stop_rx.clone()));
            let main_task = async move {
                run.await;
                if let Some(task) = cluster_secrets {
                    let _ = task.await;
                }
            };
            (store, consumer, main_task.boxed())
        }
        Mode::EsoTrigger => {
            if args.queue_url.is_none() {
                anyhow::bail!(
                    "--mode=eso-trigger needs --queue-url (SQS_QUEUE_URL): it only acts on events"
                );
            }
            let index = ExternalSecretIndex::default();
            let (store, stream) = external_secret_cache(&client, index.clone());
            let eso = Arc::new(EsoTrigger::new(client.clone()));
            let consumer = consumer(store.clone(), index, Refresher::EsoForceSync(eso));
            (
                store,
                consumer,
                run_cache_only(stream, stopped(stop_rx.clone())).boxed(),
            )
        }
    };
    let probe = tokio::spawn(http::serve(
        listener,
        store,
        metrics.clone(),
        stopped(stop_rx.clone()),
    ));
    let consumer_task = consumer.map(|c| tokio::spawn(c.run(stopped(stop_rx))));
    main_task.await;
    if let Some(task) = consumer_task {
        task.await?;
    }
    if probe.is_finished() {
        // Say why the endpoint stopped, if it failed.
        probe.await??;
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube_runtime=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
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
