//! The probe and metrics endpoint: `/healthz` (the process serves), `/readyz` (the
//! ExternalSecret cache is loaded), `/metrics` (Prometheus text format).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kube::runtime::reflector::Store;

use crate::api::ExternalSecret;
use crate::metrics::Metrics;

#[derive(Clone)]
struct Probe {
    store: Store<ExternalSecret>,
    metrics: Arc<Metrics>,
}

/// Serves on `listener` (bound by the caller, so a taken address fails at start-up).
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store<ExternalSecret>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(Probe { store, metrics });
    let address = listener.local_addr()?;
    tracing::info!(%address, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn ready(State(probe): State<Probe>) -> impl IntoResponse {
    // A store that has not listed yet answers after the short timeout: not ready.
    let listed = tokio::time::timeout(
        std::time::Duration::from_millis(10),
        probe.store.wait_until_ready(),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if listed {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "ExternalSecrets not listed yet",
        )
    }
}

async fn metrics_text(State(probe): State<Probe>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        probe.metrics.encode(),
    )
}
