//! The fan-out Lambda's entry point (the `bootstrap` of a `provided.al2023` function).

use anyhow::Context as _;
use lambda_runtime::{LambdaEvent, service_fn};
use secret_bridge_lambda::aws::{SecretsManagerTags, SqsSender};
use secret_bridge_lambda::config;
use secret_bridge_lambda::handler::FanOut;
use serde_json::Value;
use tracing::{error, info};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let router = config::router_from_env().inspect_err(|e| {
        error!(error = %e, "invalid configuration; the function cannot start");
    })?;
    let sdk = secret_bridge::aws::base_config().await;
    let sender = SqsSender::new(&sdk, &router);
    let fan_out = FanOut::new(router, sender, SecretsManagerTags::new(sdk));
    info!(
        routes = fan_out.router().routes().len(),
        tag_routes = fan_out.router().uses_tags(),
        "secret-bridge fan-out ready"
    );
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let fan_out = &fan_out;
        async move {
            fan_out
                .handle(event.payload, &event.context.request_id)
                .await
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
    .context("the Lambda runtime stopped")
}

/// JSON lines on stdout (CloudWatch Logs); the level from `RUST_LOG`, `info` by default.
fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .init();
}
