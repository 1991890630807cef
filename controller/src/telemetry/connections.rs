//! The probe port's connections, bounded: anyone who can reach the port (kubelet,
//! Prometheus, any pod without a NetworkPolicy) gets at most [`Limits::connections`]
//! connections served at once, [`Limits::headers`] to send a request's headers, and
//! [`Limits::lifetime`] per connection, whatever it does. `axum::serve` has none of these:
//! a client that opened connections and sent nothing, or stopped reading a response, kept
//! them, and their memory, for as long as it liked.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::warn;

/// How the probe port bounds its clients.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub connections: usize,
    /// How long a client has to send a request's headers (also while a kept-alive connection
    /// waits for its next request).
    pub headers: Duration,
    /// How long a connection lives: kept-alive scrapes reconnect now and then; a reader that
    /// stopped reading is cut off. A scrape's own deadline is shorter (30 s).
    pub lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 64,
            headers: Duration::from_secs(10),
            lifetime: Duration::from_secs(60),
        }
    }
}

/// How long accepting pauses after a failed accept (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` within `limits` until `shutdown` resolves. Connections under
/// way then end with the process.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let places = Arc::new(Semaphore::new(limits.connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let place = tokio::select! {
            place = places.clone().acquire_owned() => place.expect("the semaphore is never closed"),
            () = &mut shutdown => return Ok(()),
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    warn!(%error, "probe port: accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.headers)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            // Errors here are the client's (it went away, it was too slow): nothing to report.
            let _ = tokio::time::timeout(limits.lifetime, connection).await;
            drop(place);
        });
    }
}

#[cfg(test)]
#[path = "connections_tests.rs"]
mod tests;
