//! Checking an expectation against the cluster. A mismatch names keys, lengths and short
//! hashes of values, never a value.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;
use sha3::{Digest, Sha3_224};

use super::case::{Expect, ExpectReady, ExpectSecret};
use super::eso;
use super::run::{Primary, dynamic_api};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls until every part of `expect` holds; on timeout, the last mismatches.
pub async fn wait_until(client: &Client, primary: &Primary, expect: &Expect) -> Result<(), String> {
    let timeout = expect
        .timeout
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_TIMEOUT);
    let start = Instant::now();
    loop {
        let mismatches = mismatches(client, primary, expect).await;
        if mismatches.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "after {timeout:?}:\n      - {}",
                mismatches.join("\n      - ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn mismatches(client: &Client, primary: &Primary, expect: &Expect) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(secret) = &expect.secret {
        check_secret(client, primary, secret, &mut out).await;
    }
    for secret in &expect.secrets {
        check_secret(client, primary, secret, &mut out).await;
    }
    for absent in &expect.absent_secrets {
        let namespace = absent.namespace.as_deref().unwrap_or(&primary.namespace);
        let name = absent.name.as_deref().unwrap_or(&primary.target);
        match Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
        {
            Ok(None) => {}
            Ok(Some(_)) => out.push(format!("Secret {namespace}/{name} exists; expected none")),
            Err(e) => out.push(format!("reading Secret {namespace}/{name}: {e}")),
        }
    }
    let needs_es = expect.ready.is_some() || expect.status.is_some() || !expect.events.is_empty();
    if needs_es {
        match primary.external_secret.as_deref() {
            None => out.push("the case has no ExternalSecret to check".into()),
            Some(name) => {
                let es = get(client, "ExternalSecret", Some(&primary.namespace), name).await;
                match es {
                    Err(e) => out.push(e),
                    Ok(None) => out.push(format!(
                        "ExternalSecret {}/{name} does not exist",
                        primary.namespace
                    )),
                    Ok(Some(es)) => {
                        let what = format!("ExternalSecret {}/{name}", primary.namespace);
                        if let Some(ready) = &expect.ready {
                            check_ready(&what, &es, ready, &mut out);
                        }
                        if let Some(status) = &expect.status {
                            check_status(&what, &es, status, &mut out);
                        }
                    }
                }
                if !expect.events.is_empty() {
                    check_events(client, &primary.namespace, name, &expect.events, &mut out).await;
                }
            }
        }
    }
    for other in &expect.external_secrets {
        let what = format!("ExternalSecret {}/{}", other.namespace, other.name);
        match get(
            client,
            "ExternalSecret",
            Some(&other.namespace),
            &other.name,
        )
        .await
        {
            Err(e) => out.push(e),
            Ok(None) if other.absent => {}
            Ok(None) => out.push(format!("{what} does not exist")),
            Ok(Some(_)) if other.absent => out.push(format!("{what} exists; expected none")),
            Ok(Some(es)) => {
                if let Some(ready) = &other.ready {
                    check_ready(&what, &es, ready, &mut out);
                }
                if let Some(labels) = &other.labels {
                    let actual = string_map(&es["metadata"]["labels"]);
                    diff_map(&what, "labels", labels, &actual, &mut out);
                }
            }
        }
    }
    for store in &expect.stores {
        let namespace = match store.kind.as_str() {
            "ClusterSecretStore" => None,
            _ => Some(store.namespace.as_deref().unwrap_or(&primary.namespace)),
        };
        let what = format!("{} {}", store.kind, store.name);
        match get(client, &store.kind, namespace, &store.name).await {
            Err(e) => out.push(e),
            Ok(None) => out.push(format!("{what} does not exist")),
            Ok(Some(object)) => check_ready(&what, &object, &store.ready, &mut out),
        }
    }
    if let Some(ces) = &expect.cluster_external_secret {
        let name = ces
            .name
            .as_deref()
            .or(primary.cluster_external_secret.as_deref());
        match name {
            None => out.push("the case has no ClusterExternalSecret".into()),
            Some(name) => {
                let what = format!("ClusterExternalSecret {name}");
                match get(client, "ClusterExternalSecret", None, name).await {
                    Err(e) => out.push(e),
                    Ok(None) => out.push(format!("{what} does not exist")),
                    Ok(Some(object)) => {
                        if let Some(expected) = &ces.provisioned_namespaces {
                            let actual: BTreeSet<String> =
                                object["status"]["provisionedNamespaces"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .filter_map(|n| n.as_str().map(str::to_owned))
                                    .collect();
                            let expected: BTreeSet<String> = expected.iter().cloned().collect();
                            if actual != expected {
                                out.push(format!(
                                    "{what}: status.provisionedNamespaces {actual:?}, expected {expected:?}"
                                ));
                            }
                        }
                        if let Some(status) = &ces.ready {
                            let actual = condition(&object, "Ready")
                                .map(|c| c["status"].as_str().unwrap_or_default().to_owned());
                            if actual.as_deref() != Some(status.as_str()) {
                                out.push(format!(
                                    "{what}: Ready status {actual:?}, expected {status:?}"
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

async fn check_secret(
    client: &Client,
    primary: &Primary,
    expected: &ExpectSecret,
    out: &mut Vec<String>,
) {
    let namespace = expected.namespace.as_deref().unwrap_or(&primary.namespace);
    let name = expected.name.as_deref().unwrap_or(&primary.target);
    let what = format!("Secret {namespace}/{name}");
    let secret = match Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(Some(secret)) => secret,
        Ok(None) => return out.push(format!("{what} does not exist")),
        Err(e) => return out.push(format!("reading {what}: {e}")),
    };
    let actual_type = secret.type_.clone().unwrap_or_else(|| "Opaque".into());
    if actual_type != expected.type_ {
        out.push(format!(
            "{what}: type {actual_type:?}, expected {:?}",
            expected.type_
        ));
    }
    let actual: BTreeMap<String, Vec<u8>> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let mut wanted: BTreeMap<String, Vec<u8>> = expected
        .data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    for (key, encoded) in &expected.binary_data {
        match base64::engine::general_purpose::STANDARD.decode(encoded) {
            Ok(bytes) => {
                wanted.insert(key.clone(), bytes);
            }
            Err(e) => out.push(format!("case error: binaryData {key:?} is not base64: {e}")),
        }
    }
    diff_data(&what, &wanted, &actual, out);

    let labels: BTreeMap<String, String> = secret.metadata.labels.clone().unwrap_or_default();
    let annotations: BTreeMap<String, String> =
        secret.metadata.annotations.clone().unwrap_or_default();
    let user = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(k, _)| !k.starts_with(eso::BOOKKEEPING_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    diff_map(&what, "labels", &expected.labels, &user(&labels), out);
    diff_map(
        &what,
        "annotations",
        &expected.annotations,
        &user(&annotations),
        out,
    );

    let managed = labels.get(eso::MANAGED_LABEL).map(String::as_str);
    let hash = annotations.get(eso::DATA_HASH_ANNOTATION);
    if expected.managed {
        if managed != Some("true") {
            out.push(format!(
                "{what}: label {} is {managed:?}, expected \"true\"",
                eso::MANAGED_LABEL
            ));
        }
        let eso_hash = eso::data_hash(&actual);
        if hash != Some(&eso_hash) {
            out.push(format!(
                "{what}: annotation {} is {hash:?}, expected ESO's hash of the data {eso_hash:?}",
                eso::DATA_HASH_ANNOTATION
            ));
        }
    } else if managed.is_some() || hash.is_some() {
        out.push(format!(
            "{what}: has ESO's managed label {managed:?} / data-hash, expected an untouched Secret"
        ));
    }

    let owner_name = expected
        .owner_name
        .as_deref()
        .or(primary.owner_name.as_deref())
        .unwrap_or_default();
    let controller_refs: Vec<String> = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.kind == "ExternalSecret")
        .map(|r| {
            format!(
                "{}/{} controller={:?} blockOwnerDeletion={:?}",
                r.kind, r.name, r.controller, r.block_owner_deletion
            )
        })
        .collect();
    let created_by = labels.get(eso::OWNER_LABEL);
    if expected.owner {
        let wanted_ref = format!(
            "ExternalSecret/{owner_name} controller=Some(true) blockOwnerDeletion=Some(true)"
        );
        if controller_refs != [wanted_ref.clone()] {
            out.push(format!(
                "{what}: ownerReferences {controller_refs:?}, expected [{wanted_ref:?}]"
            ));
        }
        let wanted_label = eso::owner_label(namespace, owner_name);
        if created_by != Some(&wanted_label) {
            out.push(format!(
                "{what}: label {} is {created_by:?}, expected ESO's hash of {namespace}/{owner_name}",
                eso::OWNER_LABEL
            ));
        }
    } else {
        if !controller_refs.is_empty() {
            out.push(format!(
                "{what}: ownerReferences {controller_refs:?}, expected none to an ExternalSecret"
            ));
        }
        if created_by.is_some() {
            out.push(format!(
                "{what}: has label {}, expected none (not Owner)",
                eso::OWNER_LABEL
            ));
        }
    }
    let immutable = secret.immutable.unwrap_or(false);
    if immutable != expected.immutable {
        out.push(format!(
            "{what}: immutable {immutable}, expected {}",
            expected.immutable
        ));
    }
}

/// Key names, lengths and hash prefixes only.
fn diff_data(
    what: &str,
    expected: &BTreeMap<String, Vec<u8>>,
    actual: &BTreeMap<String, Vec<u8>>,
    out: &mut Vec<String>,
) {
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .collect();
    let extra: Vec<&String> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        out.push(format!("{what}: missing data keys {missing:?}"));
    }
    if !extra.is_empty() {
        out.push(format!("{what}: unexpected data keys {extra:?}"));
    }
    for (key, wanted) in expected {
        if let Some(got) = actual.get(key)
            && got != wanted
        {
            out.push(format!(
                "{what}: data[{key:?}] differs: expected {} bytes (sha3 {}), got {} bytes (sha3 {})",
                wanted.len(),
                short_hash(wanted),
                got.len(),
                short_hash(got)
            ));
        }
    }
}

fn short_hash(bytes: &[u8]) -> String {
    Sha3_224::digest(bytes)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Labels and annotations are not secret: the diff shows them.
fn diff_map(
    what: &str,
    field: &str,
    expected: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
    out: &mut Vec<String>,
) {
    if expected != actual {
        out.push(format!("{what}: {field} {actual:?}, expected {expected:?}"));
    }
}

fn check_ready(what: &str, object: &Value, expected: &ExpectReady, out: &mut Vec<String>) {
    let ready = condition(object, "Ready");
    if expected.absent {
        if let Some(ready) = ready {
            out.push(format!(
                "{what}: has a Ready condition ({}/{}), expected none (not served)",
                ready["status"], ready["reason"]
            ));
        }
        return;
    }
    let Some(ready) = ready else {
        return out.push(format!("{what}: no Ready condition yet"));
    };
    let status = ready["status"].as_str().unwrap_or_default();
    let reason = ready["reason"].as_str().unwrap_or_default();
    let message = ready["message"].as_str().unwrap_or_default();
    let mut wrong = Vec::new();
    if expected.status.as_deref().is_some_and(|s| s != status) {
        wrong.push("status");
    }
    if expected.reason.as_deref().is_some_and(|r| r != reason) {
        wrong.push("reason");
    }
    let missing: Vec<&String> = expected
        .message
        .iter()
        .filter(|m| !message.contains(m.as_str()))
        .collect();
    if !missing.is_empty() {
        wrong.push("message");
    }
    if !wrong.is_empty() {
        out.push(format!(
            "{what}: Ready is {status}/{reason} {message:?}; expected {}/{} with {:?} (wrong: {})",
            expected.status.as_deref().unwrap_or("*"),
            expected.reason.as_deref().unwrap_or("*"),
            expected.message,
            wrong.join(", ")
        ));
    }
}

fn check_status(
    what: &str,
    es: &Value,
    expected: &super::case::ExpectStatus,
    out: &mut Vec<String>,
) {
    let status = &es["status"];
    if let Some(binding) = &expected.binding {
        let actual = status["binding"]["name"].as_str();
        if actual != Some(binding.as_str()) {
            out.push(format!(
                "{what}: status.binding.name {actual:?}, expected {binding:?}"
            ));
        }
    }
    if expected.refresh_time && status["refreshTime"].as_str().is_none() {
        out.push(format!("{what}: status.refreshTime is not set"));
    }
    if expected.synced_resource_version {
        let meta = &es["metadata"];
        let wanted = eso::resource_version(
            meta["generation"].as_i64().unwrap_or_default(),
            &string_map(&meta["labels"]),
            &string_map(&meta["annotations"]),
        );
        let actual = status["syncedResourceVersion"].as_str();
        if actual != Some(wanted.as_str()) {
            out.push(format!(
                "{what}: status.syncedResourceVersion {actual:?}, expected ESO's {wanted:?}"
            ));
        }
    }
}

async fn check_events(
    client: &Client,
    namespace: &str,
    name: &str,
    reasons: &[String],
    out: &mut Vec<String>,
) {
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await;
    let events = match events {
        Ok(list) => list.items,
        Err(e) => return out.push(format!("listing Events: {e}")),
    };
    let actual: BTreeSet<String> = events
        .iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("ExternalSecret"))
        .filter_map(|e| e.reason.clone())
        .collect();
    let missing: Vec<&String> = reasons.iter().filter(|r| !actual.contains(*r)).collect();
    if !missing.is_empty() {
        out.push(format!(
            "ExternalSecret {namespace}/{name}: no Event with reason {missing:?} (has {actual:?})"
        ));
    }
}

pub fn condition<'v>(object: &'v Value, type_: &str) -> Option<&'v Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"].as_str() == Some(type_))
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

async fn get(
    client: &Client,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, String> {
    let api = dynamic_api(client, kind, namespace)?;
    match api.get_opt(name).await {
        Ok(found) => Ok(found.map(|o| serde_json::to_value(o).unwrap_or_default())),
        Err(e) => Err(format!("reading {kind} {name}: {e}")),
    }
}
