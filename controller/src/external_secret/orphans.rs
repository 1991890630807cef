//! Secrets an ExternalSecret no longer wants: those it wrote under an older target name (ESO's
//! `deleteOrphanedSecrets`), and its Secret when the AWS secret is gone and `deletionPolicy` is
//! `Delete`.

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::info;

use crate::api::{Condition, ExternalSecret};
use crate::external_secret::controller::Context;
use crate::external_secret::target::{self, CreationPolicy};
use crate::{Error, MANAGED_LABEL, Result};

impl ExternalSecret {
    /// Whether the last Secret written had another name than the target now.
    pub(super) fn bound_elsewhere(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.binding.as_ref())
            .is_some_and(|b| !b.name.is_empty() && b.name != self.target_name())
    }

    /// Deletes the Secrets this ExternalSecret created under another name (its `created-by`
    /// label, a name other than the current target).
    pub(super) async fn delete_orphaned_secrets(&self, ctx: &Context) -> Result<()> {
        let namespace = self.namespace().unwrap_or_default();
        let name = self.target_name();
        let api = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
        let owned = format!(
            "{}={}",
            target::OWNER_LABEL,
            target::owner_label_value(&namespace, &self.name_any())
        );
        let list = api
            .list_metadata(&ListParams::default().labels(&owned))
            .await
            .map_err(Error::kube(format!(
                "listing Secrets of {namespace}/{}",
                self.name_any()
            )))?;
        for orphan in list.items.iter().filter(|s| s.name_any() != name) {
            let orphan_name = orphan.name_any();
            match api.delete(&orphan_name, &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => continue,
                Err(source) => {
                    return Err(Error::Kube {
                        action: format!("deleting orphaned Secret {namespace}/{orphan_name}"),
                        source: source.into(),
                    });
                }
            }
            info!(externalsecret = %ObjectRef::from_obj(self), secret = %orphan_name, "deleted orphaned secret");
            self.publish(
                ctx,
                EventType::Normal,
                "Deleted",
                "secret deleted because it was orphaned",
            )
            .await;
        }
        Ok(())
    }

    /// No data came back from AWS and `deletionPolicy` is `Delete`: delete the Secret we
    /// wrote (ESO refuses unless `creationPolicy` is `Owner`).
    pub(super) async fn source_deleted(
        &self,
        ctx: &Context,
        deleted: &[String],
        creation: CreationPolicy,
        existing: Option<Secret>,
    ) -> Result<()> {
        let namespace = self.namespace().unwrap_or_default();
        let name = self.target_name();
        if creation != CreationPolicy::Owner {
            return Err(Error::Misconfigured(format!(
                "could not delete secret: unable to delete secret {name}: creationPolicy={creation:?} is not Owner"
            )));
        }
        let ours = existing
            .as_ref()
            .is_some_and(|s| s.labels().get(MANAGED_LABEL).map(String::as_str) == Some("true"));
        if ours {
            Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
                .delete(&name, &Default::default())
                .await
                .map_err(Error::kube(format!("deleting Secret {namespace}/{name}")))?;
            info!(externalsecret = %ObjectRef::from_obj(self), secret = %name, ?deleted, "secret deleted: no data left in AWS (deletionPolicy Delete)");
            self.publish(
                ctx,
                EventType::Normal,
                "Deleted",
                "secret deleted due to DeletionPolicy=Delete",
            )
            .await;
        }
        self.write_status(
            ctx,
            Condition::ready(
                true,
                "SecretDeleted",
                "secret deleted due to DeletionPolicy=Delete",
            ),
            Some(Default::default()),
            false,
        )
        .await
    }
}
