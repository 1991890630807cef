//! A Lambda function's `bootstrap` (as the deployment steps uploaded it) run as a process
//! against a small local Lambda Runtime API, since the emulator cannot invoke a Lambda without
//! Docker.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

use crate::Stack;

/// A Lambda function's `bootstrap`, run against a local Lambda Runtime API.
pub struct LambdaProcess {
    api: Arc<RuntimeApi>,
    child: tokio::process::Child,
    logs: Arc<Mutex<String>>,
}

impl LambdaProcess {
    /// Starts `bootstrap` as the function `function`, with its environment `env` and the
    /// stack's endpoints.
    pub async fn start(
        stack: &Stack,
        function: &str,
        bootstrap: &Path,
        env: &BTreeMap<String, String>,
    ) -> LambdaProcess {
        let (api, address) = RuntimeApi::serve(function).await;
        let mut child = tokio::process::Command::new(bootstrap)
            .env_clear()
            .envs(env)
            .envs(stack.process_env())
            .env("AWS_LAMBDA_RUNTIME_API", &address)
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", bootstrap.display()));
        let logs = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout"))
                as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut text = logs.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        LambdaProcess { api, child, logs }
    }

    /// One invocation; its response (an error fails the test).
    pub async fn invoke(&self, event: &Value) -> Value {
        match tokio::time::timeout(Duration::from_secs(30), self.api.invoke(event.to_string()))
            .await
        {
            Ok(Ok(body)) => body,
            Ok(Err(error)) => panic!("the Lambda failed: {error}\n{}", self.logs.lock().unwrap()),
            Err(_) => panic!(
                "the Lambda did not answer within 30 s:\n{}",
                self.logs.lock().unwrap()
            ),
        }
    }

    /// Stops the function; returns its log.
    pub async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.logs.lock().unwrap().clone()
    }
}

type Outcome = Result<Value, String>;

/// The part of the Lambda Runtime API a function uses: `GET /invocation/next` hands out the
/// next event, `POST /invocation/{id}/response` or `/error` completes it, `/init/error`
/// reports a failed start. HTTP/1.1 with keep-alive, as the runtime client speaks it.
#[derive(Default)]
struct RuntimeApi {
    function: String,
    pending: Mutex<VecDeque<(String, String)>>,
    ready: Notify,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    next_id: Mutex<u64>,
}

impl RuntimeApi {
    async fn serve(function: &str) -> (Arc<RuntimeApi>, String) {
        let api = Arc::new(RuntimeApi {
            function: function.to_owned(),
            ..RuntimeApi::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(server.clone().connection(stream));
            }
        });
        (api, address)
    }

    async fn invoke(&self, payload: String) -> Outcome {
        let id = {
            let mut next = self.next_id.lock().unwrap();
            *next += 1;
            format!("mc-request-{next}")
        };
        let (done, outcome) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id.clone(), done);
        self.pending.lock().unwrap().push_back((id, payload));
        self.ready.notify_one();
        outcome.await.unwrap_or_else(|_| Err("dropped".into()))
    }

    async fn connection(self: Arc<Self>, stream: TcpStream) {
        let mut stream = BufReader::new(stream);
        loop {
            let mut request_line = String::new();
            if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if stream.read_exact(&mut body).await.is_err() {
                return;
            }
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = path.trim_start_matches("/2018-06-01/runtime/");
            let response = match (method, path) {
                ("GET", "invocation/next") => {
                    let (id, payload) = self.next_invocation().await;
                    let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
                    let function = &self.function;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Lambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\n\
                         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:{function}\r\n\
                         Content-Length: {}\r\n\r\n{payload}",
                        payload.len()
                    )
                }
                ("POST", "init/error") => panic!(
                    "the Lambda failed to start: {}",
                    String::from_utf8_lossy(&body)
                ),
                ("POST", invocation) => {
                    let (id, kind) = invocation
                        .strip_prefix("invocation/")
                        .and_then(|rest| rest.rsplit_once('/'))
                        .unwrap_or(("", ""));
                    let outcome = match kind {
                        "response" => Ok(serde_json::from_slice(&body).unwrap_or(Value::Null)),
                        _ => Err(String::from_utf8_lossy(&body).into_owned()),
                    };
                    if let Some(done) = self.waiting.lock().unwrap().remove(id) {
                        let _ = done.send(outcome);
                    }
                    "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}".to_owned()
                }
                _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
            };
            if stream
                .get_mut()
                .write_all(response.as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    async fn next_invocation(&self) -> (String, String) {
        loop {
            let notified = self.ready.notified();
            if let Some(next) = self.pending.lock().unwrap().pop_front() {
                return next;
            }
            notified.await;
        }
    }
}
