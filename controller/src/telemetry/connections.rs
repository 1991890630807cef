//! The probe port's connections, bounded: anyone who can reach the port (kubelet,
//! Prometheus, any pod a NetworkPolicy does not keep out) gets at most
//! [`Limits::connections`] connections served at once, [`Limits::headers`] to send a
//! request's headers (also while a kept-alive connection waits for its next request), and
//! [`Limits::lifetime`] per connection: then the response under way may finish within
//! [`Limits::grace`], and the connection closes. `axum::serve` has none of these: a client
//! that opened connections and sent nothing, or stopped reading a response, kept them and
//! their memory for as long as it liked.
//!
//! A client that keeps every place taken (opening silent connections again as the header
//! timeout closes them) still delays the probes behind it in the listen backlog: only a
//! NetworkPolicy that admits kubelet and the scraper keeps others off the port.

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
    /// Connections served at once; further ones wait in the listen backlog. An idle
    /// connection holds a few KiB.
    pub connections: usize,
    /// How long a client has to send a request's headers.
    pub headers: Duration,
    /// How long a connection takes new requests: kept-alive scrapes reconnect now and then.
    pub lifetime: Duration,
    /// How long the response under way at the end of the lifetime may still take (a
    /// scrape's own deadline is 30 s); then the connection is dropped, reader or not.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 256,
            headers: Duration::from_secs(5),
            lifetime: Duration::from_secs(60),
            grace: Duration::from_secs(35),
        }
    }
}

/// How long accepting pauses after a failed accept that is not the client's (out of file
/// descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

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
                // One connection's trouble (reset before it was accepted): the next one.
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    warn!(%error, "probe port: accept failed; retrying in 1 s");
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
            let mut connection = std::pin::pin!(connection);
            if tokio::time::timeout(limits.lifetime, connection.as_mut())
                .await
                .is_err()
            {
                // No new request; the response under way may finish.
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(limits.grace, connection).await;
            }
            drop(place);
        });
    }
}

fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
#[path = "connections_tests.rs"]
mod tests;
