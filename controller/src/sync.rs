//! Reads what an ExternalSecret asks for from Secrets Manager and builds the Secret's data.
//!
//! Depends only on [`SecretsSource`], so the logic is tested with a fake. `dataFrom` is applied
//! first and `data` after it, so an explicit `data` key wins over an extracted one, as in ESO.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use secret_bridge::mapping;

use crate::Error;
use crate::api::external_secret::{ExternalSecretSpec, RemoteRef};
use crate::aws::{SecretValue, SecretsSource, VersionSelector};

/// The Secret data, and the AWS VersionId read for each `key[@version]`.
#[derive(Default, PartialEq)]
pub struct SecretData {
    pub data: BTreeMap<String, Vec<u8>>,
    pub versions: BTreeMap<String, String>,
    /// Secrets that are gone from AWS and were skipped (see [`fetch_skipping_deleted`]).
    pub deleted: Vec<String>,
}

impl std::fmt::Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretData")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("versions", &self.versions)
            .field("deleted", &self.deleted)
            .finish()
    }
}

/// Refuses the fields this version does not implement, naming them, rather than ignoring them.
pub fn check_supported(spec: &ExternalSecretSpec) -> Result<(), Error> {
    let unsupported = |field: String| Err(Error::Unsupported(field));
    for (i, data) in spec.data.iter().enumerate() {
        if data.source_ref.is_some() {
            return unsupported(format!("spec.data[{i}].sourceRef (generators)"));
        }
        check_remote_ref(&data.remote_ref, &format!("spec.data[{i}].remoteRef"))?;
    }
    for (i, from) in spec.data_from.iter().enumerate() {
        let at = format!("spec.dataFrom[{i}]");
        if from.find.is_some() {
            return unsupported(format!("{at}.find"));
        }
        if !from.rewrite.is_empty() {
            return unsupported(format!("{at}.rewrite"));
        }
        if from.source_ref.is_some() {
            return unsupported(format!("{at}.sourceRef (generators)"));
        }
        match &from.extract {
            Some(extract) => check_remote_ref(extract, &format!("{at}.extract"))?,
            None => return Err(Error::Spec(format!("{at} has no `extract`"))),
        }
    }
    Ok(())
}

fn check_remote_ref(remote: &RemoteRef, at: &str) -> Result<(), Error> {
    if remote.key.is_empty() {
        return Err(Error::Spec(format!("{at}.key is empty")));
    }
    if let Some(policy) = remote.metadata_policy.as_deref().filter(|p| *p != "None") {
        return Err(Error::Unsupported(format!("{at}.metadataPolicy {policy}")));
    }
    if let Some(strategy) = remote
        .conversion_strategy
        .as_deref()
        .filter(|s| *s != "Default")
    {
        return Err(Error::Unsupported(format!(
            "{at}.conversionStrategy {strategy}"
        )));
    }
    decoding(remote, at).map(|_| ())
}

#[derive(Clone, Copy)]
enum Decoding {
    None,
    Base64,
    Base64Url,
    Auto,
}

fn decoding(remote: &RemoteRef, at: &str) -> Result<Decoding, Error> {
    match remote.decoding_strategy.as_deref() {
        None | Some("") | Some("None") => Ok(Decoding::None),
        Some("Base64") => Ok(Decoding::Base64),
        Some("Base64URL") => Ok(Decoding::Base64Url),
        Some("Auto") => Ok(Decoding::Auto),
        Some(other) => Err(Error::Spec(format!(
            "{at}.decodingStrategy {other:?} is not one of None, Base64, Base64URL, Auto"
        ))),
    }
}

fn decode(bytes: Vec<u8>, decoding: Decoding, secret: &str) -> Result<Vec<u8>, Error> {
    let failed =
        |name: &str| Error::Spec(format!("a value of secret {secret:?} is not valid {name}"));
    match decoding {
        Decoding::None => Ok(bytes),
        Decoding::Base64 => STANDARD.decode(&bytes).map_err(|_| failed("base64")),
        Decoding::Base64Url => URL_SAFE
            .decode(&bytes)
            .or_else(|_| URL_SAFE_NO_PAD.decode(&bytes))
            .map_err(|_| failed("base64url")),
        Decoding::Auto => Ok(STANDARD
            .decode(&bytes)
            .or_else(|_| URL_SAFE.decode(&bytes))
            .unwrap_or(bytes)),
    }
}

/// Reads every secret the spec names (each `key`/`version` once) and builds the Secret data.
/// `prefix` is the store's `prefix`, prepended to every key.
pub async fn fetch<S: SecretsSource>(
    spec: &ExternalSecretSpec,
    prefix: &str,
    source: &S,
) -> Result<SecretData, Error> {
    fetch_inner(spec, prefix, source, false).await
}

/// Like [`fetch`], but a secret that is gone from AWS is skipped (and listed in
/// `deleted`) rather than failing the sync: ESO's `deletionPolicy` `Delete` and `Merge`.
pub async fn fetch_skipping_deleted<S: SecretsSource>(
    spec: &ExternalSecretSpec,
    prefix: &str,
    source: &S,
) -> Result<SecretData, Error> {
    fetch_inner(spec, prefix, source, true).await
}

async fn fetch_inner<S: SecretsSource>(
    spec: &ExternalSecretSpec,
    prefix: &str,
    source: &S,
    skip_deleted: bool,
) -> Result<SecretData, Error> {
    check_supported(spec)?;
    let mut deleted = Vec::new();
    let mut skipped = |result: Result<SecretValue, Error>| match result {
        Err(Error::Aws(error)) if skip_deleted && error.is_deleted() => {
            deleted.push(error.secret.clone());
            Ok(None)
        }
        other => other.map(Some),
    };
    let mut reader = Reader {
        source,
        prefix,
        cache: HashMap::new(),
        versions: BTreeMap::new(),
    };
    let mut data = BTreeMap::new();
    for (i, from) in spec.data_from.iter().enumerate() {
        let Some(remote) = &from.extract else {
            continue;
        };
        let at = format!("spec.dataFrom[{i}].extract");
        let Some(value) = skipped(reader.read(remote).await)? else {
            continue;
        };
        let text = text_of(&value, "its keys")?;
        let json = match remote.property.as_deref().filter(|p| !p.is_empty()) {
            Some(property) => String::from_utf8(mapping::property(&value.name, text, property)?)
                .map_err(|_| Error::Spec(format!("{at}: property is not text")))?,
            None => text.to_owned(),
        };
        let decoding = decoding(remote, &at)?;
        for (key, bytes) in mapping::extract(&value.name, &json)? {
            data.insert(key, decode(bytes, decoding, &value.name)?);
        }
    }
    for (i, item) in spec.data.iter().enumerate() {
        let remote = &item.remote_ref;
        let at = format!("spec.data[{i}].remoteRef");
        let Some(value) = skipped(reader.read(remote).await)? else {
            continue;
        };
        let bytes = match remote.property.as_deref().filter(|p| !p.is_empty()) {
            Some(property) => {
                mapping::property(&value.name, text_of(&value, "a property")?, property)?
            }
            None => match (&value.string, &value.binary) {
                (Some(text), _) => text.clone().into_bytes(),
                (None, Some(binary)) => binary.clone(),
                (None, None) => Vec::new(),
            },
        };
        data.insert(
            item.secret_key.clone(),
            decode(bytes, decoding(remote, &at)?, &value.name)?,
        );
    }
    Ok(SecretData {
        data,
        versions: reader.versions,
        deleted,
    })
}

fn text_of<'v>(value: &'v SecretValue, what: &'static str) -> Result<&'v str, Error> {
    if let Some(text) = &value.string {
        return Ok(text);
    }
    let binary = value.binary.as_deref().unwrap_or_default();
    std::str::from_utf8(binary).map_err(|_| {
        mapping::MappingError::NotText {
            secret: value.name.clone(),
            what,
        }
        .into()
    })
}

struct Reader<'s, S> {
    source: &'s S,
    prefix: &'s str,
    cache: HashMap<(String, VersionSelector), SecretValue>,
    versions: BTreeMap<String, String>,
}

impl<S: SecretsSource> Reader<'_, S> {
    async fn read(&mut self, remote: &RemoteRef) -> Result<SecretValue, Error> {
        let key = format!("{}{}", self.prefix, remote.key);
        let version = VersionSelector::from_remote_ref(remote.version.as_deref());
        let cache_key = (key, version);
        if let Some(value) = self.cache.get(&cache_key) {
            return Ok(value.clone());
        }
        let mut value = self
            .source
            .get_secret_value(&cache_key.0, &cache_key.1)
            .await?;
        if value.name.is_empty() {
            value.name = cache_key.0.clone();
        }
        let version_key = match remote.version.as_deref().filter(|v| !v.is_empty()) {
            Some(version) => format!("{}@{version}", remote.key),
            None => remote.key.clone(),
        };
        self.versions.insert(version_key, value.version_id.clone());
        self.cache.insert(cache_key, value.clone());
        Ok(value)
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
