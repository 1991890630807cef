//! What ESO does to the keys and values of a `dataFrom` entry once read, in its order:
//! `conversionStrategy` (only when the entry has no `rewrite`), key validation, then (after
//! decoding) `nullBytePolicy`.
//!
//! - `Default` replaces every character that is not a Unicode letter or number, `-`, `.` or `_`
//!   by `_`; `Unicode` by `_UXXXX_` (its code point in lower-case hex, at least 4 digits). Two
//!   keys that convert to the same key are an error.
//! - Validation drops empty keys (silently, as ESO does), and refuses keys longer than 253 bytes
//!   or with a character other than those above.
//! - `nullBytePolicy: Fail` refuses a value containing a NUL byte (keys checked in order).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

/// Anything but a letter (Go's `unicode.IsLetter`: category L) or number (category N), `-`, `.`, `_`.
static INVALID_KEY_CHAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[^\p{L}\p{N}\-._]").expect("valid regex"));

const MAX_KEY_LEN: usize = 253;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("conversion strategy {0:?} is not one of Default, Unicode")]
    UnknownStrategy(String),
    #[error("secret name collision during conversion: {0}")]
    Collision(String),
    #[error("key has length {len} but max is 253: (following is truncated): {truncated}")]
    TooLong { len: usize, truncated: String },
    #[error(
        "key has invalid character {character}, only alphanumeric, '-', '.' and '_' are allowed: {key}"
    )]
    InvalidCharacter { character: char, key: String },
    #[error(
        "fetched secret value for key {0:?} contains null bytes; use a text-safe format such as PEM/base64 or leave nullBytePolicy unset for intentional binary data"
    )]
    NullByte(String),
    #[error("null byte policy {0:?} is not one of Ignore, Fail")]
    UnknownNullBytePolicy(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Conversion {
    #[default]
    Default,
    Unicode,
}

impl Conversion {
    pub fn parse(strategy: Option<&str>) -> Result<Self, KeyError> {
        match strategy.unwrap_or_default() {
            "" | "Default" => Ok(Conversion::Default),
            "Unicode" => Ok(Conversion::Unicode),
            other => Err(KeyError::UnknownStrategy(other.to_owned())),
        }
    }

    /// One key, converted.
    pub fn convert(self, key: &str) -> String {
        INVALID_KEY_CHAR
            .replace_all(key, |c: &regex::Captures| match self {
                Conversion::Default => "_".to_owned(),
                Conversion::Unicode => {
                    let ch = c[0].chars().next().expect("one character");
                    format!("_U{:04x}_", u32::from(ch))
                }
            })
            .into_owned()
    }

    /// Every key converted; two keys becoming one is an error.
    pub fn convert_keys<V>(
        self,
        map: BTreeMap<String, V>,
    ) -> Result<BTreeMap<String, V>, KeyError> {
        let mut out = BTreeMap::new();
        for (key, value) in map {
            let key = self.convert(&key);
            if out.contains_key(&key) {
                return Err(KeyError::Collision(key));
            }
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// ESO's `ValidateKeys`: empty keys are dropped, invalid ones refused.
pub fn validate_keys<V>(map: &mut BTreeMap<String, V>) -> Result<(), KeyError> {
    map.remove("");
    for key in map.keys() {
        if key.len() > MAX_KEY_LEN {
            let mut end = MAX_KEY_LEN;
            while !key.is_char_boundary(end) {
                end -= 1;
            }
            return Err(KeyError::TooLong {
                len: key.len(),
                truncated: key[..end].to_owned(),
            });
        }
        if let Some(found) = INVALID_KEY_CHAR.find(key) {
            return Err(KeyError::InvalidCharacter {
                character: found.as_str().chars().next().expect("one character"),
                key: key.clone(),
            });
        }
    }
    Ok(())
}

/// `nullBytePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NullBytePolicy {
    #[default]
    Ignore,
    Fail,
}

impl NullBytePolicy {
    pub fn parse(policy: Option<&str>) -> Result<Self, KeyError> {
        match policy.unwrap_or_default() {
            "" | "Ignore" => Ok(NullBytePolicy::Ignore),
            "Fail" => Ok(NullBytePolicy::Fail),
            other => Err(KeyError::UnknownNullBytePolicy(other.to_owned())),
        }
    }

    /// Checks the value of Secret key `key`.
    pub fn check(self, key: &str, value: &[u8]) -> Result<(), KeyError> {
        if self == NullBytePolicy::Fail && value.contains(&0) {
            return Err(KeyError::NullByte(key.to_owned()));
        }
        Ok(())
    }

    /// Checks every value, keys in order.
    pub fn check_all(self, map: &BTreeMap<String, Vec<u8>>) -> Result<(), KeyError> {
        map.iter()
            .try_for_each(|(key, value)| self.check(key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> BTreeMap<String, Vec<u8>> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), Vec::new()))
            .collect()
    }

    #[test]
    fn default_and_unicode_conversion_as_eso() {
        assert_eq!(
            Conversion::Default.convert("app/db:pass@x"),
            "app_db_pass_x"
        );
        assert_eq!(Conversion::Default.convert("é.ü-_9"), "é.ü-_9");
        assert_eq!(Conversion::Unicode.convert("app/db"), "app_U002f_db");
        assert_eq!(Conversion::Unicode.convert("a b"), "a_U0020_b");
        assert_eq!(Conversion::Unicode.convert("x😀"), "x_U1f600_");
        assert_eq!(Conversion::parse(None).unwrap(), Conversion::Default);
        assert!(Conversion::parse(Some("None")).is_err());
    }

    #[test]
    fn a_collision_is_an_error() {
        let error = Conversion::Default
            .convert_keys(keys(&["a/b", "a_b"]))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "secret name collision during conversion: a_b"
        );
    }

    #[test]
    fn validation_drops_empty_keys_and_refuses_invalid_ones() {
        let mut map = keys(&["", "ok.key"]);
        validate_keys(&mut map).unwrap();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["ok.key"]);
        let error = validate_keys(&mut keys(&["a/b"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "key has invalid character /, only alphanumeric, '-', '.' and '_' are allowed: a/b"
        );
        let long = "k".repeat(254);
        assert!(matches!(
            validate_keys(&mut keys(&[&long])),
            Err(KeyError::TooLong { len: 254, .. })
        ));
    }

    #[test]
    fn null_bytes_fail_only_when_asked() {
        assert!(NullBytePolicy::Ignore.check("k", b"a\0b").is_ok());
        let error = NullBytePolicy::Fail.check("k", b"a\0b").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(r#"fetched secret value for key "k" contains null bytes"#)
        );
        assert!(NullBytePolicy::Fail.check("k", b"ab").is_ok());
        assert!(NullBytePolicy::parse(Some("Drop")).is_err());
    }
}
