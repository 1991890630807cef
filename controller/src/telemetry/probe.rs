//! The probe and metrics endpoint: `/healthz` (the process serves and no loop it depends on
//! has stalled or died, see [`Health`]), `/readyz` (every cache is listed), `/metrics`
//! (Prometheus text format, streamed: see [`metrics_text`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::cache::Caches;
use crate::telemetry::eso::{Inventory, Served};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

#[derive(Clone)]
struct Probe {
    caches: Caches,
    health: Health,
    metrics: Arc<Metrics>,
    served: Served,
    /// Scrapes under way at most ([`CONCURRENT_SCRAPES`]).
    scrapes: Arc<Semaphore>,
}

/// Scrapes served at once; another one gets 503 at once. Each holds a snapshot of names and
/// a thread until its reader has it all.
const CONCURRENT_SCRAPES: usize = 4;
/// A scrape's text goes out in pieces of about this size.
const SCRAPE_CHUNK: usize = 64 * 1024;
/// A reader that has not taken the whole text after this long is cut off (Prometheus's own
/// scrape timeout is 10 s by default).
const SCRAPE_DEADLINE: Duration = Duration::from_secs(60);

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
            scrapes: Arc::new(Semaphore::new(CONCURRENT_SCRAPES)),
        });
    let address = listener.local_addr()?;
    tracing::info!(%address, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
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

/// The text is encoded on a blocking thread and handed to the response in chunks of
/// [`SCRAPE_CHUNK`] as the reader takes them, so a scrape holds a snapshot of names and a
/// chunk or two, not its whole text (8 MiB at 10,000 ExternalSecrets).
async fn metrics_text(State(probe): State<Probe>) -> Response {
    let Ok(permit) = probe.scrapes.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many scrapes at once").into_response();
    };
    let (sender, mut receiver) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let inventory = probe.served.inventory(&probe.caches);
        let deadline = Instant::now() + SCRAPE_DEADLINE;
        // A reader that went away or took too long has nothing to be told.
        let _ = send_text(&probe.metrics, inventory, sender, deadline);
    });
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Encodes the text into `sender` in chunks; on a blocking thread of the runtime. Fails once
/// the reader has gone or `deadline` has passed, which ends the encoding.
fn send_text(
    metrics: &Metrics,
    inventory: Inventory,
    sender: mpsc::Sender<Result<Bytes, fmt::Error>>,
    deadline: Instant,
) -> fmt::Result {
    let mut out = ChunkedText {
        text: String::with_capacity(SCRAPE_CHUNK),
        sender,
        runtime: tokio::runtime::Handle::current(),
        deadline,
    };
    metrics.encode_to(inventory, &mut out)?;
    out.send()
}

/// Text that goes to a response's body in chunks.
struct ChunkedText {
    text: String,
    sender: mpsc::Sender<Result<Bytes, fmt::Error>>,
    runtime: tokio::runtime::Handle,
    deadline: Instant,
}

impl ChunkedText {
    fn send(&mut self) -> fmt::Result {
        let chunk = std::mem::replace(&mut self.text, String::with_capacity(SCRAPE_CHUNK));
        let sent = self.runtime.block_on(tokio::time::timeout_at(
            self.deadline,
            self.sender.send(Ok(Bytes::from(chunk))),
        ));
        match sent {
            Ok(Ok(())) => Ok(()),
            _ => Err(fmt::Error),
        }
    }
}

impl fmt::Write for ChunkedText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.text.push_str(text);
        if self.text.len() >= SCRAPE_CHUNK {
            self.send()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::runtime::reflector::{ObjectRef, store};

    use super::*;
    use crate::api::ExternalSecret;
    use crate::telemetry::eso::ObjectStatus;

    /// Metrics that have reconciled `count` ExternalSecrets, and the inventory that shows them.
    fn reconciled(count: usize) -> (Arc<Metrics>, Inventory) {
        let metrics = Metrics::default();
        let live = store::Writer::<ExternalSecret>::default().as_reader();
        let mut inventory = Inventory::default();
        for i in 0..count {
            let name = format!("app-{i}");
            let object = ObjectRef::new(&name).within("team");
            metrics.external_secret_reconciled(&object, &live, None, Duration::from_millis(1));
            inventory.external_secrets.push(ObjectStatus {
                namespace: "team".into(),
                name,
                ready: Some("True".into()),
            });
        }
        (Arc::new(metrics), inventory)
    }

    fn encode_in_background(
        metrics: &Arc<Metrics>,
        inventory: Inventory,
        deadline: Instant,
    ) -> (
        mpsc::Receiver<Result<Bytes, fmt::Error>>,
        tokio::task::JoinHandle<fmt::Result>,
    ) {
        let (sender, receiver) = mpsc::channel(2);
        let metrics = metrics.clone();
        let encoding =
            tokio::task::spawn_blocking(move || send_text(&metrics, inventory, sender, deadline));
        (receiver, encoding)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrape_goes_out_in_chunks_that_make_up_the_whole_text() {
        let (metrics, inventory) = reconciled(1000);
        let whole = metrics.encode(inventory.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut receiver, encoding) = encode_in_background(&metrics, inventory, deadline);
        let mut chunks = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            chunks.push(chunk.expect("a chunk"));
        }
        encoding.await.unwrap().expect("encoded");
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        assert!(
            chunks.iter().all(|chunk| chunk.len() < 2 * SCRAPE_CHUNK),
            "a chunk of {} bytes",
            chunks.iter().map(Bytes::len).max().unwrap_or(0)
        );
        let streamed = String::from_utf8(chunks.concat()).unwrap();
        // The process's own series (its memory, CPU) change between two scrapes.
        let steady = |text: &str| {
            text.lines()
                .filter(|line| !line.starts_with("process_"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(
            steady(&streamed) == steady(&whole),
            "streamed {} bytes, whole {} bytes",
            streamed.len(),
            whole.len()
        );
        assert!(whole.ends_with("# EOF\n"));
        assert!(
            whole.contains(r#"externalsecret_sync_calls_total{name="app-999",namespace="team"} 1"#)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_that_goes_away_ends_the_encoding() {
        let (metrics, inventory) = reconciled(1000);
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut receiver, encoding) = encode_in_background(&metrics, inventory, deadline);
        receiver.recv().await.expect("a first chunk").expect("text");
        drop(receiver);
        let ended = tokio::time::timeout(Duration::from_secs(10), encoding).await;
        assert_eq!(ended.expect("the encoding ends").unwrap(), Err(fmt::Error));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_that_stops_reading_is_cut_off_at_the_deadline() {
        let (metrics, inventory) = reconciled(1000);
        let deadline = Instant::now() + Duration::from_millis(300);
        let (receiver, encoding) = encode_in_background(&metrics, inventory, deadline);
        let ended = tokio::time::timeout(Duration::from_secs(10), encoding).await;
        assert_eq!(ended.expect("the encoding ends").unwrap(), Err(fmt::Error));
        assert!(Instant::now() >= deadline);
        drop(receiver);
    }
}
