//! A short-lived cache of the few Kubernetes objects stores read on every sync: credentials
//! Secrets and IRSA ServiceAccounts. Without it, each reconcile GETs them again; at cold start
//! thousands of ExternalSecrets sharing one store would all GET the same Secret.
//!
//! Concurrent reads of one object share one GET. Entries live for a short time; for Secrets, a
//! watch of metadata (unmanaged Secrets only, so the Secrets we write are not echoed back) drops
//! an entry as soon as the object changes, so a replaced credentials Secret is used at once.
//! Only objects a store names are cached, never every Secret of the cluster.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{OnceCell, broadcast};

use crate::MANAGED_LABEL;

type Key = (String, String);

/// Changes kept for receivers that are behind.
const CHANGES_BUFFER: usize = 1024;
type Cell<K> = Arc<OnceCell<Option<Arc<K>>>>;

struct Entry<K> {
    created: Instant,
    cell: Cell<K>,
}

struct Inner<K> {
    client: Client,
    /// How long an entry lives when no watch keeps it current.
    ttl: Duration,
    /// How long an entry lives while the invalidating watch is healthy.
    watched_ttl: Option<Duration>,
    entries: Mutex<HashMap<Key, Entry<K>>>,
    watch_started: Once,
    watch_healthy: AtomicBool,
    /// Objects the watch saw change (not those of its initial list), as (namespace, name).
    changes: broadcast::Sender<Key>,
}

pub struct ObjectCache<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for ObjectCache<K> {
    fn clone(&self) -> Self {
        ObjectCache {
            inner: self.inner.clone(),
        }
    }
}

impl<K> ObjectCache<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// Entries live `ttl`.
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self::build(client, ttl, None)
    }

    /// Entries live `watched_ttl` while a metadata watch (started on first use) drops changed
    /// objects, `ttl` while that watch is not running.
    pub fn watched(client: Client, ttl: Duration, watched_ttl: Duration) -> Self {
        Self::build(client, ttl, Some(watched_ttl))
    }

    fn build(client: Client, ttl: Duration, watched_ttl: Option<Duration>) -> Self {
        ObjectCache {
            inner: Arc::new(Inner {
                client,
                ttl,
                watched_ttl,
                entries: Mutex::default(),
                watch_started: Once::new(),
                watch_healthy: AtomicBool::new(false),
                changes: broadcast::channel(CHANGES_BUFFER).0,
            }),
        }
    }

    /// The object, or `None` when it does not exist.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Option<Arc<K>>, kube::Error> {
        if self.inner.watched_ttl.is_some() {
            self.inner
                .watch_started
                .call_once(|| self.start_invalidating_watch());
        }
        let cell = self.cell(namespace, name);
        let client = self.inner.client.clone();
        cell.get_or_try_init(|| async move {
            Ok(Api::<K>::namespaced(client, namespace)
                .get_opt(name)
                .await?
                .map(Arc::new))
        })
        .await
        .cloned()
    }

    /// The entry's cell: a fresh one when the entry is missing or stale. Stale entries of
    /// other keys are dropped on the way, so the map only holds what is in use.
    fn cell(&self, namespace: &str, name: &str) -> Cell<K> {
        let ttl = match self.inner.watched_ttl {
            Some(watched) if self.inner.watch_healthy.load(Ordering::Relaxed) => watched,
            _ => self.inner.ttl,
        };
        let mut entries = self.inner.entries.lock().expect("object cache lock");
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(entry) = entries.get(&key)
            && entry.created.elapsed() < ttl
        {
            return entry.cell.clone();
        }
        entries.retain(|_, entry| entry.created.elapsed() < ttl);
        let cell = Cell::default();
        entries.insert(
            key,
            Entry {
                created: Instant::now(),
                cell: cell.clone(),
            },
        );
        cell
    }

    /// The objects the invalidating watch sees change from now on, as (namespace, name). A
    /// receiver that falls more than a thousand changes behind misses some (their stores are
    /// still re-checked periodically).
    pub fn changes(&self) -> broadcast::Receiver<Key> {
        self.inner.changes.subscribe()
    }

    fn forget(&self, namespace: &str, name: &str) {
        let mut entries = self.inner.entries.lock().expect("object cache lock");
        entries.remove(&(namespace.to_owned(), name.to_owned()));
    }

    fn start_invalidating_watch(&self) {
        let cache = self.clone();
        let config = watcher::Config::default().labels(&format!("!{MANAGED_LABEL}"));
        let watch = watcher(
            Api::<PartialObjectMeta<K>>::all(self.inner.client.clone()),
            config,
        )
            .default_backoff()
            .for_each(move |event| {
                let healthy = &cache.inner.watch_healthy;
                match event {
                    Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => {
                        let key = (object.namespace().unwrap_or_default(), object.name_any());
                        cache.forget(&key.0, &key.1);
                        let _ = cache.inner.changes.send(key);
                    }
                    Ok(watcher::Event::InitApply(object)) => {
                        cache.forget(&object.namespace().unwrap_or_default(), &object.name_any());
                    }
                    Ok(watcher::Event::InitDone) => healthy.store(true, Ordering::Relaxed),
                    Ok(watcher::Event::Init) => {}
                    Err(error) => {
                        if healthy.swap(false, Ordering::Relaxed) {
                            tracing::warn!(%error, kind = %K::kind(&()), "watch for the credentials cache failed; entries expire sooner until it recovers");
                        }
                    }
                }
                futures::future::ready(())
            });
        tokio::spawn(watch);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use k8s_openapi::api::core::v1::Secret;
    use kube::client::Body;

    use super::*;

    /// A client whose apiserver answers every GET of Secret `keys` (and 404 for any other),
    /// slowly, counting the requests.
    fn counting_client(requests: Arc<AtomicUsize>) -> Client {
        let service = tower::service_fn(move |request: http::Request<Body>| {
            let requests = requests.clone();
            async move {
                requests.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                let found = request.uri().path().ends_with("/secrets/keys");
                let (status, body) = if found {
                    (
                        200,
                        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"keys","namespace":"ns"},"data":{"id":"QUtJQQ=="}}"#,
                    )
                } else {
                    (
                        404,
                        r#"{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"NotFound","code":404}"#,
                    )
                };
                http::Response::builder()
                    .status(status)
                    .body(Body::from(body.as_bytes().to_vec()))
            }
        });
        Client::new(service, "default")
    }

    #[tokio::test]
    async fn concurrent_reads_share_one_get_and_absence_is_cached() {
        let requests = Arc::new(AtomicUsize::new(0));
        let cache =
            ObjectCache::<Secret>::new(counting_client(requests.clone()), Duration::from_secs(60));
        let reads = (0..50).map(|_| cache.get("ns", "keys"));
        for secret in futures::future::join_all(reads).await {
            let secret = secret.unwrap().expect("found");
            assert_eq!(secret.data.as_ref().unwrap()["id"].0, b"AKIA");
        }
        assert_eq!(requests.load(Ordering::SeqCst), 1);
        assert!(cache.get("ns", "missing").await.unwrap().is_none());
        assert!(cache.get("ns", "missing").await.unwrap().is_none());
        assert_eq!(requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn entries_expire() {
        let requests = Arc::new(AtomicUsize::new(0));
        let cache = ObjectCache::<Secret>::new(counting_client(requests.clone()), Duration::ZERO);
        cache.get("ns", "keys").await.unwrap();
        cache.get("ns", "keys").await.unwrap();
        assert_eq!(requests.load(Ordering::SeqCst), 2);
    }
}
