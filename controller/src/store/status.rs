//! Store status: every served SecretStore and ClusterSecretStore is validated and gets ESO's
//! `Ready` condition and `capabilities`, re-validated every `spec.refreshInterval` seconds
//! (default five minutes, as ESO's `--store-requeue-interval`).
//!
//! Validation goes further than ESO's, which only resolves the credentials: the credentials are
//! used for STS `GetCallerIdentity` (after every role of the chain is assumed), so wrong keys
//! show on the store before any ExternalSecret fails. That call needs no IAM permission. A
//! ClusterSecretStore whose credentials come from each ExternalSecret's namespace cannot be
//! checked on its own: it is `Ready` with reason `ValidationUnknown`, as in ESO.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::api::{Patch, PatchParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::api::secret_store::{StoreSpec, StoreStatus};
use crate::api::{ClusterSecretStore, Condition, SecretStore};
use crate::aws::credentials::{ClientFactory, VerifyError};
use crate::cache::{self, Caches};
use crate::events::triggers::Triggers;
use crate::store::resolve::{NamespaceConditions, ResolvedStore, StoreKind};
use crate::store::{flood_gate, recheck};
use crate::telemetry::recorder::EventRecorder;
use crate::{Error, FIELD_MANAGER, Result};

/// ESO's default `--store-requeue-interval`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// A store that is not ready is checked again at least this often.
const RETRY_NOT_READY: Duration = Duration::from_secs(60);
/// We only read: no PushSecret.
const CAPABILITIES: &str = "ReadOnly";

/// ESO's reasons (`apis/externalsecrets/v1/secretstore_types.go`), plus `Unsupported`.
pub mod reason {
    pub const VALID: &str = "Valid";
    pub const INVALID_STORE: &str = "InvalidStoreConfiguration";
    pub const INVALID_PROVIDER_CONFIG: &str = "InvalidProviderConfig";
    pub const VALIDATION_UNKNOWN: &str = "ValidationUnknown";
    pub const UNSUPPORTED: &str = "Unsupported";
}

/// The outcome of one validation, as the `Ready` condition shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Validation {
    fn new(ready: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Validation {
            ready,
            reason,
            message: message.into(),
        }
    }
}

/// What the two store controllers share.
pub struct StoreStatusContext {
    client: Client,
    aws: ClientFactory,
    stores: Caches,
    controller_class: Option<String>,
    recorder: EventRecorder,
    namespaced_ambient_credentials: bool,
    /// The ExternalSecret controller's triggers: a store whose status changed has its
    /// ExternalSecrets reconciled at once (see [`flood_gate`]).
    external_secrets: Option<Arc<Triggers>>,
}

impl StoreStatusContext {
    pub fn new(
        client: Client,
        aws: ClientFactory,
        stores: Caches,
        controller_class: Option<String>,
        recorder: EventRecorder,
        namespaced_ambient_credentials: bool,
    ) -> Self {
        StoreStatusContext {
            external_secrets: None,
            namespaced_ambient_credentials,
            recorder,
            client,
            aws,
            stores,
            controller_class,
        }
    }

    /// Reconciles the ExternalSecrets of a store whose status changed, through `triggers`.
    pub fn reconciling(mut self, triggers: Arc<Triggers>) -> Self {
        self.external_secrets = Some(triggers);
        self
    }

    /// Validates `store` (found in `namespace` for a SecretStore).
    pub async fn validate(&self, store: &ResolvedStore, namespace: &str) -> Validation {
        let aws = match store.aws() {
            Ok(aws) => aws,
            Err(error @ Error::Unsupported(_)) => {
                return Validation::new(false, reason::UNSUPPORTED, error.to_string());
            }
            Err(error) => {
                return Validation::new(
                    false,
                    reason::INVALID_PROVIDER_CONFIG,
                    format!("unable to create client: {error}"),
                );
            }
        };
        if let Err(error) = NamespaceConditions::parse(&store.spec.conditions) {
            return Validation::new(false, reason::INVALID_STORE, error);
        }
        if store.is_referent() {
            return Validation::new(
                true,
                reason::VALIDATION_UNKNOWN,
                "could not determine validation status: the credentials are read from each ExternalSecret's namespace",
            );
        }
        let auth = match store.auth_in(&self.client, namespace).await {
            Ok(auth) => auth,
            Err(error) => {
                return Validation::new(
                    false,
                    reason::INVALID_PROVIDER_CONFIG,
                    format!("unable to create client: {error}"),
                );
            }
        };
        match self.aws.verify(&aws.region, &auth).await {
            Ok(arn) => {
                debug!(store = %store.describe(), caller = %arn, "store credentials verified");
                Validation::new(true, reason::VALID, "store validated")
            }
            Err(VerifyError::Rejected(error)) => Validation::new(
                false,
                reason::INVALID_PROVIDER_CONFIG,
                format!("unable to validate store: {error}"),
            ),
            Err(VerifyError::Unreachable(error)) => Validation::new(
                true,
                reason::VALIDATION_UNKNOWN,
                format!("could not determine validation status: {error}"),
            ),
        }
    }
}

/// A SecretStore or a ClusterSecretStore, for the one reconcile both share.
pub trait StoreObject:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    const KIND: StoreKind;
    fn store_spec(&self) -> &StoreSpec;
    fn store_status(&self) -> Option<&StoreStatus>;
    fn api(client: Client, namespace: Option<&str>) -> Api<Self>;
}

impl StoreObject for SecretStore {
    const KIND: StoreKind = StoreKind::SecretStore;
    fn store_spec(&self) -> &StoreSpec {
        &self.spec.store
    }
    fn store_status(&self) -> Option<&StoreStatus> {
        self.status.as_ref()
    }
    fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
        match namespace {
            Some(namespace) => Api::namespaced(client, namespace),
            None => Api::all(client),
        }
    }
}

impl StoreObject for ClusterSecretStore {
    const KIND: StoreKind = StoreKind::ClusterSecretStore;
    fn store_spec(&self) -> &StoreSpec {
        &self.spec.store
    }
    fn store_status(&self) -> Option<&StoreStatus> {
        self.status.as_ref()
    }
    fn api(client: Client, _namespace: Option<&str>) -> Api<Self> {
        Api::all(client)
    }
}

async fn reconcile<K: StoreObject>(store: Arc<K>, ctx: Arc<StoreStatusContext>) -> Result<Action> {
    let spec = store.store_spec();
    let resolved = ResolvedStore::new(K::KIND, store.name_any(), spec.clone())
        .with_cache(&ctx.stores)
        .allowing_ambient_credentials(ctx.namespaced_ambient_credentials);
    if !resolved.is_served_by(ctx.controller_class.as_deref()) {
        return Ok(Action::await_change());
    }
    let namespace = store.namespace();
    let validation = ctx
        .validate(&resolved, namespace.as_deref().unwrap_or_default())
        .await;
    let previous = store
        .store_status()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let was_ready = previous
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let changed = write_status(&ctx, &*store, &validation, previous).await?;
    if let Some(triggers) = &ctx.external_secrets {
        // Bounded by the cache: ExternalSecrets deleted while parked are dropped here, at
        // every store validation.
        let cached = &ctx.stores.external_secrets;
        triggers.retain_parked(|object| cached.get(object).is_some());
    }
    if let Some(triggers) = ctx.external_secrets.as_ref().filter(|_| changed) {
        tokio::spawn(flood_gate::reconcile_users_once_cached(
            ctx.stores.clone(),
            triggers.clone(),
            resolved.clone(),
            namespace.clone().unwrap_or_default(),
            validation.ready,
        ));
    }
    if !validation.ready || validation.reason == reason::VALIDATION_UNKNOWN {
        warn!(store = %resolved.describe(), reason = validation.reason, message = %validation.message, "store not validated");
        publish(&ctx, &*store, EventType::Warning, &validation).await;
    } else if changed && !was_ready {
        info!(store = %resolved.describe(), "store validated");
        publish(&ctx, &*store, EventType::Normal, &validation).await;
    }
    let interval = spec
        .refresh_interval
        .filter(|s| *s > 0)
        .map_or(DEFAULT_REFRESH, |s| Duration::from_secs(s as u64));
    Ok(Action::requeue(if validation.ready {
        interval
    } else {
        interval.min(RETRY_NOT_READY)
    }))
}

/// Applies the `Ready` condition and capabilities unless the store already shows them.
/// Returns whether it wrote.
async fn write_status<K: StoreObject>(
    ctx: &StoreStatusContext,
    store: &K,
    validation: &Validation,
    previous: &[Condition],
) -> Result<bool> {
    let condition = Condition::ready(
        validation.ready,
        validation.reason,
        validation.message.as_str(),
    )
    .keep_transition_time(previous);
    let unchanged = store
        .store_status()
        .is_some_and(|s| s.capabilities.as_deref() == Some(CAPABILITIES))
        && previous.iter().any(|c| {
            c.type_ == condition.type_
                && c.status == condition.status
                && c.reason == condition.reason
                && c.message == condition.message
        });
    if unchanged {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": StoreStatus {
            conditions: vec![condition],
            capabilities: Some(CAPABILITIES.into()),
        },
    });
    let name = store.name_any();
    let namespace = store.namespace();
    K::api(ctx.client.clone(), namespace.as_deref())
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await
        .map_err(Error::kube(format!(
            "writing status of {} {}",
            K::KIND.as_str(),
            ObjectRef::from_obj(store)
        )))?;
    Ok(true)
}

async fn publish<K: StoreObject>(
    ctx: &StoreStatusContext,
    store: &K,
    type_: EventType,
    validation: &Validation,
) {
    let event = Event {
        type_,
        reason: validation.reason.into(),
        note: Some(validation.message.chars().take(1024).collect()),
        action: "Validate".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &store.object_ref(&())).await {
        debug!(store = %ObjectRef::from_obj(store), %error, "could not publish event");
    }
}

fn error_policy<K: StoreObject>(
    store: Arc<K>,
    error: &Error,
    _ctx: Arc<StoreStatusContext>,
) -> Action {
    warn!(store = %ObjectRef::from_obj(&*store), %error, "store status not written");
    Action::requeue(Duration::from_secs(30))
}

/// Runs the SecretStore and ClusterSecretStore status controllers until `shutdown`, on the
/// shared store watches. Only spec changes (a new generation) and changes of the credentials
/// Secrets a store names trigger a validation besides the periodic one, so our own status
/// writes do not.
pub async fn run(
    ctx: StoreStatusContext,
    secret_stores: cache::Subscription<SecretStore>,
    cluster_secret_stores: cache::Subscription<ClusterSecretStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let ctx = Arc::new(ctx);
    let shutdown = shutdown.shared();
    info!("store status controller started");
    futures::future::join(
        run_one(secret_stores, ctx.clone(), shutdown.clone()),
        run_one(cluster_secret_stores, ctx, shutdown),
    )
    .await;
}

async fn run_one<K: StoreObject>(
    subscription: cache::Subscription<K>,
    ctx: Arc<StoreStatusContext>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let reader = subscription.reader();
    let credentials_changed = recheck::on_credentials_change(&ctx.stores, reader.clone());
    let changes = cache::changed(subscription, reader.clone(), |store: &K| {
        store.meta().generation.unwrap_or_default() as u64
    });
    Controller::for_shared_stream(changes, reader)
        .reconcile_on(credentials_changed)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(%error, "store status reconcile not completed");
            }
        })
        .await;
}
