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
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "done"
            }),
        )
        .route(
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

fn limits(connections: usize, headers_ms: u64, lifetime_ms: u64, grace_ms: u64) -> Limits {
    Limits {
        connections,
        headers: Duration::from_millis(headers_ms),
        lifetime: Duration::from_millis(lifetime_ms),
        grace: Duration::from_millis(grace_ms),
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
    let (address, _stop, _server) = start(limits(4, 200, 60_000, 60_000)).await;
    let opened = Instant::now();
    let mut silent = TcpStream::connect(address).await.unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");
    assert!(
        opened.elapsed() >= Duration::from_millis(200),
        "closed before the timeout"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_when_idle_for_the_header_timeout() {
    let (address, _stop, _server) = start(limits(4, 300, 60_000, 60_000)).await;
    let mut client = TcpStream::connect(address).await.unwrap();
    // Two requests on one connection: it is kept alive between them.
    request(&mut client, "/").await;
    let mut first = Vec::new();
    while !first.ends_with(b"ok") {
        let mut buffer = [0u8; 1024];
        let n = timeout(PATIENCE, client.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed after one request");
        first.extend_from_slice(&buffer[..n]);
    }
    request(&mut client, "/").await;
    let idle = Instant::now();
    let answer = read_to_close(&mut client).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
        "{answer}"
    );
    assert!(
        idle.elapsed() >= Duration::from_millis(300),
        "closed before the idle timeout"
    );
}

#[tokio::test]
async fn a_response_under_way_at_the_end_of_the_lifetime_gets_its_grace_then_is_cut() {
    let (address, _stop, _server) = start(limits(4, 60_000, 200, 300)).await;
    let opened = Instant::now();
    let mut reader = TcpStream::connect(address).await.unwrap();
    request(&mut reader, "/endless").await;
    let answer = read_to_close(&mut reader).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        opened.elapsed() >= Duration::from_millis(500),
        "cut before its lifetime and grace"
    );
}

#[tokio::test]
async fn a_response_that_ends_within_the_grace_is_whole_and_the_connection_closes() {
    let (address, _stop, _server) = start(limits(4, 60_000, 200, 5_000)).await;
    let mut client = TcpStream::connect(address).await.unwrap();
    request(&mut client, "/slow").await;
    let answer = read_to_close(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("done"), "cut off: {answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_place() {
    let (address, _stop, _server) = start(limits(1, 60_000, 60_000, 60_000)).await;
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
