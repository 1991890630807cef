//! Reads what an ExternalSecret asks for from Secrets Manager and builds the Secret's data.
//!
//! Depends only on [`SecretsSource`], so the logic is tested with a fake. It follows ESO's
//! `GetProviderSecretData`: `dataFrom` entries in order (later keys win), then `data` (which
//! wins over `dataFrom`). For each `dataFrom` entry: read (`extract` or `find`), `rewrite`, or
//! else `conversionStrategy`, key validation, `decodingStrategy`, `nullBytePolicy`. For each
//! `data` entry: read, `property`, `decodingStrategy`, `nullBytePolicy`.
//!
//! Each secret is read once per sync. When a sync reads several different secrets at
//! `AWSCURRENT`, they are read with BatchGetSecretValue, 20 per call; a failed batch call (for
//! example a policy without `secretsmanager:BatchGetSecretValue`) falls back to one
//! GetSecretValue per secret, so the batch never makes a sync fail that would have succeeded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Display;

use secret_bridge::conversion::{self, Conversion, NullBytePolicy};
use secret_bridge::decoding::Decoding;
use secret_bridge::{mapping, rewrite, secret_id};
use tracing::debug;

use crate::Error;
use crate::api::external_secret::{
    ExternalSecretDataFrom, ExternalSecretRewrite, ExternalSecretSpec, RemoteRef,
};
use crate::aws::{
    AwsError, BATCH_SIZE, BatchSelection, SecretValue, SecretsSource, VersionSelector,
};
use crate::external_secret::find;

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

/// Refuses the fields this version does not implement, naming them, rather than ignoring them,
/// and values no strategy accepts.
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
        if from.source_ref.is_some() {
            return unsupported(format!("{at}.sourceRef (generators)"));
        }
        for (j, rewrite) in from.rewrite.iter().enumerate() {
            if rewrite.merge.is_some() {
                return unsupported(format!("{at}.rewrite[{j}].merge"));
            }
        }
        // As ESO: `find` wins when an entry has both.
        match (&from.find, &from.extract) {
            (None, Some(extract)) => check_remote_ref(extract, &format!("{at}.extract"))?,
            (Some(find), _) => {
                let at = format!("{at}.find");
                spec_value(&at, Conversion::parse(find.conversion_strategy.as_deref()))?;
                spec_value(&at, Decoding::parse(find.decoding_strategy.as_deref()))?;
                spec_value(&at, NullBytePolicy::parse(find.null_byte_policy.as_deref()))?;
            }
            (None, None) => {
                return Err(Error::Misconfigured(format!(
                    "{at} has none of `extract`, `find`, `sourceRef`"
                )));
            }
        }
    }
    Ok(())
}

fn check_remote_ref(remote: &RemoteRef, at: &str) -> Result<(), Error> {
    if remote.key.is_empty() {
        return Err(Error::Misconfigured(format!("{at}.key is empty")));
    }
    metadata_fetch(remote, at)?;
    spec_value(at, Conversion::parse(remote.conversion_strategy.as_deref()))?;
    spec_value(at, Decoding::parse(remote.decoding_strategy.as_deref()))?;
    spec_value(
        at,
        NullBytePolicy::parse(remote.null_byte_policy.as_deref()),
    )?;
    Ok(())
}

fn spec_value<T, E: Display>(at: &str, parsed: Result<T, E>) -> Result<T, Error> {
    parsed.map_err(|e| Error::Misconfigured(format!("{at}: {e}")))
}

/// Whether `metadataPolicy` is `Fetch` (read the secret's tags, not its value).
fn metadata_fetch(remote: &RemoteRef, at: &str) -> Result<bool, Error> {
    match remote.metadata_policy.as_deref().unwrap_or_default() {
        "" | "None" => Ok(false),
        "Fetch" => Ok(true),
        other => Err(Error::Misconfigured(format!(
            "{at}.metadataPolicy {other:?} is not one of None, Fetch"
        ))),
    }
}

/// An error about the data of the field at `at`, worded as ESO words it.
fn processing(at: &str) -> impl FnOnce(String) -> Error + '_ {
    move |reason| Error::Misconfigured(format!("error processing {at}, err: {reason}"))
}

/// Reads every secret the spec names (each `key`/`version` once) and builds the Secret data.
/// `prefix` is the store's `prefix`, prepended to every `remoteRef.key` (not to `find`, which
/// matches full names).
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
    let mut reader = Reader::new(source, prefix);
    reader.prefetch(current_keys(spec, prefix)).await;
    let mut data = BTreeMap::new();
    for (i, from) in spec.data_from.iter().enumerate() {
        let (map, conversion, decoding, null_bytes, at) = match (&from.find, &from.extract) {
            (None, Some(remote)) => {
                let at = format!("spec.dataFrom[{i}].extract");
                let Some(value) = skipped(reader.read(remote).await)? else {
                    continue;
                };
                let json = String::from_utf8(get_secret(remote, &value)?)
                    .map_err(|_| processing(&at)("the value is not UTF-8 text".into()))?;
                let map = mapping::extract(&remote.key, &json)?;
                (
                    map,
                    remote.conversion_strategy.as_deref(),
                    remote.decoding_strategy.as_deref(),
                    remote.null_byte_policy.as_deref(),
                    at,
                )
            }
            (Some(spec_find), _) => {
                let at = format!("spec.dataFrom[{i}].find");
                let map =
                    find::find_all(spec_find, &mut reader)
                        .await
                        .map_err(|error| match error {
                            find::FindError::Aws(aws) => Error::Aws(aws),
                            find::FindError::Misconfigured(reason) => processing(&at)(reason),
                        })?;
                (
                    map,
                    spec_find.conversion_strategy.as_deref(),
                    spec_find.decoding_strategy.as_deref(),
                    spec_find.null_byte_policy.as_deref(),
                    at,
                )
            }
            (None, None) => continue,
        };
        let map =
            post_process(from, map, conversion, decoding, null_bytes).map_err(processing(&at))?;
        data.extend(map);
    }
    for (i, item) in spec.data.iter().enumerate() {
        let remote = &item.remote_ref;
        let at = format!("spec.data[{i}] (key: {})", remote.key);
        let Some(value) = skipped(reader.read(remote).await)? else {
            continue;
        };
        let bytes = get_secret(remote, &value)?;
        let decoding = Decoding::parse(remote.decoding_strategy.as_deref())
            .map_err(|e| processing(&at)(e.to_string()))?;
        let bytes = decoding.decode(&item.secret_key, bytes).map_err(|e| {
            let strategy = remote.decoding_strategy.as_deref().unwrap_or("None");
            processing(&at)(format!(
                "error applying decoding strategy {strategy} to data: {e}"
            ))
        })?;
        NullBytePolicy::parse(remote.null_byte_policy.as_deref())
            .and_then(|policy| policy.check(&item.secret_key, &bytes))
            .map_err(|e| processing(&at)(e.to_string()))?;
        data.insert(item.secret_key.clone(), bytes);
    }
    Ok(SecretData {
        data,
        versions: reader.versions,
        deleted,
    })
}

/// ESO's `GetSecret`: the whole value (string, else binary), or the gjson `property` of it.
fn get_secret(remote: &RemoteRef, value: &SecretValue) -> Result<Vec<u8>, Error> {
    match remote.property.as_deref().filter(|p| !p.is_empty()) {
        None => match (&value.string, &value.binary) {
            (Some(text), _) => Ok(text.clone().into_bytes()),
            (None, Some(binary)) => Ok(binary.clone()),
            (None, None) => Err(Error::Misconfigured(format!(
                "invalid secret received. no secret string nor binary for key: {}",
                remote.key
            ))),
        },
        Some(property) => {
            // As ESO: the binary value wins when both are set; it is read as text.
            let payload = match (&value.binary, &value.string) {
                (Some(binary), _) => String::from_utf8_lossy(binary),
                (None, Some(text)) => text.as_str().into(),
                (None, None) => "".into(),
            };
            Ok(mapping::property(&remote.key, &payload, property)?)
        }
    }
}

/// `rewrite` (or, without one, `conversionStrategy`), key validation, decoding and the null
/// byte check of one `dataFrom` entry's keys, in ESO's order.
fn post_process(
    from: &ExternalSecretDataFrom,
    mut map: BTreeMap<String, Vec<u8>>,
    conversion: Option<&str>,
    decoding: Option<&str>,
    null_bytes: Option<&str>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let text = |e: &dyn Display| e.to_string();
    for (j, operation) in from.rewrite.iter().enumerate() {
        map = apply_rewrite(j, operation, map)
            .map_err(|e| format!("error applying rewrite to keys: {e}"))?;
    }
    if from.rewrite.is_empty() {
        let converted = Conversion::parse(conversion).and_then(|c| c.convert_keys(map));
        map = converted.map_err(|e| {
            let strategy = conversion.unwrap_or("Default");
            format!("error applying conversion strategy {strategy} to keys: {e}")
        })?;
    }
    conversion::validate_keys(&mut map).map_err(|e| {
        format!("invalid secret keys (TIP: use rewrite or conversionStrategy to change keys): {e}")
    })?;
    let strategy = Decoding::parse(decoding).map_err(|e| text(&e))?;
    let map = map
        .into_iter()
        .map(|(key, value)| {
            let value = strategy.decode(&key, value)?;
            Ok((key, value))
        })
        .collect::<Result<BTreeMap<_, _>, secret_bridge::decoding::DecodingError>>()
        .map_err(|e| {
            let strategy = decoding.unwrap_or("None");
            format!("error applying decoding strategy {strategy} to data: {e}")
        })?;
    NullBytePolicy::parse(null_bytes)
        .and_then(|policy| policy.check_all(&map))
        .map_err(|e| text(&e))?;
    Ok(map)
}

fn apply_rewrite(
    index: usize,
    operation: &ExternalSecretRewrite,
    map: BTreeMap<String, Vec<u8>>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    // As ESO: `regexp` before `transform` when both are set (only the first applies), and an
    // operation with neither leaves the keys as they are.
    let rewritten = match (&operation.regexp, &operation.transform) {
        (Some(regexp), _) => rewrite::regexp(index, &regexp.source, &regexp.target, map),
        (None, Some(transform)) => rewrite::transform(index, &transform.template, map),
        (None, None) => Ok(map),
    };
    rewritten.map_err(|e| e.to_string())
}

/// The distinct secrets (with the store prefix) that the spec reads at `AWSCURRENT`: those a
/// batch can read.
fn current_keys(spec: &ExternalSecretSpec, prefix: &str) -> Vec<String> {
    let refs = spec.data.iter().map(|d| &d.remote_ref).chain(
        spec.data_from
            .iter()
            .filter(|d| d.find.is_none())
            .filter_map(|d| d.extract.as_ref()),
    );
    let mut seen = HashSet::new();
    refs.filter(|r| {
        VersionSelector::from_remote_ref(r.version.as_deref()) == VersionSelector::current()
            && !matches!(r.metadata_policy.as_deref(), Some("Fetch"))
    })
    .map(|r| format!("{prefix}{}", r.key))
    .filter(|key| seen.insert(key.clone()))
    .collect()
}

/// What one read is keyed by: the secret id, the version, and whether tags are read.
type CacheKey = (String, VersionSelector, bool);

/// Reads secrets once per sync, and records the versions read.
pub(crate) struct Reader<'s, S> {
    pub(crate) source: &'s S,
    prefix: &'s str,
    cache: HashMap<CacheKey, Result<SecretValue, AwsError>>,
    pub(crate) versions: BTreeMap<String, String>,
}

impl<'s, S: SecretsSource> Reader<'s, S> {
    pub(crate) fn new(source: &'s S, prefix: &'s str) -> Self {
        Reader {
            source,
            prefix,
            cache: HashMap::new(),
            versions: BTreeMap::new(),
        }
    }

    /// Reads the `AWSCURRENT` values of `ids` with BatchGetSecretValue when there are several,
    /// keeping each secret's value or error for [`Reader::read`]. Secrets a batch did not
    /// answer for are left to GetSecretValue.
    pub(crate) async fn prefetch(&mut self, ids: Vec<String>) {
        if ids.len() < 2 {
            return;
        }
        for chunk in ids.chunks(BATCH_SIZE) {
            let page = match self
                .source
                .batch_get_secret_value(BatchSelection::Ids(chunk), None)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    debug!(%error, "BatchGetSecretValue failed; reading secrets one by one");
                    return;
                }
            };
            let mut values = page.values;
            for id in chunk {
                let found = values
                    .iter()
                    .position(|v| secret_id::identifies(id, &v.name, &v.arn))
                    .map(|at| Ok(values.swap_remove(at)))
                    .or_else(|| {
                        page.errors
                            .iter()
                            .find(|e| e.secret == *id)
                            .cloned()
                            .map(Err)
                    });
                if let Some(result) = found {
                    let key = (id.clone(), VersionSelector::current(), false);
                    self.cache.insert(key, result);
                }
            }
        }
    }

    /// Keeps values read by a batch, so that a later read of the same secret needs no call.
    pub(crate) fn remember(&mut self, value: &SecretValue) {
        let key = (value.name.clone(), VersionSelector::current(), false);
        self.versions
            .insert(value.name.clone(), value.version_id.clone());
        self.cache.insert(key, Ok(value.clone()));
    }

    /// The `AWSCURRENT` value of the secret named `name` (no prefix applied).
    pub(crate) async fn current(&mut self, name: &str) -> Result<SecretValue, AwsError> {
        let value = self
            .cached(name.to_owned(), VersionSelector::current(), false)
            .await?;
        self.versions
            .insert(name.to_owned(), value.version_id.clone());
        Ok(value)
    }

    /// Reads what `remote` names: its value at its version, or its tags (`metadataPolicy: Fetch`).
    pub(crate) async fn read(&mut self, remote: &RemoteRef) -> Result<SecretValue, Error> {
        let key = format!("{}{}", self.prefix, remote.key);
        let version = VersionSelector::from_remote_ref(remote.version.as_deref());
        let tags = metadata_fetch(remote, "remoteRef")?;
        let value = self.cached(key, version, tags).await?;
        if !tags {
            let version_key = match remote.version.as_deref().filter(|v| !v.is_empty()) {
                Some(version) => format!("{}@{version}", remote.key),
                None => remote.key.clone(),
            };
            self.versions.insert(version_key, value.version_id.clone());
        }
        Ok(value)
    }

    async fn cached(
        &mut self,
        key: String,
        version: VersionSelector,
        tags: bool,
    ) -> Result<SecretValue, AwsError> {
        let cache_key = (key, version, tags);
        if let Some(result) = self.cache.get(&cache_key) {
            return result.clone();
        }
        let (key, version, _) = &cache_key;
        let result = if tags {
            self.source.describe_secret(key).await.map(|metadata| {
                let tags = metadata.tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                SecretValue {
                    string: Some(mapping::tags_json(tags)),
                    binary: None,
                    name: metadata.name,
                    arn: metadata.arn,
                    version_id: String::new(),
                }
            })
        } else {
            self.source.get_secret_value(key, version).await
        };
        let result = result.map(|mut value| {
            if value.name.is_empty() {
                value.name = key.clone();
            }
            value
        });
        self.cache.insert(cache_key, result.clone());
        result
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
