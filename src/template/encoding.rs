//! JSON and YAML in and out, with Go's `encoding/json` and `sigs.k8s.io/yaml` conventions.

use std::fmt::Write as _;

use super::budget::{Budget, Charge, Exceeded};
use super::gofmt::float_json;
use super::value::Value;

/// How `toJson` (HTML-safe, compact), `toRawJson` and `toPrettyJson` differ.
#[derive(Clone, Copy)]
pub(crate) struct JsonStyle {
    pub escape_html: bool,
    pub indent: bool,
}

/// `json.Marshal`: map keys sorted, `<>&` escaped as `\u003c` unless raw. Escapes and
/// indentation can make the text many times the value, so it stops once it is more than the
/// budget has room for (the caller charges what it keeps).
pub(crate) fn to_json(v: &Value, style: JsonStyle, budget: &Budget) -> Result<String, Exceeded> {
    let mut out = String::new();
    write_json(&mut out, v, style, 0, budget)?;
    Ok(out)
}

fn newline(out: &mut String, style: JsonStyle, depth: usize) {
    if style.indent {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    }
}

fn write_json(
    out: &mut String,
    v: &Value,
    style: JsonStyle,
    depth: usize,
    budget: &Budget,
) -> Charge {
    budget.check(out.len())?;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) if n.is_f64() => out.push_str(&float_json(n.as_f64().unwrap_or(0.0))),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_json_string(out, s, style),
        Value::Bytes(b) => write_json_string(out, &String::from_utf8_lossy(b), style),
        Value::List(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, style, depth + 1);
                write_json(out, item, style, depth + 1, budget)?;
            }
            newline(out, style, depth);
            out.push(']');
        }
        Value::Map(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, style, depth + 1);
                write_json_string(out, k, style);
                out.push(':');
                if style.indent {
                    out.push(' ');
                }
                write_json(out, item, style, depth + 1, budget)?;
            }
            newline(out, style, depth);
            out.push('}');
        }
    }
    budget.check(out.len())
}

fn write_json_string(out: &mut String, s: &str, style: JsonStyle) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '<' | '>' | '&' if style.escape_html => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `json.Unmarshal` into `interface{}`.
pub(crate) fn from_json(text: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice(text).map(Value::from_json)
}

/// The value as `sigs.k8s.io/yaml` sees it after its JSON round trip: whole floats are integers.
fn to_yaml_value(v: &Value) -> yaml_serde::Value {
    match v {
        Value::Null => yaml_serde::Value::Null,
        Value::Bool(b) => yaml_serde::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.into(),
            (_, Some(u), _) => u.into(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => (f as i64).into(),
            (_, _, f) => f.unwrap_or_default().into(),
        },
        Value::String(s) => yaml_serde::Value::String(s.clone()),
        Value::Bytes(b) => yaml_serde::Value::String(String::from_utf8_lossy(b).into_owned()),
        Value::List(items) => {
            yaml_serde::Value::Sequence(items.iter().map(to_yaml_value).collect())
        }
        Value::Map(map) => yaml_serde::Value::Mapping(
            map.iter()
                .map(|(k, v)| (yaml_serde::Value::String(k.clone()), to_yaml_value(v)))
                .collect(),
        ),
    }
}

/// ESO's `toYaml`: YAML without the final newline; empty on failure.
pub(crate) fn to_yaml(v: &Value) -> String {
    yaml_serde::to_string(&to_yaml_value(v))
        .map(|s| s.strip_suffix('\n').map(str::to_owned).unwrap_or(s))
        .unwrap_or_default()
}

fn yaml_key(k: yaml_serde::Value) -> String {
    match k {
        yaml_serde::Value::String(s) => s,
        yaml_serde::Value::Null => "null".into(),
        yaml_serde::Value::Bool(b) => b.to_string(),
        yaml_serde::Value::Number(n) => n.to_string(),
        yaml_serde::Value::Tagged(t) => yaml_key(t.value),
        other => to_yaml(&from_yaml_value(other)),
    }
}

/// YAML to a template value with JSON semantics: numbers are `float64`, keys are strings.
fn from_yaml_value(v: yaml_serde::Value) -> Value {
    match v {
        yaml_serde::Value::Null => Value::Null,
        yaml_serde::Value::Bool(b) => Value::Bool(b),
        yaml_serde::Value::Number(n) => Value::float(n.as_f64().unwrap_or_default()),
        yaml_serde::Value::String(s) => Value::String(s),
        yaml_serde::Value::Sequence(items) => {
            Value::List(items.into_iter().map(from_yaml_value).collect())
        }
        yaml_serde::Value::Mapping(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (yaml_key(k), from_yaml_value(v)))
                .collect(),
        ),
        yaml_serde::Value::Tagged(t) => from_yaml_value(t.value),
    }
}

/// ESO's `fromYaml`: always a map; a document that is not a map gives `{"Error": "..."}`.
pub(crate) fn from_yaml(text: &str) -> Value {
    let error = |msg: String| Value::Map([("Error".to_owned(), Value::String(msg))].into());
    match yaml_serde::from_str::<yaml_serde::Value>(text) {
        Ok(yaml_serde::Value::Null) => Value::Map(Default::default()),
        Ok(v) => match from_yaml_value(v) {
            map @ Value::Map(_) => map,
            other => error(format!(
                "error unmarshaling JSON: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_kind(&other)
            )),
        },
        Err(e) => error(format!("error converting YAML to JSON: {e}")),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "array",
        Value::String(_) | Value::Bytes(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        _ => "value",
    }
}
