//! The Secret an ExternalSecret asks for, built from the values read: ESO's
//! `ApplyTemplate`, ownership labels and the `data-hash` annotation, as pure functions.
//!
//! Precedence, as ESO: `template.data` over `template.templateFrom` over the values read
//! (which are kept without a template, with `mergePolicy: Merge`, or when the template has no
//! data at all). Without a template, the ExternalSecret's own labels and annotations are
//! copied to the Secret; with one, `template.metadata` gives them instead.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;

use secret_bridge::decoding::Decoding;
use sha3::{Digest, Sha3_224};

use crate::Error;
use crate::api::ExternalSecret;
use crate::api::external_secret::{ExternalSecretTemplate, TemplateFrom, TemplateRef};
use kube::ResourceExt;

/// ESO's hash of the Secret data, so a Secret it wrote is not seen as drifted.
pub const DATA_HASH_ANNOTATION: &str = "reconcile.external-secrets.io/data-hash";
/// ESO's label naming the ExternalSecret that owns a Secret (a hash of `namespace/name`).
pub const OWNER_LABEL: &str = "reconcile.external-secrets.io/created-by";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreationPolicy {
    /// Create or update the Secret, owned by the ExternalSecret (garbage-collected with it).
    Owner,
    /// Create or update the Secret, without an owner.
    Orphan,
    /// Only update an existing Secret's keys; never create it.
    Merge,
    /// Keep the keys others wrote; create the Secret when it is missing (ESO's `CreateOrMerge`).
    CreateOrMerge,
    /// Write nothing.
    None,
}

impl CreationPolicy {
    pub fn parse(policy: Option<&str>) -> Result<Self, Error> {
        match policy {
            None | Some("") | Some("Owner") => Ok(CreationPolicy::Owner),
            Some("Orphan") => Ok(CreationPolicy::Orphan),
            Some("Merge") => Ok(CreationPolicy::Merge),
            Some("CreateOrMerge") => Ok(CreationPolicy::CreateOrMerge),
            Some("None") => Ok(CreationPolicy::None),
            Some(other) => Err(Error::Misconfigured(format!(
                "spec.target.creationPolicy {other:?} is not one of Owner, Orphan, Merge, CreateOrMerge, None"
            ))),
        }
    }

    /// Whether keys that others wrote into the Secret stay.
    pub fn keeps_other_keys(self) -> bool {
        matches!(self, CreationPolicy::Merge | CreationPolicy::CreateOrMerge)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Keep the Secret when the AWS secret is gone (and report the error).
    Retain,
    /// Delete the Secret when every AWS secret it reads is gone.
    Delete,
    /// Drop only the keys of the AWS secrets that are gone.
    Merge,
}

impl DeletionPolicy {
    pub fn parse(policy: Option<&str>) -> Result<Self, Error> {
        match policy {
            None | Some("") | Some("Retain") => Ok(DeletionPolicy::Retain),
            Some("Delete") => Ok(DeletionPolicy::Delete),
            Some("Merge") => Ok(DeletionPolicy::Merge),
            Some(other) => Err(Error::Misconfigured(format!(
                "spec.target.deletionPolicy {other:?} is not one of Retain, Delete, Merge"
            ))),
        }
    }
}

/// ESO's `ObjectHash` (since v0.17): the SHA3-224 of Go's `%+v` rendering of the value.
pub fn data_hash(data: &BTreeMap<String, Vec<u8>>) -> String {
    let entries = data.iter().map(|(key, value)| {
        let bytes: Vec<String> = value.iter().map(u8::to_string).collect();
        format!("{key}:[{}]", bytes.join(" "))
    });
    object_hash(&go_map(entries))
}

/// ESO's `HashMeta`: the hash of `struct{annotations, labels map[string]string}`, the
/// second half of `status.syncedResourceVersion` (`<generation>-<hash>`).
pub fn meta_hash(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> String {
    let text = |map: &BTreeMap<String, String>| go_map(map.iter().map(|(k, v)| format!("{k}:{v}")));
    object_hash(&format!(
        "{{annotations:{} labels:{}}}",
        text(annotations),
        text(labels)
    ))
}

/// The `created-by` label value for the ExternalSecret `namespace/name`.
pub fn owner_label_value(namespace: &str, name: &str) -> String {
    object_hash(&format!("{namespace}/{name}"))
}

/// Go's `%+v` of a map whose entries are already rendered in key order (Go sorts map keys).
fn go_map(entries: impl Iterator<Item = String>) -> String {
    format!("map[{}]", entries.collect::<Vec<_>>().join(" "))
}

fn object_hash(text: &str) -> String {
    Sha3_224::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Renders one Go template against the values read (`name` is used in errors).
pub type Render<'r> = &'r dyn Fn(&str, &str, &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, Error>;

/// ConfigMaps and Secrets named by `template.templateFrom`, read by the caller.
#[derive(Default)]
pub struct TemplateSources {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// The parts of the Secret we write. `Debug` shows keys only.
#[derive(Default, PartialEq)]
pub struct Desired {
    pub type_: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub data: BTreeMap<String, Vec<u8>>,
    pub finalizers: Vec<String>,
}

impl std::fmt::Debug for Desired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desired")
            .field("type", &self.type_)
            .field("labels", &self.labels)
            .field("annotations", &self.annotations.keys().collect::<Vec<_>>())
            .field("data", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Builds what the ExternalSecret's target Secret holds from the values read (`values`),
/// without the ownership label and data hash (see [`finish`]).
pub fn build(
    es: &ExternalSecret,
    values: BTreeMap<String, Vec<u8>>,
    sources: &TemplateSources,
    render: Render<'_>,
) -> Result<Desired, Error> {
    let Some(template) = es.spec.target.as_ref().and_then(|t| t.template.as_ref()) else {
        return Ok(Desired {
            labels: es.labels().clone(),
            annotations: es.annotations().clone(),
            data: values,
            ..Default::default()
        });
    };
    check_template(template)?;
    let mut desired = Desired {
        type_: template.type_.clone().filter(|t| !t.is_empty()),
        finalizers: template
            .metadata
            .as_ref()
            .map(|m| m.finalizers.clone())
            .unwrap_or_default(),
        ..Default::default()
    };
    let merge = template.merge_policy.as_deref() == Some("Merge");
    if merge || (template.data.is_empty() && template.template_from.is_empty()) {
        desired.data = values.clone();
    }
    for (i, from) in template.template_from.iter().enumerate() {
        apply_template_from(&mut desired, from, i, sources, &values, render)?;
    }
    for (key, text) in &template.data {
        let at = format!("spec.target.template.data.{key}");
        desired
            .data
            .insert(key.clone(), render(&at, text, &values)?);
    }
    if let Some(metadata) = &template.metadata {
        for (key, text) in &metadata.labels {
            let at = format!("spec.target.template.metadata.labels.{key}");
            desired
                .labels
                .insert(key.clone(), text_of(render(&at, text, &values)?, &at)?);
        }
        for (key, text) in &metadata.annotations {
            let at = format!("spec.target.template.metadata.annotations.{key}");
            desired
                .annotations
                .insert(key.clone(), text_of(render(&at, text, &values)?, &at)?);
        }
    }
    Ok(desired)
}

fn check_template(template: &ExternalSecretTemplate) -> Result<(), Error> {
    match template.engine_version.as_deref() {
        None | Some("") | Some("v2") => {}
        Some("v1") => {
            return Err(Error::Unsupported(
                "spec.target.template.engineVersion v1 (ESO removed it; use v2)".into(),
            ));
        }
        Some(other) => {
            return Err(Error::Misconfigured(format!(
                "spec.target.template.engineVersion {other:?} is not v2"
            )));
        }
    }
    match template.merge_policy.as_deref() {
        None | Some("") | Some("Replace") | Some("Merge") => Ok(()),
        Some(other) => Err(Error::Misconfigured(format!(
            "spec.target.template.mergePolicy {other:?} is not one of Replace, Merge"
        ))),
    }
}

#[derive(Clone, Copy)]
enum Target {
    Data,
    Labels,
    Annotations,
}

fn apply_template_from(
    desired: &mut Desired,
    from: &TemplateFrom,
    i: usize,
    sources: &TemplateSources,
    values: &BTreeMap<String, Vec<u8>>,
    render: Render<'_>,
) -> Result<(), Error> {
    let at = format!("spec.target.template.templateFrom[{i}]");
    // ESO compares the target without case; other targets are paths into generic
    // (non-Secret) targets, which are not served.
    let target = match from
        .target
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("") | Some("data") => Target::Data,
        Some("labels") => Target::Labels,
        Some("annotations") => Target::Annotations,
        Some(_) => {
            return Err(Error::Unsupported(format!(
                "{at}.target {:?} (only Data, Labels, Annotations of a Secret)",
                from.target.as_deref().unwrap_or_default()
            )));
        }
    };
    // ESO decodes each rendered value with `valuesDecodingStrategy`.
    let decoding = Decoding::parse(from.values_decoding_strategy.as_deref())
        .map_err(|e| Error::Misconfigured(format!("{at}.valuesDecodingStrategy: {e}")))?;
    let decode = |key: &str, value: Vec<u8>| {
        decoding.decode(key, value).map_err(|e| {
            Error::Misconfigured(format!(
                "{at}: failed to decode rendered template value: {e}"
            ))
        })
    };
    let mut templates: Vec<(String, bool, Vec<u8>)> = Vec::new();
    if let Some(reference) = &from.config_map {
        let map = sources.config_maps.get(&reference.name).ok_or_else(|| {
            Error::Misconfigured(format!(
                "{at}.configMap: ConfigMap {:?} not found",
                reference.name
            ))
        })?;
        for (key, keys_and_values) in items(reference, &at)? {
            let text = map.get(&key).ok_or_else(|| {
                Error::Misconfigured(format!(
                    "error in configmap {}: missing key {key}",
                    reference.name
                ))
            })?;
            templates.push((key, keys_and_values, text.clone().into_bytes()));
        }
    }
    if let Some(reference) = &from.secret {
        let map = sources.secrets.get(&reference.name).ok_or_else(|| {
            Error::Misconfigured(format!(
                "{at}.secret: Secret {:?} not found",
                reference.name
            ))
        })?;
        for (key, keys_and_values) in items(reference, &at)? {
            let text = map.get(&key).ok_or_else(|| {
                Error::Misconfigured(format!(
                    "error in secret {}: missing key {key}",
                    reference.name
                ))
            })?;
            templates.push((key, keys_and_values, text.clone()));
        }
    }
    if let Some(literal) = &from.literal {
        templates.push(("literal".into(), true, literal.clone().into_bytes()));
    }
    for (key, keys_and_values, text) in templates {
        let name = format!("{at}/{key}");
        let text = String::from_utf8(text)
            .map_err(|_| Error::Misconfigured(format!("{name}: the template is not UTF-8")))?;
        let output = render(&name, &text, values)?;
        if keys_and_values {
            let pairs: BTreeMap<String, String> = yaml_serde::from_slice(&output).map_err(|e| {
                Error::Misconfigured(format!(
                    "{name}: templateAs KeysAndValues must render a map of strings: {}",
                    e.location()
                        .map(|l| format!("line {} column {}", l.line(), l.column()))
                        .unwrap_or_else(|| "not a map".into())
                ))
            })?;
            for (k, v) in pairs {
                let value = decode(&k, v.into_bytes())?;
                put(desired, target, k, value, &name)?;
            }
        } else {
            let value = decode(&key, output)?;
            put(desired, target, key, value, &name)?;
        }
    }
    Ok(())
}

fn items(reference: &TemplateRef, at: &str) -> Result<Vec<(String, bool)>, Error> {
    reference
        .items
        .iter()
        .map(|item| match item.template_as.as_deref() {
            None | Some("") | Some("Values") => Ok((item.key.clone(), false)),
            Some("KeysAndValues") => Ok((item.key.clone(), true)),
            Some(other) => Err(Error::Misconfigured(format!(
                "{at}: templateAs {other:?} is not one of Values, KeysAndValues"
            ))),
        })
        .collect()
}

fn put(
    desired: &mut Desired,
    target: Target,
    key: String,
    value: Vec<u8>,
    at: &str,
) -> Result<(), Error> {
    match target {
        Target::Data => {
            desired.data.insert(key, value);
        }
        Target::Labels => {
            desired.labels.insert(key, text_of(value, at)?);
        }
        Target::Annotations => {
            desired.annotations.insert(key, text_of(value, at)?);
        }
    }
    Ok(())
}

fn text_of(bytes: Vec<u8>, at: &str) -> Result<String, Error> {
    String::from_utf8(bytes)
        .map_err(|_| Error::Misconfigured(format!("{at}: rendered value is not UTF-8")))
}

/// The keys of `secret.data` that `manager` set with server-side apply: a later apply without
/// them removes them (ESO's `getManagedDataKeys`, for its own field owner).
pub fn applied_data_keys(secret: &Secret, manager: &str) -> BTreeSet<String> {
    secret
        .managed_fields()
        .iter()
        .filter(|entry| {
            entry.manager.as_deref() == Some(manager) && entry.operation.as_deref() == Some("Apply")
        })
        .filter_map(|entry| entry.fields_v1.as_ref())
        .filter_map(|fields| fields.0.get("f:data")?.as_object())
        .flat_map(|data| data.keys())
        .filter_map(|key| key.strip_prefix("f:"))
        .map(str::to_owned)
        .collect()
}

/// The data the target Secret ends up with once `desired` is applied to `existing`: with
/// `Merge`/`CreateOrMerge`, the keys others wrote stay and the keys we applied before and no
/// longer want go; otherwise only the desired keys remain.
pub fn final_data(
    creation: CreationPolicy,
    desired: &BTreeMap<String, Vec<u8>>,
    existing: &BTreeMap<String, Vec<u8>>,
    applied_before: &BTreeSet<String>,
) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = if creation.keeps_other_keys() {
        existing
            .iter()
            .filter(|(key, _)| !applied_before.contains(*key))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    } else {
        BTreeMap::new()
    };
    data.extend(desired.iter().map(|(k, v)| (k.clone(), v.clone())));
    data
}

/// The keys an apply leaves behind that the Secret must not keep: with `Owner`/`Orphan`, ESO
/// replaces the whole data, but an apply cannot remove a key another field manager owns.
pub fn foreign_keys(
    creation: CreationPolicy,
    desired: &BTreeMap<String, Vec<u8>>,
    after_apply: &BTreeMap<String, Vec<u8>>,
) -> Vec<String> {
    if creation.keeps_other_keys() {
        return Vec::new();
    }
    after_apply
        .keys()
        .filter(|key| !desired.contains_key(*key))
        .cloned()
        .collect()
}

/// The data of a Secret as bytes.
pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .as_ref()
        .map(|data| data.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

/// How the controller of an existing Secret relates to this ExternalSecret (ESO's
/// `applyOwnership`): another ExternalSecret's Secret is never touched; a Secret controlled by
/// anything else cannot be taken over with `creationPolicy: Owner`.
pub fn check_owner(
    existing: &Secret,
    es_name: &str,
    creation: CreationPolicy,
) -> Result<(), Error> {
    let Some(controller) = existing
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
    else {
        return Ok(());
    };
    let is_external_secret = controller.kind == "ExternalSecret"
        && controller.api_version.starts_with("external-secrets.io/");
    let name = existing.name_any();
    if is_external_secret && controller.name != es_name {
        return Err(Error::Conflict(format!(
            "target is owned by another ExternalSecret: Secret {name} is controlled by ExternalSecret {:?}",
            controller.name
        )));
    }
    if !is_external_secret && creation == CreationPolicy::Owner {
        return Err(Error::Conflict(format!(
            "failed to take ownership of target secret: Secret {name} is already controlled by {} {:?}",
            controller.kind, controller.name
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
