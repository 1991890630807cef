//! A counting, fault-injecting HTTP proxy in front of the AWS emulator.
//!
//! The controller is pointed at it (`AWS_ENDPOINT_URL`) instead of at moto, so a test or the
//! bench can read how many calls of each operation the controller made, and make a service
//! fail on demand (refused connections, 5xx, throttling) while the test runs. Requests are
//! forwarded unchanged: the SDK signs them for the proxy's Host, which moto does not check.
//!
//! Calls are keyed `<service>.<operation>`: the `X-Amz-Target` header as sent by JSON-protocol
//! clients (`secretsmanager.GetSecretValue`, `AmazonSQS.ReceiveMessage`, `AWSEvents.PutEvents`),
//! or, for query-protocol clients (STS), the signing name from the `Authorization` credential
//! scope and the `Action` form field (`sts.AssumeRoleWithWebIdentity`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// What the proxy does with the calls of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward as usual.
    None,
    /// Close the connection without an answer, as an endpoint that went away does. With the
    /// empty prefix (every service), new connections are also closed as soon as accepted.
    Refuse,
    /// Answer with this HTTP status and an AWS-shaped JSON error (`InternalFailure`).
    Status(u16),
    /// Answer as AWS does when a caller exceeds its request rate.
    Throttle,
}

/// The JSON error body of [`Fault::Throttle`], as Secrets Manager and SQS send it.
pub const THROTTLE_BODY: &str = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;

/// A running proxy; stops (with its open connections) when dropped.
pub struct AwsProxy {
    address: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

struct State {
    upstream: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    calls: Mutex<BTreeMap<String, u64>>,
    /// Service prefix → fault; the longest prefix matching a call's key wins, so a `None`
    /// under a narrower prefix exempts one service from a fault set for all.
    faults: Mutex<BTreeMap<String, Fault>>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

impl AwsProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> AwsProxy {
        let upstream: Uri = upstream.parse().expect("upstream is a URL");
        assert!(
            upstream.scheme_str() == Some("http") && upstream.authority().is_some(),
            "the proxy forwards to a plain http://host:port endpoint, not {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            upstream,
            client: Client::builder(TokioExecutor::new()).build_http(),
            calls: Mutex::default(),
            faults: Mutex::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, state.clone()));
        AwsProxy {
            address,
            state,
            accept,
        }
    }

    /// The endpoint to give a client instead of the emulator's.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Calls received so far (faulted ones included), by `<service>.<operation>`.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Returns the calls so far and starts counting from zero.
    pub fn take_calls(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.state.calls.lock().unwrap())
    }

    /// Applies `fault` to every call whose key starts with `service_prefix` (e.g.
    /// `"secretsmanager"`, `"AmazonSQS"`, `"sts"`; `""` for all), from now on.
    pub fn set_fault(&self, service_prefix: &str, fault: Fault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .insert(service_prefix.to_owned(), fault);
    }

    /// Forwards everything again.
    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet): aborting it ends them all.
        self.accept.abort();
    }
}

impl State {
    fn fault_for(&self, key: &str) -> Fault {
        self.faults
            .lock()
            .unwrap()
            .iter()
            .filter(|(prefix, _)| key.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, fault)| *fault)
            .unwrap_or(Fault::None)
    }

    /// Every call is refused: connections can be closed before a request names its service.
    fn refuses_everything(&self) -> bool {
        let faults = self.faults.lock().unwrap();
        faults.get("") == Some(&Fault::Refuse) && faults.values().all(|f| *f == Fault::Refuse)
    }

    fn count(&self, key: &str) {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default() += 1;
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // Reap finished connections so the set does not grow with every connection ever made.
        while connections.try_join_next().is_some() {}
        if state.refuses_everything() {
            drop(stream);
            continue;
        }
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| handle(state.clone(), request));
            // Errors here are connections the client or a `Refuse` cut: nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The reason a connection was closed without an answer.
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection refused by the fault proxy")
    }
}

impl std::error::Error for Refused {}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refused> {
    let (mut parts, body) = request.into_parts();
    // Buffered whole: the operation of a query-protocol call is in the form body, and AWS
    // request bodies are small.
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Err(Refused);
    };
    let key = operation_key(&parts.headers, &body);
    state.count(&key);
    match state.fault_for(&key) {
        Fault::None => {}
        Fault::Refuse => return Err(Refused),
        Fault::Status(code) => {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(error_response(
                code,
                "InternalFailure",
                r#"{"__type":"InternalFailure","message":"injected by the fault proxy"}"#,
            ));
        }
        Fault::Throttle => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                THROTTLE_BODY,
            ));
        }
    }
    let mut uri = state.upstream.clone().into_parts();
    uri.path_and_query = parts.uri.path_and_query().cloned();
    parts.uri = Uri::from_parts(uri).expect("upstream URI with the request's path");
    match state
        .client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(response) => Ok(response.map(BodyExt::boxed)),
        Err(e) => Ok(error_response(
            StatusCode::BAD_GATEWAY,
            "BadGateway",
            &serde_json::json!({"__type": "BadGateway", "message": e.to_string()}).to_string(),
        )),
    }
}

fn error_response(status: StatusCode, error_type: &str, body: &str) -> Response<ProxyBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-errortype", error_type)
        .body(
            Full::new(Bytes::from(body.to_owned()))
                .map_err(|never: Infallible| match never {})
                .boxed(),
        )
        .expect("a valid response")
}

/// `<service>.<operation>` of an AWS call; `unknown.<METHOD>` when it names none.
fn operation_key(headers: &hyper::HeaderMap, body: &[u8]) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.to_owned();
    }
    let service = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(signing_service)
        .unwrap_or("unknown");
    let action = std::str::from_utf8(body)
        .ok()
        .and_then(|form| {
            form.split('&')
                .find_map(|pair| pair.strip_prefix("Action="))
        })
        .unwrap_or("unknown");
    format!("{service}.{action}")
}

/// The service of a SigV4 `Authorization` header: `Credential=KEY/DATE/REGION/SERVICE/aws4_request`.
fn signing_service(authorization: &str) -> Option<&str> {
    let credential = authorization.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny upstream that answers every request with `upstream saw <path> <body>`.
    async fn upstream() -> (String, Arc<Mutex<u32>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        *counted.lock().unwrap() += 1;
                        async move {
                            let path = request.uri().path().to_owned();
                            let body = request.into_body().collect().await?.to_bytes();
                            let text =
                                format!("upstream saw {path} {}", String::from_utf8_lossy(&body));
                            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(text))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, hits)
    }

    /// POSTs through the proxy: (status, body) or the connection error.
    async fn call(
        proxy: &AwsProxy,
        target: Option<&str>,
        authorization: Option<&str>,
        body: &str,
    ) -> Result<(u16, String), String> {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let mut request = Request::post(format!("{}/path", proxy.url()));
        if let Some(target) = target {
            request = request.header("x-amz-target", target);
        }
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = client
            .request(
                request
                    .body(Full::new(Bytes::from(body.to_owned())))
                    .unwrap(),
            )
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    const STS_AUTH: &str = "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0";

    #[tokio::test]
    async fn forwards_unchanged_and_counts_by_operation() {
        let (url, hits) = upstream().await;
        let proxy = AwsProxy::start(&url).await;
        for _ in 0..2 {
            let answer = call(&proxy, Some("secretsmanager.GetSecretValue"), None, "{}").await;
            assert_eq!(answer, Ok((200, "upstream saw /path {}".into())));
        }
        let form = "Action=AssumeRoleWithWebIdentity&Version=2011-06-15";
        let answer = call(&proxy, None, Some(STS_AUTH), form).await;
        assert_eq!(answer, Ok((200, format!("upstream saw /path {form}"))));
        assert_eq!(*hits.lock().unwrap(), 3);
        let expected = BTreeMap::from([
            ("secretsmanager.GetSecretValue".to_owned(), 2),
            ("sts.AssumeRoleWithWebIdentity".to_owned(), 1),
        ]);
        assert_eq!(proxy.take_calls(), expected);
        assert!(proxy.calls().is_empty(), "take_calls resets the counts");
        call(&proxy, None, None, "").await.unwrap();
        assert_eq!(
            proxy.calls(),
            BTreeMap::from([("unknown.unknown".to_owned(), 1)])
        );
    }

    #[tokio::test]
    async fn injects_faults_per_service_at_runtime() {
        let (url, hits) = upstream().await;
        let proxy = AwsProxy::start(&url).await;
        let sm = Some("secretsmanager.GetSecretValue");
        let sqs = Some("AmazonSQS.ReceiveMessage");

        proxy.set_fault("secretsmanager", Fault::Throttle);
        assert_eq!(
            call(&proxy, sm, None, "{}").await,
            Ok((400, THROTTLE_BODY.into()))
        );
        assert_eq!(call(&proxy, sqs, None, "{}").await.unwrap().0, 200);

        proxy.set_fault("secretsmanager", Fault::Status(500));
        let (status, body) = call(&proxy, sm, None, "{}").await.unwrap();
        assert_eq!(status, 500);
        assert!(body.contains("InternalFailure"), "{body}");

        proxy.set_fault("secretsmanager", Fault::Refuse);
        assert!(call(&proxy, sm, None, "{}").await.is_err());
        assert_eq!(call(&proxy, sqs, None, "{}").await.unwrap().0, 200);

        // Everything refused, except SQS: the longer prefix wins.
        proxy.set_fault("", Fault::Refuse);
        proxy.set_fault("AmazonSQS", Fault::None);
        assert!(call(&proxy, sm, None, "{}").await.is_err());
        assert!(
            call(&proxy, None, Some(STS_AUTH), "Action=GetCallerIdentity")
                .await
                .is_err()
        );
        assert_eq!(call(&proxy, sqs, None, "{}").await.unwrap().0, 200);
        proxy.set_fault("AmazonSQS", Fault::Refuse);
        assert!(proxy.state.refuses_everything());
        assert!(call(&proxy, sqs, None, "{}").await.is_err());

        proxy.clear_faults();
        assert_eq!(call(&proxy, sm, None, "{}").await.unwrap().0, 200);
        // Only the calls that were not faulted reached the upstream; all were counted.
        assert_eq!(*hits.lock().unwrap(), 4);
        assert_eq!(proxy.calls()["secretsmanager.GetSecretValue"], 5);
    }

    #[tokio::test]
    async fn answers_bad_gateway_when_the_upstream_is_down() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let proxy = AwsProxy::start(&url).await;
        let (status, _) = call(&proxy, Some("AmazonSQS.SendMessage"), None, "{}")
            .await
            .unwrap();
        assert_eq!(status, 502);
    }

    #[test]
    fn reads_the_service_from_the_credential_scope() {
        assert_eq!(signing_service(STS_AUTH), Some("sts"));
        assert_eq!(signing_service("Bearer x"), None);
    }
}
