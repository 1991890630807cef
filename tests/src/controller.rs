//! The controller binary, run as a real process against the stack, with its log captured.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use crate::stack::{Stack, workspace_root};

/// A running `secret-bridge-controller`; killed when dropped.
pub struct ControllerProcess {
    child: Child,
    pub log_path: PathBuf,
}

impl ControllerProcess {
    /// Starts the controller with `args`, logging at debug level to `target/test-logs/<name>.log`.
    pub fn start(stack: &Stack, name: &str, args: &[&str]) -> ControllerProcess {
        ControllerProcess::start_with_env(stack, name, args, &[])
    }

    /// Like [`ControllerProcess::start`], with extra environment variables that override the
    /// stack's (e.g. a `KUBECONFIG` holding a service account's token).
    pub fn start_with_env(
        stack: &Stack,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ControllerProcess {
        let binary = controller_binary();
        let log_dir = workspace_root().join("target/test-logs");
        std::fs::create_dir_all(&log_dir).expect("create target/test-logs");
        let log_path = log_dir.join(format!("{name}.log"));
        let log = File::create(&log_path).expect("create controller log");
        // Tests run many controllers at once: give each a free port unless the test picks one.
        let probe: &[&str] = if args.contains(&"--probe-addr") {
            &[]
        } else {
            &["--probe-addr", "127.0.0.1:0"]
        };
        let child = Command::new(&binary)
            .args(probe)
            .args(args)
            .env_clear()
            .envs(stack.process_env())
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,secret_bridge_controller=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        ControllerProcess { child, log_path }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// How many reconciles of the `kind` `namespace/name` the controller has completed, as its
    /// debug log counts them (one `reconciled` line each, naming the object; text or JSON).
    pub fn reconciles_of(&self, kind: &str, namespace: &str, name: &str) -> usize {
        let object = format!("{kind}.");
        let key = format!("/{name}.{namespace}");
        let json_object = serde_json::json!({ "name": name, "namespace": namespace });
        self.logs()
            .lines()
            .filter(|l| match serde_json::from_str::<serde_json::Value>(l) {
                Ok(entry) => entry["msg"] == "reconciled" && entry[kind] == json_object,
                Err(_) => l.contains(" reconciled") && l.contains(&object) && l.contains(&key),
            })
            .count()
    }

    /// Panics if any of `values` appears in the controller's output (without printing them).
    pub fn assert_logs_hide(&self, values: &[&str]) {
        let logs = self.logs();
        assert!(
            !logs.is_empty(),
            "the controller wrote no log at all ({})",
            self.log_path.display()
        );
        for (i, value) in values.iter().enumerate() {
            assert!(
                !logs.contains(value),
                "secret value #{i} appears in the controller log {}",
                self.log_path.display()
            );
        }
    }

    /// The address of the controller's /healthz, /readyz and /metrics endpoint, from its log
    /// (text, or JSON as `--log-format json` writes it).
    pub async fn probe_address(&self) -> String {
        crate::wait_for(
            "the controller's probe address in its log",
            std::time::Duration::from_secs(30),
            || async { self.logs().lines().find_map(probe_address_in) },
        )
        .await
    }

    /// `GET path` on the probe endpoint: (status code, body). Panics on a body cut off before
    /// its end (a scrape the controller cut off).
    pub async fn probe_get(&self, path: &str) -> (u16, String) {
        use http_body_util::{BodyExt, Empty};
        use hyper_util::client::legacy::Client;
        use hyper_util::rt::TokioExecutor;
        let address = self.probe_address().await;
        let client: Client<_, Empty<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let uri = format!("http://{address}{path}")
            .parse()
            .expect("a probe URI");
        let response = client.get(uri).await.expect("GET on the probe endpoint");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the whole response")
            .to_bytes();
        (
            status,
            String::from_utf8(body.to_vec()).expect("a UTF-8 response"),
        )
    }

    /// Resident memory of the controller process, in KiB (Linux `VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the log line that announces the probe endpoint.
fn probe_address_in(line: &str) -> Option<String> {
    if let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) {
        // `--log-format json`: flat fields and `msg`, as ESO's logs.
        return entry["msg"]
            .as_str()?
            .starts_with("serving /healthz")
            .then(|| entry["address"].as_str().map(str::to_owned))?;
    }
    if !line.contains("serving /healthz") {
        return None;
    }
    let rest = line.split("address=").nth(1)?;
    Some(
        rest.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The controller built next to this test binary; refuses a binary older than its sources.
fn controller_binary() -> PathBuf {
    let profile_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|deps| deps.to_path_buf()))
        .map(|deps| {
            if deps.ends_with("deps") {
                deps.parent().unwrap().to_path_buf()
            } else {
                deps
            }
        })
        .expect("test binary location");
    let binary = std::env::var_os("SECRET_BRIDGE_CONTROLLER")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir.join("secret-bridge-controller"));
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo build -p secret-bridge-controller` (scripts/test does)",
                binary.display()
            )
        });
    let root = workspace_root();
    if let Some(newer) = newest_source([root.join("controller/src"), root.join("src")]) {
        assert!(
            newer <= built,
            "{} is older than its sources: run `cargo build -p secret-bridge-controller` (scripts/test does)",
            binary.display()
        );
    }
    binary
}

fn newest_source(dirs: impl IntoIterator<Item = PathBuf>) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack: Vec<PathBuf> = dirs.into_iter().collect();
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if path.to_string_lossy().ends_with("_tests.rs") {
            // Unit tests are not part of the binary: cargo does not rebuild it for them.
            continue;
        } else if let Ok(modified) = meta.modified() {
            newest = newest.max(Some(modified));
        }
    }
    newest
}
