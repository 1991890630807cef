//! What an ExternalSecret reports: its status (ESO's `Ready` condition, `refreshTime`,
//! `syncedResourceVersion`, `binding`, the versions read) and its Kubernetes Events. The next
//! status is computed purely ([`next_status`]); writes go through server-side apply.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

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
            synced_versions: synced.versions.into(),
        },
        None => ExternalSecretStatus {
            conditions,
            binding,
            ..previous
        },
    }
}

/// A sync that changed nothing rewrites the status at least this often (to advance
/// `refreshTime`), or once per resync when the interval is longer.
const REFRESH_TIME_AT_LEAST_EVERY: Duration = Duration::from_secs(300);

/// How long an unchanged status is left as it is, for an ExternalSecret resynced every
/// `interval` (`None`: never periodically).
pub fn quiet_for(interval: Option<Duration>) -> Duration {
    interval.map_or(REFRESH_TIME_AT_LEAST_EVERY, |interval| {
        interval.max(REFRESH_TIME_AT_LEAST_EVERY)
    })
}

/// Whether `next` differs from `previous` only by a `refreshTime` less than `quiet` after the
/// previous one. `without_versions`: the CRD keeps no `syncedVersions`, so they are not
/// compared.
pub fn only_refresh_time_advances(
    previous: &ExternalSecretStatus,
    next: &ExternalSecretStatus,
    without_versions: bool,
    quiet: Duration,
) -> bool {
    let (Some(before), Some(now)) = (&previous.refresh_time, &next.refresh_time) else {
        return false;
    };
    if now.0.duration_since(before.0).unsigned_abs() >= quiet {
        return false;
    }
    let comparable = |status: &ExternalSecretStatus| ExternalSecretStatus {
        refresh_time: None,
        synced_versions: if without_versions {
            Default::default()
        } else {
            status.synced_versions.clone()
        },
        ..status.clone()
    };
    comparable(previous) == comparable(next)
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
        let status = self.next_status(condition, synced_versions, bound);
        self.apply_status(ctx, status).await
    }

    /// The status after a successful read of AWS, for an ExternalSecret resynced every
    /// `interval`. Unlike ESO, a sync that changed nothing does not rewrite the status just
    /// to advance `refreshTime`, unless that is older than [`quiet_for`]: at a short interval
    /// ESO's write per resync is most of the load a controller puts on the apiserver and
    /// etcd. (`externalsecret_sync_calls_total` counts every sync.)
    pub(super) async fn write_synced_status(
        &self,
        ctx: &Context,
        condition: Condition,
        versions: BTreeMap<String, String>,
        bound: bool,
        interval: Option<Duration>,
    ) -> Result<()> {
        let status = self.next_status(condition, Some(versions), bound);
        let without_versions = ctx.status_without_synced_versions.load(Ordering::Relaxed);
        if let Some(previous) = &self.status
            && only_refresh_time_advances(previous, &status, without_versions, quiet_for(interval))
        {
            debug!(externalsecret = %ObjectRef::from_obj(self), "nothing changed: status left as it is");
            return Ok(());
        }
        self.apply_status(ctx, status).await
    }

    fn next_status(
        &self,
        condition: Condition,
        synced_versions: Option<BTreeMap<String, String>>,
        bound: bool,
    ) -> ExternalSecretStatus {
        next_status(
            self.status.clone().unwrap_or_default(),
            condition,
            synced_versions.map(|versions| Synced {
                versions,
                resource_version: self.synced_resource_version(),
                at: k8s_openapi::jiff::Timestamp::now(),
            }),
            bound.then(|| self.target_name()),
        )
    }

    async fn apply_status(&self, ctx: &Context, status: ExternalSecretStatus) -> Result<()> {
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
        ctx.events.publish(event, self.object_ref(&())).await;
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn synced(at: Timestamp, version: &str) -> ExternalSecretStatus {
        next_status(
            ExternalSecretStatus::default(),
            Condition::ready(true, "SecretSynced", "secret synced"),
            Some(Synced {
                versions: BTreeMap::from([("db".to_owned(), version.to_owned())]),
                resource_version: "1-abc".into(),
                at,
            }),
            Some("app".into()),
        )
    }

    #[test]
    fn an_unchanged_sync_writes_no_status_until_refresh_time_is_quiet_too_long() {
        let t0 = Timestamp::now();
        let previous = synced(t0, "v1");
        let minute = Duration::from_secs(60);
        let later = |after: Duration| {
            let mut next = previous.clone();
            next.refresh_time = Some(Time(t0 + after));
            next
        };
        let quiet = quiet_for(Some(Duration::from_secs(20)));
        assert_eq!(quiet, Duration::from_secs(300), "at least five minutes");
        assert!(only_refresh_time_advances(
            &previous,
            &later(minute),
            false,
            quiet
        ));
        assert!(
            !only_refresh_time_advances(&previous, &later(5 * minute), false, quiet),
            "refreshTime still advances every five minutes"
        );
        assert_eq!(
            quiet_for(Some(Duration::from_secs(3600))),
            Duration::from_secs(3600),
            "at a long interval, every resync writes, as ESO"
        );

        // Anything else that changes is written at once.
        let mut rotated = later(minute);
        rotated.synced_versions.insert("db".into(), "v2".into());
        assert!(!only_refresh_time_advances(
            &previous, &rotated, false, quiet
        ));
        assert!(
            only_refresh_time_advances(&previous, &rotated, true, quiet),
            "a CRD without syncedVersions cannot tell them apart"
        );
        let mut failing = later(minute);
        failing.conditions = vec![Condition::ready(false, "SecretSyncedError", "denied")];
        assert!(!only_refresh_time_advances(
            &previous, &failing, false, quiet
        ));
        let mut respecified = later(minute);
        respecified.synced_resource_version = Some("2-abc".into());
        assert!(!only_refresh_time_advances(
            &previous,
            &respecified,
            false,
            quiet
        ));
        assert!(
            !only_refresh_time_advances(
                &ExternalSecretStatus::default(),
                &later(minute),
                false,
                quiet
            ),
            "a first sync is always written"
        );
    }
}
