//! The values templates compute with, and how they map onto Go's types.

use std::collections::BTreeMap;
use std::fmt;

/// A value a template sees or computes.
///
/// ESO hands secret values to templates as Go strings (`map[string]string`); `fromJson` and
/// friends produce structured values. Go strings are byte strings, so a secret value that is
/// not valid UTF-8 (a keystore, a DER certificate) is kept as [`Value::Bytes`] and written out
/// byte for byte, as Go does.
///
/// Numbers keep Go's distinction between `int` (literals such as `3`, `len`, `add`) and
/// `float64` (everything decoded from JSON or YAML): a [`serde_json::Number`] holding an `f64`
/// is a Go `float64` and prints like one (`1e+06`).
///
/// `Debug` never shows string contents or map keys, since they may be secret.
#[derive(Clone, PartialEq, Default)]
pub enum Value {
    /// A Go string that is valid UTF-8.
    String(String),
    /// A Go string that is not valid UTF-8.
    Bytes(Vec<u8>),
    Bool(bool),
    Number(serde_json::Number),
    /// A Go `[]interface{}`.
    List(Vec<Value>),
    /// A Go `map[string]interface{}`; iteration and printing are in key order, as in Go.
    Map(BTreeMap<String, Value>),
    /// Go's untyped `nil` (printed `<no value>` by an action, `<nil>` by `print`).
    #[default]
    Null,
}

/// The kind of a value, as Go's comparison functions see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int,
    Uint,
    Float,
    String,
    List,
    Map,
    Nil,
}

impl Value {
    /// A Go `int`.
    pub fn int(i: i64) -> Value {
        Value::Number(i.into())
    }

    /// A Go `float64`. Infinities and NaN, which JSON numbers cannot hold, become strings as Go prints them.
    pub fn float(f: f64) -> Value {
        match serde_json::Number::from_f64(f) {
            Some(n) => Value::Number(n),
            None if f.is_nan() => Value::String("NaN".into()),
            None if f > 0.0 => Value::String("+Inf".into()),
            None => Value::String("-Inf".into()),
        }
    }

    /// A Go string from bytes: [`Value::String`] if they are UTF-8, [`Value::Bytes`] otherwise.
    pub fn from_bytes(bytes: Vec<u8>) -> Value {
        match String::from_utf8(bytes) {
            Ok(s) => Value::String(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        }
    }

    /// Converts JSON as Go's `json.Unmarshal` into `interface{}` does: every number is a `float64`.
    pub fn from_json(json: serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::float(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(items) => {
                Value::List(items.into_iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Map(
                map.into_iter()
                    .map(|(k, v)| (k, Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// The bytes of a string value.
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::String(s) => Some(s.as_bytes()),
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        match self {
            Value::String(_) | Value::Bytes(_) => Kind::String,
            Value::Bool(_) => Kind::Bool,
            Value::Number(n) if n.is_i64() => Kind::Int,
            Value::Number(n) if n.is_u64() => Kind::Uint,
            Value::Number(_) => Kind::Float,
            Value::List(_) => Kind::List,
            Value::Map(_) => Kind::Map,
            Value::Null => Kind::Nil,
        }
    }

    /// The Go type name, for error messages (`typeOf` prints the same).
    pub(crate) fn type_name(&self) -> &'static str {
        match self.kind() {
            Kind::String => "string",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Uint => "uint64",
            Kind::Float => "float64",
            Kind::List => "[]interface {}",
            Kind::Map => "map[string]interface {}",
            Kind::Nil => "<nil>",
        }
    }

    /// Go's template truth: false, zero, nil and empty strings, lists and maps are false.
    pub(crate) fn is_true(&self) -> bool {
        match self {
            Value::String(s) => !s.is_empty(),
            Value::Bytes(b) => !b.is_empty(),
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Null => false,
        }
    }

    /// The value as a Go `int`, if it is an integer (a whole `float64` is accepted too).
    pub(crate) fn as_int(&self) -> Option<i64> {
        let Value::Number(n) = self else { return None };
        if let Some(i) = n.as_i64() {
            return Some(i);
        }
        let f = n.as_f64()?;
        (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => write!(f, "String(<{} bytes>)", s.len()),
            Value::Bytes(b) => write!(f, "Bytes(<{} bytes>)", b.len()),
            Value::Bool(b) => write!(f, "Bool({b})"),
            Value::Number(n) => write!(f, "Number({n})"),
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Map(m) => write!(f, "Map(<{} entries>)", m.len()),
            Value::Null => f.write_str("Null"),
        }
    }
}
