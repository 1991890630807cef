//! The workload index: which opted-in workloads read (or name) which Secret, kept from one
//! watch per workload kind. It holds only [`Workload`] summaries of the workloads that carry a
//! Reloader annotation (never the objects), so a change finds its workloads without a List.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::warn;

use crate::rollout::select::{self, SecretFlags};
use crate::rollout::workload::{Kind, Workload, WorkloadKey, WorkloadObject};

/// The kinds watched; the index is ready once each was listed.
const KINDS: usize = 3;

#[derive(Default)]
struct Inner {
    workloads: HashMap<WorkloadKey, Arc<Workload>>,
    /// (namespace, Secret) → the workloads whose pods read it.
    readers: HashMap<(String, String), HashSet<WorkloadKey>>,
    /// namespace → the workloads with a `secret.reloader.stakater.com/reload` list.
    reloaders: HashMap<String, HashSet<WorkloadKey>>,
    /// The workloads of a kind seen since its (re-)list started, to drop the ones gone.
    listing: HashMap<Kind, HashSet<WorkloadKey>>,
}

/// Cheap to clone; every clone is the same index.
#[derive(Clone)]
pub struct WorkloadIndex {
    inner: Arc<RwLock<Inner>>,
    listed: Arc<watch::Sender<usize>>,
}

impl Default for WorkloadIndex {
    fn default() -> Self {
        WorkloadIndex {
            inner: Arc::default(),
            listed: Arc::new(watch::channel(0).0),
        }
    }
}

impl WorkloadIndex {
    /// The future that keeps the index current: watches of Deployments, StatefulSets and
    /// DaemonSets in every namespace, retried with backoff forever.
    pub fn watch(self, client: Client) -> impl Future<Output = ()> + Send + 'static {
        futures::future::join3(
            self.clone().drive::<Deployment>(client.clone()),
            self.clone().drive::<StatefulSet>(client.clone()),
            self.clone().drive::<DaemonSet>(client),
        )
        .map(|_| ())
    }

    async fn drive<K>(self, client: Client)
    where
        K: WorkloadObject + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let mut listed = false;
        let stream = watcher(Api::<K>::all(client), watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    let done = matches!(event, watcher::Event::InitDone);
                    self.apply(event);
                    if done && !listed {
                        listed = true;
                        self.listed.send_modify(|count| *count += 1);
                    }
                }
                Err(error) => {
                    warn!(kind = K::KIND.as_str(), %error, "workload watch failed; retrying with backoff")
                }
            }
        }
    }

    /// Applies one watch event of workload kind `K`.
    pub fn apply<K: WorkloadObject>(&self, event: watcher::Event<K>) {
        let mut inner = self.inner.write().expect("workload index lock");
        match event {
            watcher::Event::Init => {
                inner.listing.insert(K::KIND, HashSet::new());
            }
            watcher::Event::InitApply(object) => {
                let key = Workload::key_of(&object);
                inner
                    .listing
                    .entry(K::KIND)
                    .or_default()
                    .insert(key.clone());
                inner.put(key, Workload::summarize(&object));
            }
            watcher::Event::InitDone => {
                let seen = inner.listing.remove(&K::KIND).unwrap_or_default();
                let gone: Vec<_> = inner
                    .workloads
                    .keys()
                    .filter(|key| key.kind == K::KIND && !seen.contains(*key))
                    .cloned()
                    .collect();
                for key in gone {
                    inner.put(key, None);
                }
            }
            watcher::Event::Apply(object) => {
                inner.put(Workload::key_of(&object), Workload::summarize(&object));
            }
            watcher::Event::Delete(object) => inner.put(Workload::key_of(&object), None),
        }
    }

    /// Waits until every workload kind has been listed once.
    pub async fn ready(&self) {
        let _ = self
            .listed
            .subscribe()
            .wait_for(|count| *count >= KINDS)
            .await;
    }

    /// The opted-in workloads of `namespace` that a change of Secret `secret` restarts.
    pub fn restarted_by(
        &self,
        namespace: &str,
        secret: &str,
        flags: SecretFlags,
    ) -> Vec<Arc<Workload>> {
        let inner = self.inner.read().expect("workload index lock");
        let readers = inner
            .readers
            .get(&(namespace.to_owned(), secret.to_owned()));
        let reloaders = inner.reloaders.get(namespace);
        let candidates: HashSet<&WorkloadKey> =
            readers.into_iter().chain(reloaders).flatten().collect();
        let mut found: Vec<Arc<Workload>> = candidates
            .into_iter()
            .filter_map(|key| inner.workloads.get(key))
            .filter(|workload| select::restarts(workload, secret, flags))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found
    }

    /// The summary of an opted-in workload.
    pub fn get(&self, key: &WorkloadKey) -> Option<Arc<Workload>> {
        let inner = self.inner.read().expect("workload index lock");
        inner.workloads.get(key).cloned()
    }

    /// How many opted-in workloads the index holds.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .expect("workload index lock")
            .workloads
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Replaces what is known of `key` with `summary` (`None`: not opted in, or gone).
    fn put(&mut self, key: WorkloadKey, summary: Option<Workload>) {
        if let Some(old) = self.workloads.remove(&key) {
            for secret in &old.secrets {
                let entry = (key.namespace.clone(), secret.clone());
                if let Some(set) = self.readers.get_mut(&entry) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.readers.remove(&entry);
                    }
                }
            }
            if let Some(set) = self.reloaders.get_mut(&key.namespace) {
                set.remove(&key);
                if set.is_empty() {
                    self.reloaders.remove(&key.namespace);
                }
            }
        }
        let Some(workload) = summary else {
            return;
        };
        // Only `auto` and `search` act on the Secrets a workload reads.
        if workload.policy.auto || workload.policy.search {
            for secret in &workload.secrets {
                self.readers
                    .entry((key.namespace.clone(), secret.clone()))
                    .or_default()
                    .insert(key.clone());
            }
        }
        if !workload.policy.reload.is_empty() {
            self.reloaders
                .entry(key.namespace.clone())
                .or_default()
                .insert(key.clone());
        }
        self.workloads.insert(key, Arc::new(workload));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::workload::{RELOADER_AUTO, RELOADER_SECRET_RELOAD};
    use serde_json::json;

    fn deployment(name: &str, annotations: serde_json::Value, secret: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "app", "envFrom": [{"secretRef": {"name": secret}}]}
            ]}}}
        }))
        .unwrap()
    }

    fn names(found: Vec<Arc<Workload>>) -> Vec<String> {
        found.iter().map(|w| w.key.to_string()).collect()
    }

    const NONE: SecretFlags = SecretFlags {
        ignore: false,
        matched: false,
    };

    #[test]
    fn finds_opted_in_readers_and_forgets_changed_or_deleted_ones() {
        let index = WorkloadIndex::default();
        index.apply(watcher::Event::Apply(deployment(
            "api",
            json!({RELOADER_AUTO: "true"}),
            "db",
        )));
        index.apply(watcher::Event::Apply(deployment("plain", json!({}), "db")));
        index.apply(watcher::Event::Apply(deployment(
            "named",
            json!({RELOADER_SECRET_RELOAD: "db"}),
            "other",
        )));
        assert_eq!(
            names(index.restarted_by("ns", "db", NONE)),
            ["deployment/api", "deployment/named"]
        );
        assert!(index.restarted_by("other-ns", "db", NONE).is_empty());
        assert_eq!(index.len(), 2, "only opted-in workloads are kept");

        // The annotation removed: no longer restarted.
        index.apply(watcher::Event::Apply(deployment("api", json!({}), "db")));
        index.apply(watcher::Event::Delete(deployment(
            "named",
            json!({RELOADER_SECRET_RELOAD: "db"}),
            "other",
        )));
        assert!(index.restarted_by("ns", "db", NONE).is_empty());
        assert!(index.is_empty());
        let inner = index.inner.read().unwrap();
        assert!(inner.readers.is_empty() && inner.reloaders.is_empty());
    }

    #[test]
    fn a_relist_drops_the_workloads_gone_meanwhile() {
        let index = WorkloadIndex::default();
        index.apply(watcher::Event::Apply(deployment(
            "gone",
            json!({RELOADER_AUTO: "true"}),
            "db",
        )));
        index.apply(watcher::Event::<Deployment>::Init);
        index.apply(watcher::Event::InitApply(deployment(
            "kept",
            json!({RELOADER_AUTO: "true"}),
            "db",
        )));
        // Another kind's list does not touch Deployments.
        index.apply(watcher::Event::<StatefulSet>::Init);
        index.apply(watcher::Event::<StatefulSet>::InitDone);
        assert_eq!(index.len(), 2);
        index.apply(watcher::Event::<Deployment>::InitDone);
        assert_eq!(
            names(index.restarted_by("ns", "db", NONE)),
            ["deployment/kept"]
        );
    }
}
