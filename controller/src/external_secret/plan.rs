//! The write decision, as a pure function: from what the ExternalSecret asks for ([`Desired`],
//! built by [`target::build`]), its policies and the Secret that exists now, decide whether to
//! write and exactly what. The reconcile only executes the plan ([`WritePlan`]).

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use crate::external_secret::target::{self, CreationPolicy, Desired};
use crate::{Error, FIELD_MANAGER, MANAGED_LABEL, Result};

/// What a write needs to know besides [`Desired`].
pub struct WriteInputs<'a> {
    pub namespace: &'a str,
    /// The target Secret's name.
    pub name: &'a str,
    /// The ExternalSecret's name (for the ownership label and checks).
    pub owner_name: &'a str,
    /// The controller reference to the ExternalSecret.
    pub owner: OwnerReference,
    pub creation: CreationPolicy,
    /// `target.immutable: true`.
    pub immutable: bool,
    pub existing: Option<&'a Secret>,
}

/// What to do with the target Secret.
#[derive(Debug, PartialEq)]
pub enum WritePlan {
    /// The Secret already holds what we would write: no request at all.
    UpToDate,
    /// Server-side apply `secret`; then, when `prune_foreign`, remove the keys other field
    /// managers wrote (ESO's Owner/Orphan Secret holds only what the ExternalSecret gives).
    Apply {
        secret: Box<Secret>,
        created: bool,
        data_changed: bool,
        prune_foreign: bool,
    },
}

/// Decides the write. Errors: the Secret belongs to someone else, or an immutable Secret
/// would need new data.
pub fn plan_write(inputs: WriteInputs<'_>, mut desired: Desired) -> Result<WritePlan> {
    let WriteInputs {
        namespace,
        name,
        owner_name,
        owner,
        creation,
        immutable,
        existing,
    } = inputs;
    let existing_data = existing.map(target::secret_data).unwrap_or_default();
    if let Some(existing) = existing {
        target::check_owner(existing, owner_name, creation)?;
    }
    // ESO: with `target.immutable`, an existing Secret's data is never replaced (a new value
    // in AWS is not applied, and the sync still counts as done); only a missing Secret is
    // written.
    if immutable && existing.is_some() {
        desired.data = existing_data.clone();
    }
    let applied_before = existing
        .map(|s| target::applied_data_keys(s, FIELD_MANAGER))
        .unwrap_or_default();
    let final_data = target::final_data(creation, &desired.data, &existing_data, &applied_before);
    let owned = creation == CreationPolicy::Owner;
    let mut labels = desired.labels;
    labels.insert(MANAGED_LABEL.to_owned(), "true".to_owned());
    if owned {
        labels.insert(
            target::OWNER_LABEL.to_owned(),
            target::owner_label_value(namespace, owner_name),
        );
    }
    let mut annotations = desired.annotations;
    annotations.insert(
        target::DATA_HASH_ANNOTATION.to_owned(),
        target::data_hash(&final_data),
    );
    let data_changed = existing.is_none() || final_data != existing_data;
    if let Some(existing) = existing {
        if existing.immutable == Some(true) {
            if data_changed {
                return Err(Error::Conflict(format!(
                    "could not update secret, target is immutable: Secret {namespace}/{name}"
                )));
            }
            return Ok(WritePlan::UpToDate);
        }
        let same_metadata = labels
            .iter()
            .all(|(k, v)| existing.labels().get(k) == Some(v))
            && annotations
                .iter()
                .all(|(k, v)| existing.annotations().get(k) == Some(v));
        let owner_matches = existing
            .owner_references()
            .iter()
            .any(|o| o.uid == owner.uid)
            == owned;
        let type_matches = desired.type_.is_none() || desired.type_ == existing.type_;
        let finalizers_match = desired
            .finalizers
            .iter()
            .all(|f| existing.finalizers().contains(f));
        if !data_changed && same_metadata && owner_matches && type_matches && finalizers_match {
            return Ok(WritePlan::UpToDate);
        }
    }
    // ESO keeps the existing type when the template names none (new Secrets: Opaque).
    let type_ = desired.type_.clone().or_else(|| {
        (!creation.keeps_other_keys()).then(|| {
            existing
                .and_then(|s| s.type_.clone())
                .unwrap_or_else(|| "Opaque".into())
        })
    });
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: owned.then(|| vec![owner]),
            finalizers: (!desired.finalizers.is_empty()).then_some(desired.finalizers),
            ..Default::default()
        },
        type_,
        immutable: immutable.then_some(true),
        data: Some(
            desired
                .data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        ..Default::default()
    };
    Ok(WritePlan::Apply {
        secret: Box::new(secret),
        created: existing.is_none(),
        data_changed,
        prune_foreign: !immutable,
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
