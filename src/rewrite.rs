//! `dataFrom[].rewrite`: operations applied in order to the keys an `extract` or `find` produced,
//! as ESO's `RewriteMap` does. A `regexp` operation replaces every match of `source` in each key
//! by `target` (Go's `ReplaceAllString`, `$1`/`${1}`/`${name}` expanded). A `transform`
//! operation renders its Go template with the key as `.value` (ESO's template functions, see
//! [`crate::template`]) and uses the output as the new key. Two keys rewritten to the same key
//! keep the value of the later one in key order.

use std::collections::BTreeMap;

use crate::go_regex;
use crate::template::{self, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("failed rewrite operation[{index}]: regexp failed with failed to compile: {reason}")]
    Compile { index: usize, reason: String },
    #[error("failed rewrite operation[{index}]: {reason}")]
    Transform { index: usize, reason: String },
}

/// Rewrites every key matching `source` (a Go regular expression) with `target`.
/// `index` is the operation's position, for errors.
pub fn regexp<V>(
    index: usize,
    source: &str,
    target: &str,
    map: BTreeMap<String, V>,
) -> Result<BTreeMap<String, V>, RewriteError> {
    let re = go_regex::compile(source).map_err(|e| RewriteError::Compile {
        index,
        reason: e.to_string(),
    })?;
    Ok(map
        .into_iter()
        .map(|(key, value)| (re.replace_all(&key, target).into_owned(), value))
        .collect())
}

/// Renames every key to what the Go template `text` renders with the key as `.value`.
pub fn transform<V>(
    index: usize,
    text: &str,
    map: BTreeMap<String, V>,
) -> Result<BTreeMap<String, V>, RewriteError> {
    let failed = |reason: String| RewriteError::Transform { index, reason };
    template::validate("transform", text).map_err(|e| {
        failed(format!(
            "transform failed with failed to parse template: {e}"
        ))
    })?;
    map.into_iter()
        .map(|(key, value)| {
            let data = Value::Map(BTreeMap::from([(
                "value".to_owned(),
                Value::from(key.as_str()),
            )]));
            let rendered = template::render_value("transform", text, &data).map_err(|e| {
                failed(format!(
                    "transform failed with failed to execute template for key {key:?}: {e}"
                ))
            })?;
            Ok((String::from_utf8_lossy(&rendered).into_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(keys: &[&str]) -> BTreeMap<String, u8> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| ((*k).to_owned(), i as u8))
            .collect()
    }

    #[test]
    fn regexp_replaces_every_match_with_go_expansion() {
        let out = regexp(0, "^app/", "", map(&["app/db", "other"])).unwrap();
        assert_eq!(out.keys().collect::<Vec<_>>(), ["db", "other"]);
        let out = regexp(0, "(.*)-(.*)", "${2}_$1", map(&["a-b"])).unwrap();
        assert_eq!(out.keys().collect::<Vec<_>>(), ["b_a"]);
        let out = regexp(0, "/", "_", map(&["a/b/c"])).unwrap();
        assert_eq!(out.keys().collect::<Vec<_>>(), ["a_b_c"]);
        let out = regexp(0, "^(.*)$", "$1x", map(&["key"])).unwrap();
        assert_eq!(
            out.keys().collect::<Vec<_>>(),
            [""],
            "`$1x` is group `1x`, as in Go"
        );
    }

    #[test]
    fn transform_renders_each_key_as_value() {
        let out = transform(0, "{{ .value | upper }}", map(&["db_user", "db_pass"])).unwrap();
        assert_eq!(out.keys().collect::<Vec<_>>(), ["DB_PASS", "DB_USER"]);
        let out = transform(0, r#"app-{{ .value | replace "/" "-" }}"#, map(&["a/b"])).unwrap();
        assert_eq!(out.keys().collect::<Vec<_>>(), ["app-a-b"]);
        let error = transform(1, "{{ .value ", map(&["a"])).unwrap_err();
        assert!(
            error.to_string().starts_with(
                "failed rewrite operation[1]: transform failed with failed to parse template"
            ),
            "{error}"
        );
        let error = transform(0, "{{ .missing.x }}", map(&["a"])).unwrap_err();
        assert!(error.to_string().contains(r#"for key "a""#), "{error}");
    }

    #[test]
    fn a_bad_regexp_names_its_operation() {
        let error = regexp(2, "(", "", map(&["a"])).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("failed rewrite operation[2]: regexp failed")
        );
    }
}
