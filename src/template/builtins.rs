//! Go's `text/template` builtin functions (`and`/`or` are in the evaluator: they are lazy).

use std::cmp::Ordering;

use super::budget::Budget;
use super::functions::{Budgeted, FnResult, bytes_arg};
use super::gofmt;
use super::printf;
use super::value::{Kind, Value};

pub(crate) fn not(args: &[Value]) -> FnResult {
    Ok(Value::Bool(!args[0].is_true()))
}

pub(crate) fn len(args: &[Value]) -> FnResult {
    let n = match &args[0] {
        Value::String(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.len(),
        Value::Null => return Err("len of nil pointer".into()),
        other => return Err(format!("len of type {}", other.type_name())),
    };
    Ok(Value::int(n as i64))
}

/// `index x k1 k2 ...`. A missing map key gives the zero value, not an error.
pub(crate) fn index(args: &[Value]) -> FnResult {
    let mut item = args[0].clone();
    for key in &args[1..] {
        item = match (item, key) {
            (Value::Null, _) => return Err("index of untyped nil".into()),
            (Value::List(list), k) => {
                let i = list_index(k)?;
                list.into_iter().nth(i).ok_or("index out of range")?
            }
            (s @ (Value::String(_) | Value::Bytes(_)), k) => {
                let i = list_index(k)?;
                let byte = s
                    .as_bytes()
                    .and_then(|b| b.get(i).copied())
                    .ok_or("index out of range")?;
                Value::int(i64::from(byte))
            }
            (Value::Map(mut map), Value::String(k)) => match map.remove(k) {
                Some(v) => v,
                // ESO's data map is a map[string]string, whose zero value is "", while maps
                // from fromJson hold interface{} values, whose zero value is nil.
                None if !map.is_empty()
                    && map
                        .values()
                        .all(|v| matches!(v, Value::String(_) | Value::Bytes(_))) =>
                {
                    Value::String(String::new())
                }
                None => Value::Null,
            },
            (Value::Map(_), k) => {
                return Err(format!(
                    "value has type {}; should be string",
                    k.type_name()
                ));
            }
            (other, _) => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

fn list_index(k: &Value) -> Result<usize, String> {
    match k.kind() {
        Kind::Int | Kind::Uint => k
            .as_int()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| "index out of range".into()),
        _ => Err(format!(
            "cannot index slice/array with type {}",
            k.type_name()
        )),
    }
}

pub(crate) fn print(args: &[Value]) -> FnResult {
    Ok(Value::from_bytes(gofmt::sprint(args)))
}

pub(crate) fn printf(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let format = bytes_arg(&args, 0)?;
    Ok(Value::from_bytes(printf::sprintf(
        format,
        &args[1..],
        budget,
    )?))
}

pub(crate) fn println(args: &[Value]) -> FnResult {
    Ok(Value::from_bytes(gofmt::sprintln(args)))
}

const BAD_COMPARISON: &str = "incompatible types for comparison";

/// Go's `eq` for two values of basic kinds; `Err` if they cannot be compared.
fn equal(a: &Value, b: &Value) -> Result<bool, String> {
    let (ka, kb) = (a.kind(), b.kind());
    match (ka, kb) {
        (Kind::Nil, _) | (_, Kind::Nil) => Ok(ka == kb),
        (Kind::Int | Kind::Uint, Kind::Int | Kind::Uint) | (Kind::Float, Kind::Float) => {
            Ok(compare_numbers(a, b) == Some(Ordering::Equal))
        }
        (Kind::String, Kind::String) => Ok(a.as_bytes() == b.as_bytes()),
        (Kind::Bool, Kind::Bool) => Ok(a == b),
        (Kind::List | Kind::Map, _) | (_, Kind::List | Kind::Map) if ka == kb => {
            Err(format!("non-comparable type {}", a.type_name()))
        }
        _ => Err(BAD_COMPARISON.into()),
    }
}

fn compare_numbers(a: &Value, b: &Value) -> Option<Ordering> {
    let (Value::Number(x), Value::Number(y)) = (a, b) else {
        return None;
    };
    match (x.as_i64(), y.as_i64()) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => match (x.as_u64(), y.as_u64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
    }
}

pub(crate) fn eq(args: &[Value]) -> FnResult {
    for other in &args[1..] {
        if equal(&args[0], other)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

pub(crate) fn ne(args: &[Value]) -> FnResult {
    Ok(Value::Bool(!equal(&args[0], &args[1])?))
}

fn less(a: &Value, b: &Value) -> Result<bool, String> {
    let (ka, kb) = (a.kind(), b.kind());
    match (ka, kb) {
        (Kind::Int | Kind::Uint, Kind::Int | Kind::Uint) | (Kind::Float, Kind::Float) => {
            Ok(compare_numbers(a, b) == Some(Ordering::Less))
        }
        (Kind::String, Kind::String) => Ok(a.as_bytes() < b.as_bytes()),
        (Kind::Bool | Kind::List | Kind::Map | Kind::Nil, _) => {
            Err("invalid type for comparison".into())
        }
        _ => Err(BAD_COMPARISON.into()),
    }
}

pub(crate) fn lt(args: &[Value]) -> FnResult {
    less(&args[0], &args[1]).map(Value::Bool)
}

pub(crate) fn le(args: &[Value]) -> FnResult {
    Ok(Value::Bool(
        less(&args[0], &args[1])? || equal(&args[0], &args[1])?,
    ))
}

pub(crate) fn gt(args: &[Value]) -> FnResult {
    le(args).map(|v| Value::Bool(!v.is_true()))
}

pub(crate) fn ge(args: &[Value]) -> FnResult {
    lt(args).map(|v| Value::Bool(!v.is_true()))
}

/// Go's `evalArgs` for `html`, `js` and `urlquery`: one string as it is, anything else as `print` prints it.
fn printed(args: &[Value]) -> Vec<u8> {
    match args {
        [Value::String(s)] => s.as_bytes().to_vec(),
        [Value::Bytes(b)] => b.clone(),
        _ => gofmt::sprint(args),
    }
}

/// `template.HTMLEscapeString` of the arguments printed as by `print`.
pub(crate) fn html(args: &[Value]) -> FnResult {
    let text = String::from_utf8_lossy(&printed(args)).into_owned();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    Ok(Value::String(out))
}

/// `template.JSEscapeString` (as in Go 1.19) of the arguments printed as by `print`.
pub(crate) fn js(args: &[Value]) -> FnResult {
    let text = String::from_utf8_lossy(&printed(args)).into_owned();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' | '>' | '&' | '=' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if (c as u32) < 0x20 || !gofmt::is_print(c) => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    Ok(Value::String(out))
}

/// `url.QueryEscape` of the arguments printed as by `print`.
pub(crate) fn urlquery(args: &[Value]) -> FnResult {
    let mut out = String::new();
    for b in printed(args) {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(Value::String(out))
}
