use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout};

use super::{Limits, serve};

/// Longer than any limit below: a test that waits this long has failed.
const PATIENCE: Duration = Duration::from_secs(5);

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" })).route(
        "/endless",
        get(|| async {
            Body::from_stream(futures::stream::pending::<Result<Vec<u8>, std::io::Error>>())
        }),
    )
}

/// A server with `limits`, its address, and what stops it.
async fn start(
    limits: Limits,
) -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app(), limits, async move {
        let _ = stopped.await;
    }));
    (address, stop, server)
}

fn limits(connections: usize, headers_ms: u64, lifetime_ms: u64) -> Limits {
    Limits {
        connections,
        headers: Duration::from_millis(headers_ms),
        lifetime: Duration::from_millis(lifetime_ms),
    }
}

/// Reads until the server closes the connection; returns what was read.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut text = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match timeout(PATIENCE, stream.read(&mut buffer)).await {
            Err(_) => panic!(
                "the server kept the connection open: {}",
                String::from_utf8_lossy(&text)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&text).into_owned(),
            Ok(Ok(n)) => text.extend_from_slice(&buffer[..n]),
        }
    }
}

async fn request(stream: &mut TcpStream, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nhost: probe\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_cut_off_after_the_header_timeout() {
    let (address, _stop, _server) = start(limits(4, 200, 60_000)).await;
    let mut silent = TcpStream::connect(address).await.unwrap();
    let opened = Instant::now();
    read_to_close(&mut silent).await;
    assert!(
        opened.elapsed() >= Duration::from_millis(150),
        "closed before the timeout"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_when_idle_for_the_header_timeout() {
    let (address, _stop, _server) = start(limits(4, 200, 60_000)).await;
    let mut client = TcpStream::connect(address).await.unwrap();
    request(&mut client, "/").await;
    let answer = read_to_close(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
}

#[tokio::test]
async fn a_connection_ends_at_its_lifetime_whatever_it_does() {
    let (address, _stop, _server) = start(limits(4, 60_000, 300)).await;
    let mut reader = TcpStream::connect(address).await.unwrap();
    request(&mut reader, "/endless").await;
    let opened = Instant::now();
    let answer = read_to_close(&mut reader).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        opened.elapsed() >= Duration::from_millis(250),
        "closed before its lifetime"
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_place() {
    let (address, _stop, _server) = start(limits(1, 60_000, 60_000)).await;
    // The only place, held by a client that sends nothing.
    let holder = TcpStream::connect(address).await.unwrap();
    let mut waiting = TcpStream::connect(address).await.unwrap();
    request(&mut waiting, "/").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut buffer = [0u8; 64];
    assert!(
        matches!(waiting.try_read(&mut buffer), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "served beyond the limit"
    );
    drop(holder);
    let n = timeout(PATIENCE, waiting.read(&mut buffer))
        .await
        .expect("served once the place was free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn serving_stops_on_shutdown() {
    let (_address, stop, server) = start(Limits::default()).await;
    stop.send(()).unwrap();
    timeout(PATIENCE, server)
        .await
        .expect("stopped")
        .unwrap()
        .unwrap();
}
