use std::fmt::Write as _;
use std::sync::mpsc as std_mpsc;

use futures::StreamExt;

use super::*;

fn numbered(count: u64) -> String {
    (0..count).map(|i| format!("line {i}\n")).collect()
}

/// Writes numbered lines until writing fails, and says how it ended on `ended`.
fn endless(ended: std_mpsc::Sender<fmt::Result>) -> impl FnOnce(&mut ChunkedText) -> fmt::Result {
    move |out| {
        let written = (0u64..).try_for_each(|i| writeln!(out, "line {i}"));
        ended.send(written).expect("the test waits");
        written
    }
}

/// How `encode` ended, waited for off the runtime's workers.
async fn ended(ended: std_mpsc::Receiver<fmt::Result>) -> fmt::Result {
    tokio::task::spawn_blocking(move || ended.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the encoding ends")
}

async fn body_of(response: Response) -> Vec<Result<Bytes, String>> {
    let mut stream = response.into_body().into_data_stream();
    let mut pieces = Vec::new();
    while let Some(piece) = stream.next().await {
        pieces.push(piece.map_err(|e| e.to_string()));
    }
    pieces
}

async fn all_places_free(scrapes: &Semaphore) {
    let freed = async {
        while scrapes.available_permits() < CONCURRENT_SCRAPES {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), freed)
        .await
        .expect("every scrape gives its place back");
}

fn scrapes() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(CONCURRENT_SCRAPES))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_goes_out_whole_in_order_in_chunks_that_never_outgrow_their_room() {
    let scrapes = scrapes();
    let response = respond(&scrapes, DEADLINE, |out| {
        (0..20_000).try_for_each(|i| writeln!(out, "line {i}"))
    });
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    let chunks: Vec<Bytes> = body_of(response)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("a whole text");
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|chunk| chunk.len() <= CHUNK));
    assert!(chunks.concat() == numbered(20_000).into_bytes());
    all_places_free(&scrapes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_goes_away_ends_the_encoding_and_frees_its_place() {
    let scrapes = scrapes();
    let (sender, receiver) = std_mpsc::channel();
    let response = respond(&scrapes, DEADLINE, endless(sender));
    let mut body = response.into_body().into_data_stream();
    body.next().await.expect("a first chunk").expect("text");
    drop(body);
    assert_eq!(ended(receiver).await, Err(fmt::Error));
    all_places_free(&scrapes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_cut_off_at_the_deadline() {
    let scrapes = scrapes();
    let (sender, receiver) = std_mpsc::channel();
    let started = Instant::now();
    let deadline = Duration::from_millis(300);
    let response = respond(&scrapes, deadline, endless(sender));
    assert_eq!(ended(receiver).await, Err(fmt::Error));
    assert!(started.elapsed() >= deadline);
    all_places_free(&scrapes).await;
    // What was sent before the deadline is there, and then the cut: not a short text that
    // looks whole.
    let body = body_of(response).await;
    let (last, sent) = body.split_last().expect("a body");
    assert!(!sent.is_empty() && sent.iter().all(Result::is_ok));
    assert!(last.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_encoding_cuts_the_response_off_and_frees_its_place() {
    let scrapes = scrapes();
    let response = respond(&scrapes, DEADLINE, |out| {
        out.write_str("# HELP half\n")?;
        Err(fmt::Error)
    });
    let body = body_of(response).await;
    assert!(matches!(body.last(), Some(Err(_))), "{body:?}");
    all_places_free(&scrapes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_encoder_cuts_the_response_off_and_frees_its_place() {
    let scrapes = scrapes();
    let response = respond(&scrapes, DEADLINE, |out| {
        (0..20_000).try_for_each(|i| writeln!(out, "line {i}"))?;
        panic!("an encoder bug");
    });
    let body = body_of(response).await;
    let (last, sent) = body.split_last().expect("a body");
    assert!(!sent.is_empty() && sent.iter().all(Result::is_ok));
    assert!(last.is_err());
    all_places_free(&scrapes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_beyond_the_limit_gets_503_at_once() {
    let scrapes = scrapes();
    // Each held scrape waits for its release; a failing assert drops the senders, which
    // releases them all, so the test fails instead of hanging.
    let mut releases = Vec::new();
    let held: Vec<Response> = (0..CONCURRENT_SCRAPES)
        .map(|_| {
            let (release, released) = std_mpsc::channel::<()>();
            releases.push(release);
            respond(&scrapes, DEADLINE, move |out| {
                let _ = released.recv_timeout(Duration::from_secs(10));
                out.write_str("ok\n")
            })
        })
        .collect();
    let refused = respond(&scrapes, DEADLINE, |out| out.write_str("never\n"));
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(scrapes.available_permits(), 0);
    for release in releases {
        release.send(()).expect("the scrape waits");
    }
    for response in held {
        assert_eq!(body_of(response).await, vec![Ok(Bytes::from("ok\n"))]);
    }
    all_places_free(&scrapes).await;
}
