//! Every value each Secret of a burst takes, as a watch sees it: a Secret that goes back to an
//! older round was written by a replica that read AWS before a rotation and wrote after a
//! newer value had landed — the race that leader election prevents.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use crate::burst::Burst;

/// What the watch saw of one Secret: the newest round, and every step back (from, to).
#[derive(Default)]
struct Rounds {
    newest: u32,
    back: Vec<(u32, u32)>,
}

/// Watches the burst's Secrets until dropped.
pub struct History {
    seen: Arc<Mutex<BTreeMap<String, Rounds>>>,
    task: tokio::task::JoinHandle<()>,
}

impl History {
    pub fn watch(burst: &Burst) -> History {
        let seen: Arc<Mutex<BTreeMap<String, Rounds>>> = Arc::default();
        let api = Api::<Secret>::namespaced(burst.stack.kube.clone(), &burst.tenant.namespace);
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let events = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                let Ok(secret) = event else { continue };
                let (Some(name), Some(round)) = (secret.metadata.name.clone(), round_of(&secret))
                else {
                    continue;
                };
                let mut seen = record.lock().unwrap();
                let rounds = seen.entry(name).or_default();
                if round < rounds.newest {
                    rounds.back.push((rounds.newest, round));
                } else {
                    rounds.newest = round;
                }
            }
        });
        History { seen, task }
    }

    /// Panics naming each Secret that went back to an older round (never its value).
    pub fn assert_never_went_back(&self) {
        let seen = self.seen.lock().unwrap();
        let back: Vec<String> = seen
            .iter()
            .filter(|(_, rounds)| !rounds.back.is_empty())
            .map(|(name, rounds)| format!("{name}: {:?}", rounds.back))
            .collect();
        assert!(
            back.is_empty(),
            "Secrets went back to an older round (from, to): {back:?}"
        );
        assert!(!seen.is_empty(), "the watch saw no Secret at all");
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The round in a burst value (`<token>-<i>-r<round>`, key `v`).
fn round_of(secret: &Secret) -> Option<u32> {
    let value = secret.data.as_ref()?.get("v")?;
    let text = std::str::from_utf8(&value.0).ok()?;
    text.rsplit_once("-r")?.1.parse().ok()
}
