//! End-to-end: the built `secret-bridge-lambda` binary, driven through a local Lambda Runtime API
//! (written here: Lambda invoke in the emulator needs Docker), routes events into the queues of
//! two "clusters" on the moto emulator of the local stack (`scripts/stack up`). The test fails
//! when the stack is not up.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use secret_bridge::event::{Parsed, parse};
use secret_bridge::normalized::NormalizedMessage;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{Notify, oneshot};

const BINARY: &str = env!("CARGO_BIN_EXE_secret-bridge-lambda");
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:secret-bridge-fan-out";
/// Appears in events in fields that carry no identifier; the function must never log it.
const MARKER: &str = "do-not-log-this-body-marker";

/// How an invocation ended, as the function reported it to the Runtime API.
#[derive(Debug)]
enum Outcome {
    Response(Value),
    Error { error_type: String, body: Value },
}

/// A minimal Lambda Runtime API: invocations wait in a queue for `GET .../invocation/next`;
/// `POST .../invocation/{id}/response` and `.../error` complete them.
#[derive(Default)]
struct RuntimeApi {
    pending: Mutex<VecDeque<(String, String)>>,
    ready: Notify,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    next_id: AtomicUsize,
}

impl RuntimeApi {
    async fn serve() -> (Arc<RuntimeApi>, String) {
        let api = Arc::new(RuntimeApi::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (api, address)
    }

    /// Invokes the function once and waits for its answer.
    async fn invoke(&self, payload: &Value, logs: &Logs) -> Outcome {
        let id = format!("request-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        let (done, outcome) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id.clone(), done);
        self.pending
            .lock()
            .unwrap()
            .push_back((id.clone(), payload.to_string()));
        self.ready.notify_one();
        match tokio::time::timeout(Duration::from_secs(30), outcome).await {
            Ok(Ok(outcome)) => outcome,
            _ => panic!(
                "invocation {id} got no answer within 30 s; the function's output:\n{}",
                logs.text()
            ),
        }
    }

    fn complete(&self, id: &str, outcome: Outcome) -> StatusCode {
        match self.waiting.lock().unwrap().remove(id) {
            Some(done) => {
                let _ = done.send(outcome);
                StatusCode::ACCEPTED
            }
            None => StatusCode::NOT_FOUND,
        }
    }
}

async fn next(State(api): State<Arc<RuntimeApi>>) -> impl IntoResponse {
    loop {
        let popped = api.pending.lock().unwrap().pop_front();
        if let Some((id, payload)) = popped {
            let deadline =
                SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(30);
            let headers = [
                ("Lambda-Runtime-Aws-Request-Id", id),
                (
                    "Lambda-Runtime-Deadline-Ms",
                    deadline.as_millis().to_string(),
                ),
                (
                    "Lambda-Runtime-Invoked-Function-Arn",
                    FUNCTION_ARN.to_owned(),
                ),
                ("Content-Type", "application/json".to_owned()),
            ];
            return (headers, payload);
        }
        api.ready.notified().await;
    }
}

async fn response(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body).expect("the response is JSON");
    api.complete(&id, Outcome::Response(value))
}

async fn error(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let error_type = headers
        .get("Lambda-Runtime-Function-Error-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::from_slice(&body).expect("the error is JSON");
    api.complete(&id, Outcome::Error { error_type, body })
}

async fn init_error(body: Bytes) -> StatusCode {
    panic!(
        "the function failed to start: {}",
        String::from_utf8_lossy(&body)
    );
}

/// The function's stdout and stderr, as they arrive.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<String>>);

impl Logs {
    fn collect(&self, stream: impl AsyncRead + Unpin + Send + 'static) {
        let logs = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut text = logs.0.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `target/stack/env` of the running local stack.
fn stack_env() -> HashMap<String, String> {
    let path = secret_bridge::aws::local_stack_env_path(&workspace_root());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the local stack is not up ({}: {e}). Start it with `scripts/stack up`, or run every test with `scripts/test`.",
            path.display()
        )
    });
    let env = secret_bridge::aws::parse_env_file(&text);
    for key in [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(
            env.contains_key(key),
            "{} lacks {key}; restart the stack with `scripts/stack up`",
            path.display()
        );
    }
    env
}

async fn emulator_config(env: &HashMap<String, String>) -> SdkConfig {
    secret_bridge::aws::emulator_config(
        &env["AWS_ENDPOINT_URL"],
        &env["AWS_REGION"],
        &env["AWS_ACCESS_KEY_ID"],
        &env["AWS_SECRET_ACCESS_KEY"],
    )
    .await
}

/// Creates a secret (tagged or not) and returns its ARN.
async fn create_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    name: &str,
    tags: &[(&str, &str)],
) -> String {
    let mut request = secrets.create_secret().name(name).secret_string("{}");
    for (key, value) in tags {
        request = request.tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key(*key)
                .value(*value)
                .build(),
        );
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateSecret {name} on the emulator (is the stack up?): {e:?}"))
        .arn
        .expect("an ARN")
}

/// Everything a queue holds (the queue is used by this test only).
async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("ReceiveMessage");
        if received.messages().is_empty() {
            break;
        }
        bodies.extend(
            received
                .messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_owned)),
        );
    }
    bodies.sort();
    bodies
}

fn label_updated(name: &str, arn: &str, label: &str, region: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("evt-{name}-{label}").replace('/', "-"),
        "detail-type": "Secret Label Updated",
        "source": "aws.secretsmanager",
        "account": "123456789012",
        "time": "2024-02-06T16:43:48Z",
        "region": region,
        "resources": [arn],
        "detail": {"name": name, "labelUpdated": label, "versionId": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"}
    })
}

fn cloudtrail_put(name: &str, arn: &str, region: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("evt-{name}-put").replace('/', "-"),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.secretsmanager",
        "account": "123456789012",
        "time": "2024-02-06T16:40:01Z",
        "region": region,
        "resources": [],
        "detail": {
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "PutSecretValue",
            "awsRegion": region,
            "userAgent": MARKER,
            "requestParameters": {"secretId": name},
            "responseElements": {"arn": arn, "versionId": "a1b2c3d4-5678-90ab-cdef-EXAMPLE22222"}
        }
    })
}

/// The message a cluster must receive for `event`, by the core crate.
fn normalized(event: &Value) -> String {
    let Parsed::Change(change) = parse(&event.to_string()).unwrap() else {
        panic!("a change")
    };
    NormalizedMessage::from_change(&change).unwrap().to_json()
}

fn sorted(mut bodies: Vec<String>) -> Vec<String> {
    bodies.sort();
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_function_routes_events_into_each_clusters_queue() {
    let env = stack_env();
    let region = env["AWS_REGION"].clone();
    let config = emulator_config(&env).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let run = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );

    // Two clusters' queues; a third URL names a queue that does not exist.
    let mut queues = Vec::new();
    for cluster in ["a", "b"] {
        let url = sqs
            .create_queue()
            .queue_name(format!("sb-lambda-{cluster}-{run}"))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("CreateQueue on the emulator at {} (is the stack up? `scripts/stack up`): {e:?}", env["AWS_ENDPOINT_URL"])
            })
            .queue_url
            .unwrap();
        queues.push(url);
    }
    let (queue_a, queue_b) = (queues[0].clone(), queues[1].clone());
    let missing_queue = queue_a.replace("sb-lambda-a-", "sb-lambda-missing-");

    // The secrets the events are about; only `shared/cache` carries cluster B's tag.
    let tag_value = format!("b-{run}");
    let names = [
        "team-a/db",
        "prod-api",
        "team-a/shared-db",
        "shared/cache",
        "other/x",
        "broken/x",
        "team-a/sqs",
        "prod-sqs",
    ];
    let mut arns = HashMap::new();
    for name in names {
        let full = format!("{name}-{run}");
        let tags: &[(&str, &str)] = if name == "shared/cache" {
            &[("cluster", &tag_value)]
        } else {
            &[]
        };
        arns.insert(
            name,
            (full.clone(), create_secret(&secrets, &full, tags).await),
        );
    }
    let secret = |name: &str| arns[name].clone();

    // Cluster A by prefix; cluster B by regex (its queue given as an ARN) and by tag.
    let account_and_name = queue_b.rsplit('/').take(2).collect::<Vec<_>>();
    let queue_b_arn = format!(
        "arn:aws:sqs:{region}:{}:{}",
        account_and_name[1], account_and_name[0]
    );
    let routes = json!([
        {"queueUrl": queue_a, "namePrefix": "team-a/"},
        {"queueArn": queue_b_arn, "nameRegex": "^(prod-|team-a/shared-)"},
        {"queueUrl": queue_b, "tags": {"cluster": tag_value}},
        {"queueUrl": missing_queue, "namePrefix": "broken/"},
    ]);

    let (api, address) = RuntimeApi::serve().await;
    let logs = Logs::default();
    let mut child = tokio::process::Command::new(BINARY)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "secret-bridge-fan-out")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("ROUTES", routes.to_string())
        .env("RUST_LOG", "info,secret_bridge_lambda=debug")
        .env("AWS_ENDPOINT_URL", &env["AWS_ENDPOINT_URL"])
        .env("AWS_REGION", &region)
        .env("AWS_ACCESS_KEY_ID", &env["AWS_ACCESS_KEY_ID"])
        .env("AWS_SECRET_ACCESS_KEY", &env["AWS_SECRET_ACCESS_KEY"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run {BINARY}: {e}"));
    logs.collect(child.stdout.take().unwrap());
    logs.collect(child.stderr.take().unwrap());

    let event = |name: &str| {
        let (full, arn) = secret(name);
        label_updated(&full, &arn, "AWSCURRENT", &region)
    };
    let e1 = event("team-a/db");
    let e2 = {
        let (full, arn) = secret("prod-api");
        cloudtrail_put(&full, &arn, &region)
    };
    let e3 = event("team-a/shared-db");
    let e4 = event("shared/cache");
    let e5 = event("other/x");
    let e6 = {
        let (full, arn) = secret("team-a/db");
        label_updated(&full, &arn, "blue", &region)
    };
    let e7 = json!({"version": "0", "id": "evt-malformed", "detail-type": "Secret Label Updated",
                    "source": "aws.secretsmanager", "region": region, "note": MARKER});
    let e8 = event("broken/x");
    let r1 = event("team-a/sqs");
    let r3 = event("prod-sqs");

    // EventBridge invocations: one event each.
    let delivered = |outcome: Outcome| match outcome {
        Outcome::Response(body) => body["delivered"].as_u64().unwrap(),
        Outcome::Error { error_type, body } => panic!("{error_type}: {body}"),
    };
    assert_eq!(delivered(api.invoke(&e1, &logs).await), 1, "team-a/db → A");
    assert_eq!(delivered(api.invoke(&e2, &logs).await), 1, "prod-api → B");
    assert_eq!(
        delivered(api.invoke(&e3, &logs).await),
        2,
        "team-a/shared-db → A and B"
    );
    assert_eq!(
        delivered(api.invoke(&e4, &logs).await),
        1,
        "tagged shared/cache → B"
    );
    assert_eq!(
        delivered(api.invoke(&e5, &logs).await),
        0,
        "other/x matches no route"
    );
    assert_eq!(
        delivered(api.invoke(&e6, &logs).await),
        0,
        "a custom label is irrelevant"
    );
    match api.invoke(&e7, &logs).await {
        Outcome::Error { error_type, body } => {
            assert_eq!(
                error_type, "unhandled",
                "what lambda_runtime reports for handler errors"
            );
            assert_eq!(body["errorType"], "SecretBridge.UnreadableEvent");
            let message = body["errorMessage"].as_str().unwrap();
            assert!(
                message.contains("evt-malformed") && message.contains("detail"),
                "{message}"
            );
        }
        other => panic!("a malformed event must fail the invocation: {other:?}"),
    }
    match api.invoke(&e8, &logs).await {
        Outcome::Error { error_type, body } => {
            assert_eq!(error_type, "unhandled");
            assert_eq!(body["errorType"], "SecretBridge.DeliveryFailed");
            let message = body["errorMessage"].as_str().unwrap();
            assert!(message.contains("sb-lambda-missing-"), "{message}");
            assert!(message.contains("NonExistentQueue"), "{message}");
        }
        other => panic!("a failed delivery must fail the invocation: {other:?}"),
    }

    // An SQS invocation: a batch with one unreadable and one irrelevant record.
    let record = |id: &str, body: String| {
        json!({"messageId": id, "receiptHandle": format!("handle-{id}"), "body": body,
               "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
               "eventSource": "aws:sqs", "eventSourceARN": format!("arn:aws:sqs:{region}:123456789012:events"),
               "awsRegion": region})
    };
    let batch = json!({"Records": [
        record("r1", r1.to_string()),
        record("r2", format!("not json {MARKER}")),
        record("r3", r3.to_string()),
        record("r4", e6.to_string()),
    ]});
    match api.invoke(&batch, &logs).await {
        Outcome::Response(body) => assert_eq!(
            body,
            json!({"batchItemFailures": [{"itemIdentifier": "r2"}]})
        ),
        Outcome::Error { error_type, body } => panic!("{error_type}: {body}"),
    }

    // Every invocation has answered, so every message is in its queue.
    assert_eq!(
        drain(&sqs, &queue_a).await,
        sorted(vec![normalized(&e1), normalized(&e3), normalized(&r1)]),
        "cluster A's queue"
    );
    assert_eq!(
        drain(&sqs, &queue_b).await,
        sorted(vec![
            normalized(&e2),
            normalized(&e3),
            normalized(&e4),
            normalized(&r3)
        ]),
        "cluster B's queue"
    );

    child.start_kill().expect("stop the function");
    let _ = child.wait().await;
    let output = logs.text();
    assert!(
        !output.contains(MARKER),
        "the function logged an event body:\n{output}"
    );
    for line in output.lines() {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        assert!(entry.get("level").is_some(), "{line}");
    }
    assert_eq!(
        output.matches("event delivered").count(),
        6,
        "one log line per delivered event (e1..e4, r1, r3):\n{output}"
    );

    for url in [&queue_a, &queue_b] {
        let _ = sqs.delete_queue().queue_url(url).send().await;
    }
    for (full, _) in arns.values() {
        let _ = secrets
            .delete_secret()
            .secret_id(full)
            .force_delete_without_recovery(true)
            .send()
            .await;
    }
}

#[tokio::test]
async fn invalid_routes_stop_the_function_at_cold_start_naming_the_variable() {
    let output = tokio::process::Command::new(BINARY)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_LAMBDA_FUNCTION_NAME", "secret-bridge-fan-out")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-east-1")
        .env(
            "ROUTES",
            r#"[{"queueUrl":"https://sqs.us-east-1.amazonaws.com/123456789012/a","nameRegex":"(unclosed"}]"#,
        )
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {BINARY}: {e}"));
    assert!(!output.status.success(), "the function must not start");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("ROUTES: route 0: nameRegex \\\"(unclosed\\\"")
            || text.contains("ROUTES: route 0: nameRegex \"(unclosed\""),
        "{text}"
    );
}
