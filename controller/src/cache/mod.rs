//! The controller's caches, in one place: one watch per kind, shared by every part of the
//! process that needs it (the ExternalSecret controller, the matching index, the SQS consumer,
//! the store status and ClusterExternalSecret controllers), one readiness signal for all of
//! them, and the short-lived caches of the objects stores read (credentials Secrets and
//! ServiceAccounts, in [`objects`]).
//!
//! Controllers are triggered from the same watches through [`Subscriptions`]: every object a
//! watch applies (and every object, once a list completes) is sent to each subscriber after the
//! cache has it. kube's own shared reflectors (`ReflectHandle`) are not used: in kube-runtime
//! 5.0 a handle whose next object was deleted meanwhile returns `Pending` without arranging a
//! wake-up, which stalls its controller under churn.

pub mod namespaces;
pub mod objects;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Stream, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::warn;

use crate::api::secret_store::StoreSpec;
use crate::api::{ClusterExternalSecret, ClusterSecretStore, ExternalSecret, SecretStore};
use crate::cache::namespaces::NamespaceLabels;
use crate::cache::objects::ObjectCache;
use crate::events::matching::ExternalSecretIndex;
use crate::store::resolve::StoreKind;

/// How long a credentials Secret is reused while no watch confirms it is unchanged.
const SECRET_TTL: Duration = Duration::from_secs(30);
/// How long a credentials Secret is reused while the watch would have dropped it on change.
const WATCHED_SECRET_TTL: Duration = Duration::from_secs(300);
/// How long an IRSA ServiceAccount (its role annotation) is reused.
const SERVICE_ACCOUNT_TTL: Duration = Duration::from_secs(60);
/// The kinds whose initial list makes the caches ready.
const WATCHED_KINDS: usize = 4;

/// Every cache of the process. Cheap to clone.
#[derive(Clone)]
pub struct Caches {
    pub external_secrets: Store<ExternalSecret>,
    pub secret_stores: Store<SecretStore>,
    pub cluster_secret_stores: Store<ClusterSecretStore>,
    pub namespaces: NamespaceLabels,
    pub secrets: ObjectCache<Secret>,
    pub service_accounts: ObjectCache<ServiceAccount>,
    /// Which ExternalSecrets read a secret, kept from the ExternalSecret watch.
    pub index: ExternalSecretIndex,
    ready: watch::Receiver<usize>,
}

/// The changes of one shared watch, for a controller: the objects applied, read from the
/// cache (`reader`) the watch fills.
pub struct Subscription<K: kube::Resource<DynamicType = ()> + 'static> {
    changes: mpsc::UnboundedReceiver<Arc<K>>,
    reader: Store<K>,
    /// Sent before `changes`: the cache's objects when a standby became leader.
    replay: VecDeque<Arc<K>>,
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Subscription<K> {
    pub fn reader(&self) -> Store<K> {
        self.reader.clone()
    }
}

impl<K: kube::Resource<DynamicType = ()> + 'static> Stream for Subscription<K> {
    type Item = Arc<K>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Arc<K>>> {
        if let Some(object) = self.replay.pop_front() {
            return std::task::Poll::Ready(Some(object));
        }
        self.changes.poll_next_unpin(cx)
    }
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Subscription<K> {
    fn discard_pending(&mut self) {
        while self.changes.try_recv().is_ok() {}
    }

    fn replay_cache(&mut self) {
        self.replay = self.reader.state().into();
    }
}

/// Change streams of the shared watches, for controllers. Take what you use; the rest is
/// dropped with this value (a dropped subscription costs nothing).
pub struct Subscriptions {
    external_secrets: Option<Subscription<ExternalSecret>>,
    secret_stores: Option<Subscription<SecretStore>>,
    cluster_secret_stores: Option<Subscription<ClusterSecretStore>>,
    namespaces: Option<Subscription<PartialObjectMeta<Namespace>>>,
    /// The ClusterExternalSecrets owning an ExternalSecret that was changed or deleted.
    cluster_external_secret_owners:
        Option<mpsc::UnboundedReceiver<ObjectRef<ClusterExternalSecret>>>,
}

impl Subscriptions {
    pub fn take(&mut self) -> SubscriptionsTaken<'_> {
        SubscriptionsTaken(self)
    }

    /// For a standby (leader election): discards what the watches send until `start`
    /// resolves (nothing consumes it yet, and it would pile up), then returns the
    /// subscriptions, each beginning with every object its cache holds, and what `start` gave.
    pub async fn hold_until<T>(mut self, start: impl Future<Output = T>) -> (Subscriptions, T) {
        let mut start = std::pin::pin!(start);
        let mut drain = tokio::time::interval(Duration::from_secs(1));
        let outcome = loop {
            tokio::select! {
                outcome = &mut start => break outcome,
                _ = drain.tick() => self.discard_pending(),
            }
        };
        self.discard_pending();
        self.external_secrets
            .iter_mut()
            .for_each(Subscription::replay_cache);
        self.secret_stores
            .iter_mut()
            .for_each(Subscription::replay_cache);
        self.cluster_secret_stores
            .iter_mut()
            .for_each(Subscription::replay_cache);
        // The ClusterExternalSecret controller lists its own resources when it starts, and
        // re-reads namespaces from the cache: no replay of namespaces or owners is needed.
        (self, outcome)
    }

    fn discard_pending(&mut self) {
        self.external_secrets
            .iter_mut()
            .for_each(Subscription::discard_pending);
        self.secret_stores
            .iter_mut()
            .for_each(Subscription::discard_pending);
        self.cluster_secret_stores
            .iter_mut()
            .for_each(Subscription::discard_pending);
        self.namespaces
            .iter_mut()
            .for_each(Subscription::discard_pending);
        if let Some(owners) = &mut self.cluster_external_secret_owners {
            while owners.try_recv().is_ok() {}
        }
    }
}

/// Accessors that move a subscription out of [`Subscriptions`].
pub struct SubscriptionsTaken<'a>(&'a mut Subscriptions);

impl SubscriptionsTaken<'_> {
    pub fn external_secrets(&mut self) -> Subscription<ExternalSecret> {
        self.0.external_secrets.take().expect("taken once")
    }
    pub fn secret_stores(&mut self) -> Subscription<SecretStore> {
        self.0.secret_stores.take().expect("taken once")
    }
    pub fn cluster_secret_stores(&mut self) -> Subscription<ClusterSecretStore> {
        self.0.cluster_secret_stores.take().expect("taken once")
    }
    pub fn namespaces(&mut self) -> Subscription<PartialObjectMeta<Namespace>> {
        self.0.namespaces.take().expect("taken once")
    }
    pub fn cluster_external_secret_owners(
        &mut self,
    ) -> mpsc::UnboundedReceiver<ObjectRef<ClusterExternalSecret>> {
        self.0
            .cluster_external_secret_owners
            .take()
            .expect("taken once")
    }
}

/// A watch reflected into a cache, with one subscriber: after the cache applied an event, the
/// object (or, when a list completes, every object) goes to the subscriber.
fn shared<K>(
    watch: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> (
    Store<K>,
    Subscription<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let (sender, changes) = mpsc::unbounded();
    let cache = reader.clone();
    let stream = watch.reflect(writer).map_ok(move |event| {
        let changed = match &event {
            watcher::Event::Apply(object) => cache
                .get(&ObjectRef::from_obj(object))
                .into_iter()
                .collect(),
            watcher::Event::InitDone => cache.state(),
            _ => Vec::new(),
        };
        for object in changed {
            // Nobody listens when the subscription was not taken.
            let _ = sender.unbounded_send(object);
        }
        event
    });
    let subscription = Subscription {
        changes,
        reader: reader.clone(),
        replay: VecDeque::new(),
    };
    (reader, subscription, stream)
}

impl Caches {
    /// The caches, the subscriptions to their watches, and the future that drives every
    /// watch (run it until shutdown; it retries failed watches with backoff forever).
    /// Namespaces are watched only with `watch_namespaces` (accelerator mode needs none, and
    /// its RBAC grants none).
    pub fn new(
        client: &Client,
        watch_namespaces: bool,
    ) -> (
        Self,
        Subscriptions,
        impl Future<Output = ()> + Send + 'static,
    ) {
        let (ready_tx, ready) = watch::channel(if watch_namespaces { 0 } else { 1 });
        let ready_tx = Arc::new(ready_tx);
        let index = ExternalSecretIndex::default();
        let (owners_tx, owners_rx) = mpsc::unbounded();

        let es_index = index.clone();
        let (external_secrets, es_subscription, es_watch) = shared(
            watch_all::<ExternalSecret>(client.clone()).map_ok(move |event| {
                es_index.apply(&event);
                notify_owners(&event, &owners_tx);
                event
            }),
        );
        let (secret_stores, ss_subscription, ss_watch) =
            shared(watch_all::<SecretStore>(client.clone()));
        let (cluster_secret_stores, css_subscription, css_watch) =
            shared(watch_all::<ClusterSecretStore>(client.clone()));
        let (namespaces, ns_subscription, ns_watch) =
            shared(watch_all::<PartialObjectMeta<Namespace>>(client.clone()));

        let run = future::join4(
            drive("ExternalSecrets", es_watch, ready_tx.clone()),
            drive("SecretStores", ss_watch, ready_tx.clone()),
            drive("ClusterSecretStores", css_watch, ready_tx.clone()),
            async move {
                if watch_namespaces {
                    drive("Namespaces", ns_watch, ready_tx).await;
                }
            },
        );
        let caches = Caches {
            external_secrets,
            secret_stores,
            cluster_secret_stores,
            namespaces: NamespaceLabels::new(client.clone(), namespaces),
            secrets: ObjectCache::watched(client.clone(), SECRET_TTL, WATCHED_SECRET_TTL),
            service_accounts: ObjectCache::new(client.clone(), SERVICE_ACCOUNT_TTL),
            index,
            ready,
        };
        let subscriptions = Subscriptions {
            external_secrets: Some(es_subscription),
            secret_stores: Some(ss_subscription),
            cluster_secret_stores: Some(css_subscription),
            namespaces: Some(ns_subscription),
            cluster_external_secret_owners: Some(owners_rx),
        };
        (caches, subscriptions, async move {
            run.await;
        })
    }

    /// Waits until every watched kind has been listed once. Until then an event could match
    /// nothing (or a store's `prefix` be unknown) and be deleted by mistake.
    pub async fn ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|listed| *listed >= WATCHED_KINDS).await;
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow() >= WATCHED_KINDS
    }

    /// The spec of a store, when the cache has it.
    pub fn store_spec(&self, kind: StoreKind, namespace: &str, name: &str) -> Option<StoreSpec> {
        match kind {
            StoreKind::ClusterSecretStore => Some(
                self.cluster_secret_stores
                    .get(&ObjectRef::new(name))?
                    .spec
                    .store
                    .clone(),
            ),
            StoreKind::SecretStore => Some(
                self.secret_stores
                    .get(&ObjectRef::new(name).within(namespace))?
                    .spec
                    .store
                    .clone(),
            ),
        }
    }

    /// The spec of the store `es` uses, when the cache has it.
    pub fn store_of(&self, es: &ExternalSecret) -> Option<StoreSpec> {
        let reference = es.spec.secret_store_ref.as_ref()?;
        let kind = match reference.kind.as_deref() {
            Some("ClusterSecretStore") => StoreKind::ClusterSecretStore,
            _ => StoreKind::SecretStore,
        };
        self.store_spec(kind, &es.namespace().unwrap_or_default(), &reference.name)
    }

    /// Every store spec in the cache.
    pub fn store_specs(&self) -> impl Iterator<Item = StoreSpec> {
        let namespaced = self
            .secret_stores
            .state()
            .into_iter()
            .map(|s| s.spec.store.clone());
        let cluster = self
            .cluster_secret_stores
            .state()
            .into_iter()
            .map(|s| s.spec.store.clone());
        namespaced.chain(cluster)
    }
}

fn watch_all<K>(
    client: Client,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(Api::<K>::all(client), watcher::Config::default())
        .default_backoff()
        .modify(|object| object.managed_fields_mut().clear())
}

/// Polls a watch forever, counting its first complete list towards readiness.
async fn drive<K>(
    kind: &'static str,
    watch: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    ready: Arc<watch::Sender<usize>>,
) {
    let mut listed = false;
    let mut watch = std::pin::pin!(watch);
    while let Some(event) = watch.next().await {
        match event {
            Ok(watcher::Event::InitDone) if !listed => {
                listed = true;
                ready.send_modify(|count| *count += 1);
            }
            Ok(_) => {}
            Err(error) => warn!(kind, %error, "watch failed; retrying with backoff"),
        }
    }
}

/// Sends the ClusterExternalSecret that owns a changed or deleted ExternalSecret, so that it
/// restores what it provisioned. ExternalSecrets are namespaced and their owner is not, so the
/// owner reference is mapped by hand (`owns` would give it the child's namespace).
fn notify_owners(
    event: &watcher::Event<ExternalSecret>,
    owners: &mpsc::UnboundedSender<ObjectRef<ClusterExternalSecret>>,
) {
    let es = match event {
        watcher::Event::Apply(es) | watcher::Event::Delete(es) => es,
        _ => return,
    };
    for owner in es.owner_references().iter().filter(|o| {
        o.controller == Some(true)
            && o.kind == "ClusterExternalSecret"
            && o.api_version.starts_with("external-secrets.io/")
    }) {
        // Nobody listens when ClusterExternalSecrets are not served.
        let _ = owners.unbounded_send(ObjectRef::new(&owner.name));
    }
}

/// `object`'s reference without its resourceVersion and uid (`ObjectRef::extra`, which
/// equality and hashing ignore): the form the long-lived per-object maps keep, two heap
/// allocations lighter per copy (10,000 ExternalSecrets are held in about seven such maps).
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectRef<K> {
    let mut reference = ObjectRef::from_obj(object);
    reference.extra = Default::default();
    reference
}

/// A fingerprint of an object's namespace and name: the key of the long-lived per-object
/// maps that never need the name back. 8 bytes, against an [`ObjectRef`]'s 96 and its two
/// strings on the heap: 10,000 ExternalSecrets are held in several such maps. The hasher is
/// seeded at random once per process, so names cannot be chosen to collide. Two objects
/// colliding by chance (about 10⁻¹² at 10,000) would share an entry: at worst a reconcile
/// too many, counts shared in a metric, or resyncs let through one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(u64);

impl Fingerprint {
    pub fn new(namespace: &str, name: &str) -> Self {
        static SEED: std::sync::LazyLock<std::collections::hash_map::RandomState> =
            std::sync::LazyLock::new(Default::default);
        use std::hash::BuildHasher;
        Fingerprint(SEED.hash_one((namespace, name)))
    }

    pub fn of<K: Resource>(object: &ObjectRef<K>) -> Self {
        Fingerprint::new(object.namespace.as_deref().unwrap_or(""), &object.name)
    }

    pub fn of_object<K: Resource>(object: &K) -> Self {
        let meta = object.meta();
        Fingerprint::new(
            meta.namespace.as_deref().unwrap_or(""),
            meta.name.as_deref().unwrap_or(""),
        )
    }

    /// The fingerprints of every object in `reader`.
    pub fn all<K: Resource<DynamicType = ()> + Clone>(
        reader: &Store<K>,
    ) -> std::collections::HashSet<Fingerprint> {
        reader
            .state()
            .iter()
            .map(|object| Fingerprint::of_object(&**object))
            .collect()
    }
}

/// Keeps only the objects whose `key` changed since last seen (or that are new), so that a
/// controller is not triggered again by its own status writes.
/// What is remembered of deleted objects is dropped once it outnumbers the live ones.
/// What is remembered is a hash of the object's uid and `key`: two objects sharing a
/// [`Fingerprint`] only cost each other a reconcile.
pub fn changed<K, F>(
    stream: impl Stream<Item = Arc<K>>,
    reader: Store<K>,
    key: F,
) -> impl Stream<Item = Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    F: Fn(&K) -> u64,
{
    let mut seen: std::collections::HashMap<Fingerprint, u64> = std::collections::HashMap::new();
    stream.filter(move |object| {
        let fingerprint = Fingerprint::of_object(&**object);
        let now = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            object.meta().uid.hash(&mut hasher);
            key(object).hash(&mut hasher);
            hasher.finish()
        };
        let changed = seen.insert(fingerprint, now) != Some(now);
        if changed && seen.len() > 2 * reader.len() + 1024 {
            let live = Fingerprint::all(&reader);
            seen.retain(|fingerprint, _| live.contains(fingerprint));
        }
        future::ready(changed)
    })
}
