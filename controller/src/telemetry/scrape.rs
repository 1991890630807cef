//! One `/metrics` response, streamed: the text is encoded on a blocking thread and goes to
//! the reader in chunks of about [`CHUNK`] as the reader takes them. A scrape holds its
//! snapshot and a few chunks, not its whole text (about 0.8 KiB per ExternalSecret with ESO's
//! series: 8 MiB at 10,000).
//!
//! Bounds, against a slow or hostile reader:
//! - at most [`CONCURRENT_SCRAPES`] encode at once; another scrape gets 503 at once;
//! - the encoding stops at [`DEADLINE`] (it waits on the reader, never holding a lock) and
//!   frees its thread and its place;
//! - a response whose text did not end (deadline, reader gone, an encoder error or panic) is
//!   cut off, so the reader sees a broken transfer, never a short text that looks whole (with
//!   HTTP/1.1's chunked transfer; OpenMetrics' `# EOF` tells it too);
//! - a reader that stops reading keeps what was already queued for it (two chunks and hyper's
//!   buffer) until its connection's lifetime ends (see `connections`).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tracing::{debug, warn};

/// Scrapes encoding at once.
pub const CONCURRENT_SCRAPES: usize = 4;
/// The text goes out in pieces of at most this size (or one longer write).
const CHUNK: usize = 64 * 1024;
/// How long a scrape may take, reader included (Prometheus's own timeout is 10 s by default).
pub const DEADLINE: Duration = Duration::from_secs(30);

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The response to one scrape: what `encode` writes, streamed. `encode` runs on a blocking
/// thread; its writes fail once the reader has gone or `deadline` has passed.
pub fn respond<F>(scrapes: &Arc<Semaphore>, deadline: Duration, encode: F) -> Response
where
    F: FnOnce(&mut ChunkedText) -> fmt::Result + Send + 'static,
{
    let Ok(permit) = scrapes.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many scrapes at once").into_response();
    };
    let (sender, receiver) = mpsc::channel(2);
    let runtime = tokio::runtime::Handle::current();
    let deadline = Instant::now() + deadline;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut out = ChunkedText {
            text: String::with_capacity(CHUNK),
            sender,
            runtime,
            deadline,
            stopped: None,
        };
        if encode(&mut out).and_then(|()| out.finish()).is_err() {
            match out.stopped {
                Some(reason) => debug!(reason, "a /metrics scrape was cut off"),
                None => warn!("a /metrics scrape was cut off: the encoder failed"),
            }
        }
    });
    let body = Body::from_stream(Chunks {
        receiver,
        ended: false,
    });
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

enum Piece {
    Text(Bytes),
    /// The text is whole.
    End,
}

/// Text that goes to a response in chunks.
pub struct ChunkedText {
    text: String,
    sender: mpsc::Sender<Piece>,
    runtime: tokio::runtime::Handle,
    deadline: Instant,
    /// Why writing failed.
    stopped: Option<&'static str>,
}

impl ChunkedText {
    fn send(&mut self, piece: Piece) -> fmt::Result {
        let sent = self.runtime.block_on(tokio::time::timeout_at(
            self.deadline,
            self.sender.send(piece),
        ));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => self.stop("the reader went away"),
            Err(_) => self.stop("the deadline passed"),
        }
    }

    fn stop(&mut self, reason: &'static str) -> fmt::Result {
        self.stopped = Some(reason);
        Err(fmt::Error)
    }

    fn send_text(&mut self) -> fmt::Result {
        let chunk = std::mem::replace(&mut self.text, String::with_capacity(CHUNK));
        self.send(Piece::Text(Bytes::from(chunk)))
    }

    fn finish(&mut self) -> fmt::Result {
        if !self.text.is_empty() {
            self.send_text()?;
        }
        self.send(Piece::End)
    }
}

impl fmt::Write for ChunkedText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if self.stopped.is_some() {
            return Err(fmt::Error);
        }
        // Sent before it would outgrow its room: a chunk never reallocates.
        if !self.text.is_empty() && self.text.len() + text.len() > CHUNK {
            self.send_text()?;
        }
        self.text.push_str(text);
        Ok(())
    }
}

/// The body: the chunks, then its end, or an error when the text stopped before its end.
struct Chunks {
    receiver: mpsc::Receiver<Piece>,
    ended: bool,
}

impl Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let next = match std::task::ready!(self.receiver.poll_recv(cx)) {
            Some(Piece::Text(chunk)) => return Poll::Ready(Some(Ok(chunk))),
            Some(Piece::End) => None,
            None => Some(Err(std::io::Error::other("the scrape was cut off"))),
        };
        self.ended = true;
        Poll::Ready(next)
    }
}

#[cfg(test)]
#[path = "scrape_tests.rs"]
mod tests;
