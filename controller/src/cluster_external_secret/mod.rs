//! ClusterExternalSecret: one ExternalSecret stamped into every namespace the resource selects,
//! as ESO's `clusterexternalsecret` controller does.
//!
//! A namespace is selected when its name is in `namespaces`, or when its labels match the
//! deprecated `namespaceSelector` or any of `namespaceSelectors` (an empty selector matches
//! every namespace). Terminating namespaces are skipped. Each selected namespace gets an
//! ExternalSecret named `externalSecretName` (default: the ClusterExternalSecret's name) with
//! `externalSecretMetadata`, the `force-sync` annotation of the ClusterExternalSecret, and the
//! ClusterExternalSecret as controller owner; one in a namespace that stops matching is
//! deleted. An ExternalSecret of that name that the ClusterExternalSecret does not own is left
//! alone and the namespace reported in `status.failedNamespaces`.
//!
//! Differences from ESO: no finalizers (on the ClusterExternalSecret or on namespaces);
//! deleting a ClusterExternalSecret removes its ExternalSecrets through Kubernetes garbage
//! collection of owned objects instead. The owner reference does not set
//! `blockOwnerDeletion`, so no permission on `clusterexternalsecrets/finalizers` is needed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::api::cluster_external_secret::ClusterExternalSecretStatus;
use crate::api::{ClusterExternalSecret, ExternalSecret};
use crate::cache::{self, Caches};
use crate::{Error, FIELD_MANAGER, Result};

pub mod selection;

use selection::*;

/// What every ClusterExternalSecret reconcile shares.
pub struct Context {
    pub client: Client,
    /// Existing ExternalSecrets and Namespaces are read from the shared caches.
    pub caches: Caches,
}

/// The ClusterExternalSecret controller, built but not yet running.
pub struct ClusterExternalSecretController {
    controller: Controller<ClusterExternalSecret>,
}

impl ClusterExternalSecretController {
    /// Watches ClusterExternalSecrets; is triggered besides by changes to the ExternalSecrets
    /// they own and by Namespaces (a namespace created, relabelled or terminating re-evaluates
    /// the ClusterExternalSecrets that select it or provisioned it), both from the shared
    /// watches.
    pub fn new(
        client: &Client,
        namespaces: cache::Subscription<PartialObjectMeta<Namespace>>,
        owners: impl Stream<Item = ObjectRef<ClusterExternalSecret>> + Send + 'static,
    ) -> Self {
        let controller = Controller::new(
            Api::<ClusterExternalSecret>::all(client.clone()),
            watcher::Config::default(),
        );
        let cluster_secrets = controller.store();
        let controller = controller.reconcile_on(owners).watches_shared_stream(
            namespaces,
            move |namespace: Arc<PartialObjectMeta<Namespace>>| {
                let namespace = NamespaceInfo::from_meta(&namespace);
                cluster_secrets
                    .state()
                    .into_iter()
                    .filter(|ces| {
                        selects(&ces.spec, &namespace).unwrap_or(false)
                            || ces
                                .status
                                .as_ref()
                                .is_some_and(|s| s.provisioned_namespaces.contains(&namespace.name))
                    })
                    .map(|ces| ObjectRef::from_obj(&*ces))
                    .collect::<Vec<_>>()
            },
        );
        ClusterExternalSecretController { controller }
    }

    /// The controller's cache of ClusterExternalSecrets (for their status metrics).
    pub fn store(&self) -> kube::runtime::reflector::Store<ClusterExternalSecret> {
        self.controller.store()
    }

    /// Runs until `shutdown` resolves. Reconciles wait until the caches are listed: an
    /// ExternalSecret missing from a cache still being listed would be taken over instead of
    /// reported.
    pub async fn run(
        self,
        context: Arc<Context>,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) {
        info!("ClusterExternalSecret controller started");
        self.controller
            .graceful_shutdown_on(shutdown)
            .run(reconcile, error_policy, context)
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => debug!(clusterexternalsecret = %object, "reconciled"),
                    Err(error) => debug!(%error, "reconcile not completed"),
                }
            })
            .await;
        info!("ClusterExternalSecret controller stopped");
    }
}

pub async fn reconcile(ces: Arc<ClusterExternalSecret>, ctx: Arc<Context>) -> Result<Action> {
    ctx.caches.ready().await;
    if ces.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let refresh = refresh_interval(&ces)?;
    let name = external_secret_name(&ces);
    let ces_name = ces.name_any();
    let previous = ces.status.clone().unwrap_or_default();
    let api = |namespace: &str| Api::<ExternalSecret>::namespaced(ctx.client.clone(), namespace);
    let mut failed: BTreeMap<String, String> = BTreeMap::new();

    // `externalSecretName` changed: the ExternalSecrets under the old name go.
    if let Some(old) = previous
        .external_secret_name
        .as_deref()
        .filter(|old| *old != name)
    {
        for namespace in &previous.provisioned_namespaces {
            if let Err(error) = delete_owned(&ctx, &api(namespace), namespace, old, &ces_name).await
            {
                failed.insert(namespace.clone(), error.to_string());
            }
        }
        if !failed.is_empty() {
            write_status(&ctx, &ces, status(name, Vec::new(), failed)).await?;
            return Err(Error::Misconfigured(format!(
                "could not delete the ExternalSecrets named {old:?} (externalSecretName changed)"
            )));
        }
    }

    let namespaces: Vec<NamespaceInfo> = ctx
        .caches
        .namespaces
        .all()
        .iter()
        .map(|ns| NamespaceInfo::from_meta(ns))
        .collect();
    let targets = match target_namespaces(&ces.spec, &namespaces) {
        Ok(targets) => targets,
        Err(error) => {
            let failure = BTreeMap::from([("unknown".to_owned(), error.to_string())]);
            write_status(&ctx, &ces, status(name, Vec::new(), failure)).await?;
            return Err(error);
        }
    };

    for namespace in previous
        .provisioned_namespaces
        .iter()
        .filter(|n| !targets.contains(n))
    {
        if let Err(error) = delete_owned(&ctx, &api(namespace), namespace, &name, &ces_name).await {
            failed.insert(namespace.clone(), error.to_string());
        }
    }

    let mut provisioned = Vec::new();
    for namespace in &targets {
        let existing = ctx
            .caches
            .external_secrets
            .get(&ObjectRef::new(&name).within(namespace));
        if let Some(existing) = &existing
            && !is_owned_by(existing, &ces_name)
        {
            failed.insert(
                namespace.clone(),
                "external secret already exists in namespace".into(),
            );
            continue;
        }
        let desired = desired_external_secret(&ces, namespace, &name);
        if existing.is_some_and(|e| up_to_date(&e, &desired)) {
            provisioned.push(namespace.clone());
            continue;
        }
        let applied = api(namespace)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await;
        match applied {
            Ok(_) => {
                debug!(clusterexternalsecret = %ces_name, %namespace, externalsecret = %name, "ExternalSecret applied");
                provisioned.push(namespace.clone());
            }
            Err(error) => {
                warn!(clusterexternalsecret = %ces_name, %namespace, %error, "could not create or update ExternalSecret");
                failed.insert(
                    namespace.clone(),
                    format!("could not create or update ExternalSecret: {error}"),
                );
            }
        }
    }
    let new_status = status(name, provisioned, failed);
    if ces.status.as_ref() != Some(&new_status) {
        write_status(&ctx, &ces, new_status).await?;
    }
    Ok(Action::requeue(refresh))
}

/// Deletes the ExternalSecret `name` in `namespace` if this ClusterExternalSecret owns it.
async fn delete_owned(
    ctx: &Context,
    api: &Api<ExternalSecret>,
    namespace: &str,
    name: &str,
    ces_name: &str,
) -> Result<()> {
    let cached = ctx
        .caches
        .external_secrets
        .get(&ObjectRef::new(name).within(namespace));
    if !cached.is_some_and(|es| is_owned_by(&es, ces_name)) {
        return Ok(());
    }
    match api.delete(name, &Default::default()).await {
        Ok(_) => {
            info!(clusterexternalsecret = %ces_name, %namespace, externalsecret = %name, "ExternalSecret deleted: namespace no longer selected");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(source) => Err(Error::Kube {
            action: format!(
                "external secret in non matching namespace could not be deleted: {namespace}/{name}"
            ),
            source: source.into(),
        }),
    }
}

async fn write_status(
    ctx: &Context,
    ces: &ClusterExternalSecret,
    status: ClusterExternalSecretStatus,
) -> Result<()> {
    let patch = json!({
        "apiVersion": ClusterExternalSecret::api_version(&()),
        "kind": ClusterExternalSecret::kind(&()),
        "status": status,
    });
    Api::<ClusterExternalSecret>::all(ctx.client.clone())
        .patch_status(
            &ces.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await
        .map_err(Error::kube(format!(
            "writing status of ClusterExternalSecret {}",
            ces.name_any()
        )))?;
    Ok(())
}

/// Retries a failed reconcile after 30 s.
pub fn error_policy(ces: Arc<ClusterExternalSecret>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(clusterexternalsecret = %ces.name_any(), %error, "ClusterExternalSecret reconcile failed");
    Action::requeue(Duration::from_secs(30))
}
