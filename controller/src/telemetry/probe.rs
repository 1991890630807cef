//! The probe and metrics endpoint: `/healthz` (the process serves and no loop it depends on
//! has stalled or died, see [`Health`]), `/readyz` (every cache is listed), `/metrics`
//! (Prometheus text format, streamed by [`scrape`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Semaphore;

use crate::cache::Caches;
use crate::telemetry::eso::Served;
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::{connections, scrape};

#[derive(Clone)]
struct Probe {
    caches: Caches,
    health: Health,
    metrics: Arc<Metrics>,
    served: Served,
    /// Places for scrapes under way ([`scrape::CONCURRENT_SCRAPES`]).
    scrapes: Arc<Semaphore>,
}

/// Serves on `listener` (bound by the caller, so a taken address fails at start-up).
pub async fn serve(
    listener: tokio::net::TcpListener,
    caches: Caches,
    health: Health,
    metrics: Arc<Metrics>,
    served: Served,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(live))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(Probe {
            caches,
            health,
            metrics,
            served,
            scrapes: Arc::new(Semaphore::new(scrape::CONCURRENT_SCRAPES)),
        });
    let address = listener.local_addr()?;
    tracing::info!(%address, "serving /healthz, /readyz and /metrics");
    connections::serve(listener, app, connections::Limits::default(), shutdown).await
}

async fn ready(State(probe): State<Probe>) -> impl IntoResponse {
    if probe.caches.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not listed yet")
    }
}

async fn live(State(probe): State<Probe>) -> impl IntoResponse {
    match probe.health.check() {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(stalled) => (StatusCode::SERVICE_UNAVAILABLE, stalled),
    }
}

async fn metrics_text(State(probe): State<Probe>) -> Response {
    let scrapes = probe.scrapes.clone();
    scrape::respond(&scrapes, scrape::DEADLINE, move |out| {
        let inventory = probe.served.inventory(&probe.caches);
        probe.metrics.encode_to(inventory, out)
    })
}
