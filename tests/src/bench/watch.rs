//! When each Secret first showed a value, from a watch on the bench's namespace.
//!
//! A watch rather than polling GETs: the latencies measured are tens of milliseconds, which a
//! 50 ms poll would blur, and N GETs per poll would load the apiserver the bench measures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Secret name → (value of the watched key, when that value was first seen).
type Seen = HashMap<String, (String, Instant)>;

pub struct SecretWatch {
    seen: Arc<Mutex<Seen>>,
    changes: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl SecretWatch {
    /// Starts watching the Secrets of `namespace` for the value of their data key `key`.
    pub async fn start(kube: &kube::Client, namespace: &str, key: &'static str) -> SecretWatch {
        let api = Api::<Secret>::namespaced(kube.clone(), namespace);
        let seen = Arc::new(Mutex::new(Seen::new()));
        let (changed, changes) = watch::channel(0u64);
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                let secret = match event {
                    Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret)) => secret,
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    _ => continue,
                };
                let Some(value) = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                else {
                    continue;
                };
                let name = secret.name_any();
                let mut seen = recorded.lock().unwrap();
                if seen.get(&name).map(|(v, _)| v) != Some(&value) {
                    seen.insert(name, (value, Instant::now()));
                    drop(seen);
                    changed.send_modify(|generation| *generation += 1);
                }
            }
        });
        // Measurements start only once the watch is established, so no write is missed.
        let _ = tokio::time::timeout(Duration::from_secs(30), ready).await;
        SecretWatch {
            seen,
            changes,
            task,
        }
    }

    /// Waits until every `(Secret, value)` has been seen; returns when the last of them first
    /// appeared. Panics after `timeout`, saying how many are missing (never a value).
    pub async fn wait_for(&self, expected: &[(String, String)], timeout: Duration) -> Instant {
        match self.wait_within(expected, timeout).await {
            Ok(last) => last,
            Err(missing) => panic!(
                "{} of {} Secrets did not show their expected value within {timeout:?} (first: {})",
                missing.len(),
                expected.len(),
                missing[0]
            ),
        }
    }

    /// Like [`SecretWatch::wait_for`], but a timeout returns the names still missing.
    pub async fn wait_within(
        &self,
        expected: &[(String, String)],
        timeout: Duration,
    ) -> Result<Instant, Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut changes = self.changes.clone();
        let mut pending: Vec<&(String, String)> = expected.iter().collect();
        let mut last: Option<Instant> = None;
        loop {
            {
                let seen = self.seen.lock().unwrap();
                pending.retain(|(name, value)| match seen.get(name) {
                    Some((seen_value, at)) if seen_value == value => {
                        last = last.max(Some(*at));
                        false
                    }
                    _ => true,
                });
            }
            if pending.is_empty() {
                return Ok(last.unwrap_or_else(Instant::now));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, changes.changed()).await.is_err() {
                return Err(pending.iter().map(|(name, _)| name.clone()).collect());
            }
        }
    }

    /// When `name` first showed its current value.
    pub fn seen_at(&self, name: &str) -> Option<Instant> {
        self.seen.lock().unwrap().get(name).map(|(_, at)| *at)
    }
}

impl Drop for SecretWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
