//! `dataFrom.find`: every secret whose name, path and tags match, one key per secret (its
//! name), as ESO's AWS provider (`GetAllSecrets`) finds them:
//!
//! - neither `name` nor `tags`: an error (`path` alone is not enough, as in ESO);
//! - `name` (a Go regexp, unanchored; an empty one matches every name): with `path`, the
//!   secrets BatchGetSecretValue returns for the filter `name=<path>` (a prefix match);
//!   without, every secret ListSecrets returns, then the values of those that match;
//! - `tags`: the filters `tag-key=<k>` and `tag-value=<v>` for every tag (and `name=<path>`),
//!   exactly as ESO sends them. Secrets Manager matches each filter as a prefix, each on its
//!   own, so a secret with tags `env=x` and `team=prod` matches `tags: {env: prod}`: ESO's
//!   behaviour, kept.
//!
//! The store `prefix` is not applied: names are matched and used as Secrets Manager holds them.
//! Values are read with BatchGetSecretValue (20 a call). A secret that one of those calls
//! cannot read fails the sync with its own error, unless it was deleted in the meantime; ESO
//! drops such a secret from the Secret silently.

use std::collections::BTreeMap;

use secret_bridge::go_regex;
use tracing::debug;

use crate::api::external_secret::ExternalSecretFind;
use crate::aws::{AwsError, BatchSelection, FilterKey, SecretFilter, SecretValue, SecretsSource};
use crate::external_secret::fetch::Reader;

#[derive(Debug)]
pub enum FindError {
    Aws(AwsError),
    /// What is wrong with the `find`, in ESO's words.
    Misconfigured(String),
}

impl From<AwsError> for FindError {
    fn from(error: AwsError) -> Self {
        FindError::Aws(error)
    }
}

/// The value of every secret `find` selects, keyed by secret name.
pub(crate) async fn find_all<S: SecretsSource>(
    find: &ExternalSecretFind,
    reader: &mut Reader<'_, S>,
) -> Result<BTreeMap<String, Vec<u8>>, FindError> {
    let matcher = match &find.name {
        Some(name) => {
            let pattern = name.regexp.as_deref().unwrap_or_default();
            Some(go_regex::compile(pattern).map_err(|e| {
                FindError::Misconfigured(format!(
                    "error getting all secrets: could not compile find.name.regexp [{pattern}]: {e}"
                ))
            })?)
        }
        None => None,
    };
    if matcher.is_none() && find.tags.is_empty() {
        return Err(FindError::Misconfigured(
            "error getting all secrets: unexpected find operator".into(),
        ));
    }
    let mut filters: Vec<SecretFilter> = find
        .tags
        .iter()
        .flat_map(|(key, value)| {
            [
                SecretFilter {
                    key: FilterKey::TagKey,
                    values: vec![key.clone()],
                },
                SecretFilter {
                    key: FilterKey::TagValue,
                    values: vec![value.clone()],
                },
            ]
        })
        .collect();
    let matches = |name: &str| matcher.as_ref().is_none_or(|re| re.is_match(name));
    if let Some(path) = &find.path {
        filters.push(SecretFilter {
            key: FilterKey::Name,
            values: vec![path.clone()],
        });
    }
    if find.path.is_some() || matcher.is_none() {
        match batch_by_filters(&filters, &matches, reader).await {
            Ok(found) => return Ok(found?),
            // BatchGetSecretValue refused as a whole: not allowed by the policy, or (the local
            // emulator) a selected secret is scheduled for deletion. ListSecrets selects the
            // same secrets, so read them that way.
            Err(error) => {
                debug!(%error, "filtered BatchGetSecretValue failed; listing the secrets instead");
            }
        }
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = reader
            .source
            .list_secrets(&filters, token.as_deref())
            .await?;
        names.extend(page.names.into_iter().filter(|n| matches(n)));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    reader.prefetch(names.clone()).await;
    let mut data = BTreeMap::new();
    for name in names {
        match reader.current(&name).await {
            Ok(value) => insert(&mut data, value),
            // Deleted between ListSecrets and the read: no longer found.
            Err(error) if error.is_deleted() => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(data)
}

/// The secrets one filtered BatchGetSecretValue selects, page by page, that `matches` keeps.
/// The outer error is a call that failed, the inner one a secret that could not be read.
async fn batch_by_filters<S: SecretsSource>(
    filters: &[SecretFilter],
    matches: &impl Fn(&str) -> bool,
    reader: &mut Reader<'_, S>,
) -> Result<Result<BTreeMap<String, Vec<u8>>, AwsError>, AwsError> {
    let mut data = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = reader
            .source
            .batch_get_secret_value(BatchSelection::Filters(filters), token.as_deref())
            .await?;
        if let Some(error) = page.errors.into_iter().find(|e| !e.is_deleted()) {
            return Ok(Err(error));
        }
        for value in page.values.into_iter().filter(|v| matches(&v.name)) {
            reader.remember(&value);
            insert(&mut data, value);
        }
        token = page.next_token;
        if token.is_none() {
            return Ok(Ok(data));
        }
    }
}

/// As ESO: the binary value wins when both are set; a secret with neither adds no key.
fn insert(data: &mut BTreeMap<String, Vec<u8>>, value: SecretValue) {
    let bytes = match (value.binary, value.string) {
        (Some(binary), _) => binary,
        (None, Some(text)) => text.into_bytes(),
        (None, None) => return,
    };
    data.insert(value.name, bytes);
}

#[cfg(test)]
#[path = "find_tests.rs"]
mod tests;
