//! From a Secrets Manager value to Kubernetes Secret data, with ESO's semantics:
//!
//! - `remoteRef.property` is a gjson path (ESO uses gjson too). A property containing dots is
//!   first tried as one literal key (`"a.b"`), then as a path (`a` → `b`), as ESO does.
//!   A string result is its unquoted text; any other JSON value is its raw JSON text.
//! - `dataFrom.extract` turns every top-level key of a JSON object into a data key; string values
//!   are unquoted, other values keep their raw JSON text and `null` becomes empty, as ESO does.
//!
//! Errors name the secret and the property, never the value.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("secret {secret:?} is not valid JSON, so property {property:?} cannot be read from it")]
    NotJson { secret: String, property: String },
    #[error("property {property:?} does not exist in secret {secret:?}")]
    MissingProperty { secret: String, property: String },
    #[error("secret {secret:?} is not a JSON object, so its keys cannot be extracted")]
    NotJsonObject { secret: String },
    #[error("secret {secret:?} is binary and not UTF-8 text, so {what} cannot be read from it")]
    NotText { secret: String, what: &'static str },
}

/// Reads `property` (a gjson path) from the JSON text of the secret named `secret`.
pub fn property(secret: &str, payload: &str, property: &str) -> Result<Vec<u8>, MappingError> {
    if !gjson::valid(payload) {
        return Err(MappingError::NotJson {
            secret: secret.to_owned(),
            property: property.to_owned(),
        });
    }
    if property.contains('.') {
        let escaped = property.replace('.', "\\.");
        let literal = gjson::get(payload, &escaped);
        if literal.exists() {
            return Ok(result_bytes(&literal));
        }
    }
    let value = gjson::get(payload, property);
    if !value.exists() {
        return Err(MappingError::MissingProperty {
            secret: secret.to_owned(),
            property: property.to_owned(),
        });
    }
    Ok(result_bytes(&value))
}

fn result_bytes(value: &gjson::Value) -> Vec<u8> {
    match value.kind() {
        gjson::Kind::String => value.str().as_bytes().to_vec(),
        _ => value.json().as_bytes().to_vec(),
    }
}

/// Every top-level key of the JSON object in the secret named `secret`.
pub fn extract(secret: &str, payload: &str) -> Result<BTreeMap<String, Vec<u8>>, MappingError> {
    let object: BTreeMap<String, &RawValue> =
        serde_json::from_str(payload).map_err(|_| MappingError::NotJsonObject {
            secret: secret.to_owned(),
        })?;
    Ok(object
        .into_iter()
        .map(|(key, raw)| {
            let bytes = match serde_json::from_str::<Option<String>>(raw.get()) {
                Ok(Some(text)) => text.into_bytes(),
                Ok(None) => Vec::new(),
                Err(_) => raw.get().as_bytes().to_vec(),
            };
            (key, bytes)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"username":"bob","password":"abc123xyz456","port":5432,"nested":{"a":{"b":"deep"}},"list":["x","y"],"dotted.key":"literal","flag":true,"none":null}"#;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn property_reads_strings_numbers_objects_and_paths() {
        assert_eq!(text(property("s", DOC, "username").unwrap()), "bob");
        assert_eq!(text(property("s", DOC, "port").unwrap()), "5432");
        assert_eq!(text(property("s", DOC, "nested.a.b").unwrap()), "deep");
        assert_eq!(
            text(property("s", DOC, "nested.a").unwrap()),
            r#"{"b":"deep"}"#
        );
        assert_eq!(text(property("s", DOC, "list.1").unwrap()), "y");
        assert_eq!(text(property("s", DOC, "flag").unwrap()), "true");
    }

    #[test]
    fn property_prefers_a_literal_dotted_key() {
        assert_eq!(text(property("s", DOC, "dotted.key").unwrap()), "literal");
    }

    #[test]
    fn property_errors_name_secret_and_property_but_not_value() {
        let missing = property("app/db", DOC, "nope").unwrap_err();
        assert_eq!(
            missing.to_string(),
            r#"property "nope" does not exist in secret "app/db""#
        );
        let not_json = property("app/db", "plain-text-value", "user").unwrap_err();
        assert!(matches!(not_json, MappingError::NotJson { .. }));
        assert!(!not_json.to_string().contains("plain-text-value"));
    }

    #[test]
    fn extract_keeps_eso_value_encoding() {
        let data = extract("s", DOC).unwrap();
        assert_eq!(text(data["username"].clone()), "bob");
        assert_eq!(text(data["port"].clone()), "5432");
        assert_eq!(text(data["nested"].clone()), r#"{"a":{"b":"deep"}}"#);
        assert_eq!(text(data["list"].clone()), r#"["x","y"]"#);
        assert_eq!(text(data["flag"].clone()), "true");
        assert_eq!(text(data["none"].clone()), "");
        assert_eq!(data.len(), 8);
    }

    #[test]
    fn extract_refuses_non_objects_without_echoing_them() {
        for payload in ["not json at all", "[1,2]", "\"text\"", "42"] {
            let error = extract("s", payload).unwrap_err();
            assert_eq!(error, MappingError::NotJsonObject { secret: "s".into() });
            assert!(!error.to_string().contains(payload));
        }
    }
}
