//! What an ExternalSecret reports: its status (ESO's `Ready` condition, `refreshTime`,
//! `syncedResourceVersion`, `binding`, the versions read) and its Kubernetes Events. The next
//! status is computed purely ([`next_status`]); writes go through server-side apply.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::api::external_secret::{ExternalSecretStatus, LocalObjectReference};
use crate::api::{Condition, ExternalSecret};
use crate::external_secret::controller::Context;
use crate::external_secret::target;
use crate::{Error, FIELD_MANAGER, Result};

/// Our status field that ESO's CRDs do not have.
const SYNCED_VERSIONS: &str = "syncedVersions";

/// A successful read of AWS, to record.
pub struct Synced {
    pub versions: BTreeMap<String, String>,
    /// `<generation>-<hash of labels and annotations>` of the ExternalSecret synced.
    pub resource_version: String,
    pub at: Timestamp,
}

/// The status after a reconcile: `synced` when AWS was read, `bound_to` when a Secret was
/// written (as ESO: kept as it was otherwise).
pub fn next_status(
    previous: ExternalSecretStatus,
    condition: Condition,
    synced: Option<Synced>,
    bound_to: Option<String>,
) -> ExternalSecretStatus {
    let conditions = vec![condition.keep_transition_time(&previous.conditions)];
    let binding = match bound_to {
        Some(name) => Some(LocalObjectReference { name }),
        None => previous.binding,
    };
    match synced {
        Some(synced) => ExternalSecretStatus {
            refresh_time: Some(Time(synced.at)),
            synced_resource_version: Some(synced.resource_version),
            conditions,
            binding,
            synced_versions: synced.versions,
        },
        None => ExternalSecretStatus {
            conditions,
            binding,
            ..previous
        },
    }
}

impl ExternalSecret {
    pub(super) async fn fail<T>(&self, ctx: &Context, error: Error) -> Result<T> {
        let message = error.to_string();
        self.publish(ctx, EventType::Warning, "UpdateFailed", &message)
            .await;
        if let Err(status_error) = self
            .write_status(
                ctx,
                Condition::ready(false, error.reason(), message),
                None,
                false,
            )
            .await
        {
            warn!(externalsecret = %ObjectRef::from_obj(self), error = %status_error, "could not write status");
        }
        Err(error)
    }

    pub(super) async fn write_status(
        &self,
        ctx: &Context,
        condition: Condition,
        synced_versions: Option<BTreeMap<String, String>>,
        bound: bool,
    ) -> Result<()> {
        let status = next_status(
            self.status.clone().unwrap_or_default(),
            condition,
            synced_versions.map(|versions| Synced {
                versions,
                resource_version: self.synced_resource_version(),
                at: k8s_openapi::jiff::Timestamp::now(),
            }),
            bound.then(|| self.target_name()),
        );
        let namespace = self.namespace().unwrap_or_default();
        let api = Api::<ExternalSecret>::namespaced(ctx.client.clone(), &namespace);
        let apply = |without_synced_versions: bool| {
            let mut status = json!(status);
            if without_synced_versions {
                status.as_object_mut().map(|s| s.remove(SYNCED_VERSIONS));
            }
            let patch = json!({
                "apiVersion": ExternalSecret::api_version(&()),
                "kind": ExternalSecret::kind(&()),
                "status": status,
            });
            let api = api.clone();
            let name = self.name_any();
            async move {
                api.patch_status(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(patch),
                )
                .await
            }
        };
        let learnt = &ctx.status_without_synced_versions;
        let result = match apply(learnt.load(Ordering::Relaxed)).await {
            // ESO's CRDs have no such field, and a 1.20 apiserver refuses the whole apply.
            Err(kube::Error::Api(refusal))
                if refusal.message.contains("field not declared in schema")
                    && refusal.message.contains(SYNCED_VERSIONS) =>
            {
                if !learnt.swap(true, Ordering::Relaxed) {
                    info!(
                        "the ExternalSecret CRD has no status.syncedVersions (ESO's CRDs?): writing status without it"
                    );
                }
                apply(true).await
            }
            other => other,
        };
        result.map_err(Error::kube(format!(
            "writing status of ExternalSecret {namespace}/{}",
            self.name_any()
        )))?;
        Ok(())
    }

    /// `<generation>-<hash of labels and annotations>`, exactly as ESO's `GetResourceVersion`,
    /// so an ExternalSecret ESO synced is not re-read after the switch.
    pub(super) fn synced_resource_version(&self) -> String {
        format!(
            "{}-{}",
            self.meta().generation.unwrap_or_default(),
            target::meta_hash(self.labels(), self.annotations())
        )
    }

    pub(super) async fn publish(&self, ctx: &Context, type_: EventType, reason: &str, note: &str) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1024).collect()),
            action: "Sync".into(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &self.object_ref(&())).await {
            debug!(externalsecret = %ObjectRef::from_obj(self), %error, "could not publish event");
        }
    }
}
