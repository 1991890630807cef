//! sprig's number conversions and arithmetic (spf13/cast semantics), and type functions.

use super::collections::kind_name;
use super::functions::{FnResult, string_arg};
use super::value::Value;

/// spf13/cast's `ToInt64` as sprig uses it: unparsable values are 0.
pub(crate) fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n
            .as_i64()
            .unwrap_or_else(|| n.as_f64().unwrap_or_default() as i64),
        Value::Bool(b) => i64::from(*b),
        Value::String(s) => parse_int(s).unwrap_or(0),
        _ => 0,
    }
}

fn parse_int(s: &str) -> Option<i64> {
    let s = s.strip_suffix(".0").unwrap_or(s);
    let (negative, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = digits.to_ascii_lowercase();
    let magnitude = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if lower.len() > 1 && lower.starts_with('0') {
        i64::from_str_radix(&lower[1..], 8).ok()?
    } else {
        lower.parse().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or_default(),
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

pub(crate) fn atoi(args: &[Value]) -> FnResult {
    Ok(Value::int(string_arg(args, 0)?.parse().unwrap_or(0)))
}

pub(crate) fn to_int(args: &[Value]) -> FnResult {
    Ok(Value::int(to_i64(&args[0])))
}

pub(crate) fn to_float(args: &[Value]) -> FnResult {
    Ok(Value::float(to_f64(&args[0])))
}

pub(crate) fn add(args: &[Value]) -> FnResult {
    Ok(Value::int(
        args.iter().map(to_i64).fold(0i64, i64::wrapping_add),
    ))
}

pub(crate) fn add1(args: &[Value]) -> FnResult {
    Ok(Value::int(to_i64(&args[0]).wrapping_add(1)))
}

pub(crate) fn sub(args: &[Value]) -> FnResult {
    Ok(Value::int(to_i64(&args[0]).wrapping_sub(to_i64(&args[1]))))
}

pub(crate) fn mul(args: &[Value]) -> FnResult {
    Ok(Value::int(
        args.iter().map(to_i64).fold(1i64, i64::wrapping_mul),
    ))
}

pub(crate) fn div(args: &[Value]) -> FnResult {
    let divisor = to_i64(&args[1]);
    if divisor == 0 {
        return Err("integer divide by zero".into());
    }
    Ok(Value::int(to_i64(&args[0]).wrapping_div(divisor)))
}

pub(crate) fn modulo(args: &[Value]) -> FnResult {
    let divisor = to_i64(&args[1]);
    if divisor == 0 {
        return Err("integer divide by zero".into());
    }
    Ok(Value::int(to_i64(&args[0]).wrapping_rem(divisor)))
}

pub(crate) fn max(args: &[Value]) -> FnResult {
    Ok(Value::int(
        args.iter().map(to_i64).max().unwrap_or_default(),
    ))
}

pub(crate) fn min(args: &[Value]) -> FnResult {
    Ok(Value::int(
        args.iter().map(to_i64).min().unwrap_or_default(),
    ))
}

pub(crate) fn type_of(args: &[Value]) -> FnResult {
    Ok(Value::from(args[0].type_name()))
}

pub(crate) fn type_is(args: &[Value]) -> FnResult {
    Ok(Value::Bool(string_arg(args, 0)? == args[1].type_name()))
}

pub(crate) fn kind_of(args: &[Value]) -> FnResult {
    Ok(Value::from(kind_name(&args[0])))
}

pub(crate) fn kind_is(args: &[Value]) -> FnResult {
    Ok(Value::Bool(string_arg(args, 0)? == kind_name(&args[1])))
}

pub(crate) fn deep_equal(args: &[Value]) -> FnResult {
    Ok(Value::Bool(args[0] == args[1]))
}
