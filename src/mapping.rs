//! From a Secrets Manager value to Kubernetes Secret data, with ESO's semantics:
//!
//! - `remoteRef.property` is a gjson path (ESO uses gjson too), applied to whatever text the
//!   secret holds: like ESO, a value that is not JSON simply has no such property. A property
//!   containing dots is first tried as one literal key (`"a.b"`), then as a path (`a` → `b`).
//!   The result is gjson's `String()`: a string unquoted, `null` empty, an integer as written,
//!   any other number in Go's shortest decimal form (`1.50` → `1.5`, `1e3` → `1000`), objects
//!   and arrays as their raw JSON text.
//! - `dataFrom.extract` turns every top-level key of a JSON object into a data key; string values
//!   are unquoted, other values keep their raw JSON text and `null` becomes empty, as ESO does.
//! - `metadataPolicy: Fetch` reads the secret's tags as a JSON object, encoded as Go's
//!   `json.Marshal` encodes a `map[string]string` ([`tags_json`]).
//!
//! Errors name the secret and the property, never the value.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// ESO's words: `key <property> does not exist in secret <key>`.
    #[error("key {property} does not exist in secret {secret}")]
    MissingProperty { secret: String, property: String },
    #[error(
        "unable to unmarshal secret {secret}: it is not a JSON object, so its keys cannot be extracted"
    )]
    NotJsonObject { secret: String },
}

/// Reads `property` (a gjson path) from the text of the secret `secret` (as the spec names it).
pub fn property(secret: &str, payload: &str, property: &str) -> Result<Vec<u8>, MappingError> {
    if property.contains('.') {
        let escaped = property.replace('.', "\\.");
        let literal = gjson::get(payload, &escaped);
        if literal.exists() {
            return Ok(go_string(&literal).into_bytes());
        }
    }
    let value = gjson::get(payload, property);
    if !value.exists() {
        return Err(MappingError::MissingProperty {
            secret: secret.to_owned(),
            property: property.to_owned(),
        });
    }
    Ok(go_string(&value).into_bytes())
}

/// gjson's Go `Result.String()`.
fn go_string(value: &gjson::Value) -> String {
    match value.kind() {
        gjson::Kind::Number => {
            let raw = value.json();
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                raw.to_owned()
            } else {
                // Go's strconv.FormatFloat(f, 'f', -1, 64): shortest round-trip, no exponent.
                format!("{}", raw.parse::<f64>().unwrap_or_else(|_| value.f64()))
            }
        }
        _ => value.str().to_owned(),
    }
}

/// The JSON object of a secret's tags, byte for byte as Go's `json.Marshal` writes a
/// `map[string]string`: keys sorted, no spaces, `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub fn tags_json<'t>(tags: impl IntoIterator<Item = (&'t str, &'t str)>) -> String {
    let sorted: BTreeMap<&str, &str> = tags.into_iter().collect();
    let mut out = String::from("{");
    for (i, (key, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        go_json_string(&mut out, key);
        out.push(':');
        go_json_string(&mut out, value);
    }
    out.push('}');
    out
}

fn go_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Every top-level key of the JSON object in the secret named `secret`.
pub fn extract(secret: &str, payload: &str) -> Result<BTreeMap<String, Vec<u8>>, MappingError> {
    // Go's json.Unmarshal of `null` into a map leaves it empty, without error.
    if payload.trim() == "null" {
        return Ok(BTreeMap::new());
    }
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
        assert_eq!(text(property("s", DOC, "list.#").unwrap()), "2");
        assert_eq!(text(property("s", DOC, "flag").unwrap()), "true");
    }

    #[test]
    fn property_results_are_gjson_go_strings() {
        let doc =
            r#"{"n":null,"f":1.50,"e":1e3,"neg":-7,"big":12345678901234567890,"esc":"a\u0041\n"}"#;
        assert_eq!(text(property("s", doc, "n").unwrap()), "");
        assert_eq!(text(property("s", doc, "f").unwrap()), "1.5");
        assert_eq!(text(property("s", doc, "e").unwrap()), "1000");
        assert_eq!(text(property("s", doc, "neg").unwrap()), "-7");
        assert_eq!(
            text(property("s", doc, "big").unwrap()),
            "12345678901234567890"
        );
        assert_eq!(text(property("s", doc, "esc").unwrap()), "aA\n");
    }

    #[test]
    fn property_prefers_a_literal_dotted_key() {
        assert_eq!(text(property("s", DOC, "dotted.key").unwrap()), "literal");
    }

    #[test]
    fn property_errors_say_what_eso_says_without_the_value() {
        let missing = property("app/db", DOC, "nope").unwrap_err();
        assert_eq!(
            missing.to_string(),
            "key nope does not exist in secret app/db"
        );
        let not_json = property("app/db", "plain-text-value", "user").unwrap_err();
        assert_eq!(
            not_json.to_string(),
            "key user does not exist in secret app/db"
        );
        assert!(!not_json.to_string().contains("plain-text-value"));
    }

    #[test]
    fn tags_are_go_json() {
        let tags = [("team", "a&b"), ("env", "<prod>"), ("q", "say \"hi\"\n")];
        assert_eq!(
            tags_json(tags),
            r#"{"env":"\u003cprod\u003e","q":"say \"hi\"\n","team":"a\u0026b"}"#
        );
        assert_eq!(tags_json([]), "{}");
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
        assert!(extract("s", "null").unwrap().is_empty());
        for payload in ["not json at all", "[1,2]", "\"text\"", "42"] {
            let error = extract("s", payload).unwrap_err();
            assert_eq!(error, MappingError::NotJsonObject { secret: "s".into() });
            assert!(!error.to_string().contains(payload));
        }
    }
}
