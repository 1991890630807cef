//! Accelerator mode (`--mode=eso-trigger`): for clusters that keep running External Secrets
//! Operator. secret-bridge writes no Secret; on an event it sets ESO's `force-sync`
//! annotation on the matching ExternalSecrets, so ESO refreshes them now instead of at its next
//! interval. It warns when ESO would not act on the annotation.

use std::sync::Arc;

use futures::{StreamExt, stream};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::api::ExternalSecret;
use crate::events::triggers::Outcome;
use crate::telemetry::recorder::EventRecorder;
use crate::{Error, FIELD_MANAGER};

/// The annotation ESO watches to refresh an ExternalSecret on demand.
pub const FORCE_SYNC_ANNOTATION: &str = "force-sync";

/// How many annotations are written at once for one event.
const PATCHES_AT_ONCE: usize = 16;

pub struct EsoTrigger {
    client: Client,
    recorder: EventRecorder,
}

impl EsoTrigger {
    pub fn new(client: Client, recorder: EventRecorder) -> Self {
        EsoTrigger { recorder, client }
    }

    /// Sets `force-sync` on every object, a bounded number at a time (an event for a secret
    /// thousands of ExternalSecrets read must not open thousands of requests at once); counts
    /// the annotations written.
    pub async fn refresh(&self, objects: Vec<Arc<ExternalSecret>>) -> Outcome {
        // Owned items: a closure over borrowed ones trips rustc's `Send` check of this future.
        let patches = objects
            .into_iter()
            .map(|es| async move { self.force_sync(&es).await });
        let results: Vec<_> = stream::iter(patches)
            .buffer_unordered(PATCHES_AT_ONCE)
            .collect()
            .await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        Outcome {
            succeeded: results.len() - failed,
            failed,
            timed_out: 0,
        }
    }

    async fn force_sync(&self, es: &ExternalSecret) -> Result<(), Error> {
        let object = ObjectRef::from_obj(es);
        if let Some(reason) = force_sync_ignored(es) {
            warn!(externalsecret = %object, %reason, "ESO will ignore the force-sync trigger");
            let event = Event {
                type_: EventType::Warning,
                reason: "ForceSyncIgnored".into(),
                note: Some(reason),
                action: "ForceSync".into(),
                secondary: None,
            };
            if let Err(error) = self.recorder.publish(&event, &es.object_ref(&())).await {
                warn!(externalsecret = %object, %error, "could not publish event");
            }
        }
        let namespace = es.namespace().unwrap_or_default();
        // Milliseconds, so that two events in the same second still change the annotation.
        let stamp = k8s_openapi::jiff::Timestamp::now()
            .as_millisecond()
            .to_string();
        let patch = json!({
            "apiVersion": ExternalSecret::api_version(&()),
            "kind": ExternalSecret::kind(&()),
            "metadata": {"name": es.name_any(), "annotations": {FORCE_SYNC_ANNOTATION: stamp}},
        });
        Api::<ExternalSecret>::namespaced(self.client.clone(), &namespace)
            .patch(
                &es.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await
            .map_err(Error::kube(format!("annotating ExternalSecret {object}")))?;
        info!(externalsecret = %object, "force-sync set for ESO");
        Ok(())
    }
}

/// Why ESO would not refresh `es` when its `force-sync` annotation changes, if it would not.
pub fn force_sync_ignored(es: &ExternalSecret) -> Option<String> {
    match es.spec.refresh_policy.as_deref() {
        Some("CreatedOnce") => Some(
            "refreshPolicy CreatedOnce: ESO never refreshes an ExternalSecret after its first sync"
                .into(),
        ),
        None | Some("") | Some("Periodic") => {
            let interval = es.spec.refresh_interval.as_deref()?;
            let zero = secret_bridge::duration::parse(interval).is_ok_and(|d| d.is_zero());
            zero.then(|| {
                "refreshPolicy Periodic with refreshInterval 0: ESO does not refresh periodically, and ignores force-sync; set a refreshInterval or refreshPolicy OnChange".into()
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ExternalSecretSpec;

    fn es(policy: Option<&str>, interval: Option<&str>) -> ExternalSecret {
        ExternalSecret::new(
            "x",
            ExternalSecretSpec {
                refresh_policy: policy.map(Into::into),
                refresh_interval: interval.map(Into::into),
                ..Default::default()
            },
        )
    }

    #[test]
    fn warns_on_the_refresh_interval_zero_trap() {
        assert!(
            force_sync_ignored(&es(None, Some("0")))
                .unwrap()
                .contains("refreshInterval 0")
        );
        assert!(force_sync_ignored(&es(Some("Periodic"), Some("0s"))).is_some());
        assert!(force_sync_ignored(&es(Some("CreatedOnce"), Some("1h"))).is_some());
        assert!(force_sync_ignored(&es(None, Some("1h"))).is_none());
        assert!(force_sync_ignored(&es(None, None)).is_none());
        assert!(force_sync_ignored(&es(Some("OnChange"), Some("0"))).is_none());
    }
}
