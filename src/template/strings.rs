//! sprig's string, encoding, hash and regular-expression functions, and ESO's `filterPEM`.

use std::collections::BTreeMap;

use base64::Engine as _;
use sha2::Digest as _;

use super::budget::{Budget, Exceeded};
use super::functions::{Budgeted, FnResult, bytes_arg, int_arg, string_arg};
use super::gofmt;
use super::value::Value;

fn text(s: String) -> FnResult {
    Ok(Value::String(s))
}

/// Maps each character through `map` when it gives exactly one character, as Go's per-rune case mapping does.
fn map_chars<I: Iterator<Item = char>>(s: &str, map: impl Fn(char) -> I) -> String {
    s.chars()
        .map(|c| {
            let mut mapped = map(c);
            match (mapped.next(), mapped.next()) {
                (Some(m), None) => m,
                _ => c,
            }
        })
        .collect()
}

pub(crate) fn trim(args: &[Value]) -> FnResult {
    text(string_arg(args, 0)?.trim().to_owned())
}

pub(crate) fn upper(args: &[Value]) -> FnResult {
    text(map_chars(&string_arg(args, 0)?, char::to_uppercase))
}

pub(crate) fn lower(args: &[Value]) -> FnResult {
    text(map_chars(&string_arg(args, 0)?, char::to_lowercase))
}

/// Go's `strings.Title`: upper-cases the first letter of each word.
pub(crate) fn title(args: &[Value]) -> FnResult {
    let is_separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            !c.is_alphanumeric() && c.is_whitespace()
        }
    };
    let mut prev = ' ';
    let out = string_arg(args, 0)?
        .chars()
        .map(|c| {
            let mapped = if is_separator(prev) {
                map_chars(&c.to_string(), char::to_uppercase)
                    .chars()
                    .next()
                    .unwrap_or(c)
            } else {
                c
            };
            prev = c;
            mapped
        })
        .collect();
    text(out)
}

pub(crate) fn untitle(args: &[Value]) -> FnResult {
    let s = string_arg(args, 0)?;
    let mut chars = s.chars();
    let out = match chars.next() {
        Some(c) => map_chars(&c.to_string(), char::to_lowercase) + chars.as_str(),
        None => String::new(),
    };
    text(out)
}

pub(crate) fn trim_all(args: &[Value]) -> FnResult {
    let cutset = string_arg(args, 0)?;
    text(
        string_arg(args, 1)?
            .trim_matches(|c| cutset.contains(c))
            .to_owned(),
    )
}

pub(crate) fn trim_prefix(args: &[Value]) -> FnResult {
    let prefix = string_arg(args, 0)?;
    let s = string_arg(args, 1)?;
    text(s.strip_prefix(prefix.as_str()).unwrap_or(&s).to_owned())
}

pub(crate) fn trim_suffix(args: &[Value]) -> FnResult {
    let suffix = string_arg(args, 0)?;
    let s = string_arg(args, 1)?;
    text(s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_owned())
}

fn byte_slice(s: &str, start: usize, end: usize) -> String {
    String::from_utf8_lossy(&s.as_bytes()[start..end]).into_owned()
}

pub(crate) fn trunc(args: &[Value]) -> FnResult {
    let c = int_arg(args, 0)?;
    let s = string_arg(args, 1)?;
    let len = s.len() as i64;
    if c < 0 && len + c > 0 {
        return text(byte_slice(&s, (len + c) as usize, s.len()));
    }
    if c >= 0 && len > c {
        return text(byte_slice(&s, 0, c as usize));
    }
    text(s)
}

pub(crate) fn substr(args: &[Value]) -> FnResult {
    let (start, end) = (int_arg(args, 0)?, int_arg(args, 1)?);
    let s = string_arg(args, 2)?;
    let len = s.len() as i64;
    let out_of_range = || "slice bounds out of range".to_owned();
    let (from, to) = if start < 0 {
        (0, end)
    } else if end < 0 || end > len {
        (start, len)
    } else {
        (start, end)
    };
    if from > to || to > len || from < 0 {
        return Err(out_of_range());
    }
    text(byte_slice(&s, from as usize, to as usize))
}

pub(crate) fn nospace(args: &[Value]) -> FnResult {
    text(
        string_arg(args, 0)?
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    )
}

pub(crate) fn repeat(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let count = int_arg(&args, 0)?;
    let s = string_arg(&args, 1)?;
    let count = usize::try_from(count).map_err(|_| "negative repeat count".to_owned())?;
    budget.string(s.len().saturating_mul(count))?;
    Ok(Value::String(s.repeat(count)))
}

pub(crate) fn contains(args: &[Value]) -> FnResult {
    Ok(Value::Bool(
        string_arg(args, 1)?.contains(string_arg(args, 0)?.as_str()),
    ))
}

pub(crate) fn has_prefix(args: &[Value]) -> FnResult {
    Ok(Value::Bool(
        string_arg(args, 1)?.starts_with(string_arg(args, 0)?.as_str()),
    ))
}

pub(crate) fn has_suffix(args: &[Value]) -> FnResult {
    Ok(Value::Bool(
        string_arg(args, 1)?.ends_with(string_arg(args, 0)?.as_str()),
    ))
}

/// sprig's `strval`: strings as they are, anything else as `%v` prints it.
pub(crate) fn strval(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Bytes(b) => b.clone(),
        other => {
            let mut out = Vec::new();
            gofmt::write_value(&mut out, other);
            out
        }
    }
}

pub(crate) fn quote(args: &[Value]) -> FnResult {
    let quoted: Vec<String> = args
        .iter()
        .filter(|a| **a != Value::Null)
        .map(|a| gofmt::quote(&strval(a)))
        .collect();
    text(quoted.join(" "))
}

pub(crate) fn squote(args: &[Value]) -> FnResult {
    let mut out = Vec::new();
    for a in args.iter().filter(|a| **a != Value::Null) {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.push(b'\'');
        gofmt::write_value(&mut out, a);
        out.push(b'\'');
    }
    Ok(Value::from_bytes(out))
}

pub(crate) fn cat(args: &[Value]) -> FnResult {
    let mut out = Vec::new();
    for a in args.iter().filter(|a| **a != Value::Null) {
        if !out.is_empty() {
            out.push(b' ');
        }
        gofmt::write_value(&mut out, a);
    }
    Ok(Value::from_bytes(out))
}

/// sprig's `indent`: `spaces` spaces before every line. Every line grows, so the size is
/// checked first.
fn indent_by(spaces: i64, s: &str, budget: &mut Budget) -> Result<String, Exceeded> {
    let spaces = usize::try_from(spaces).unwrap_or(0);
    let lines = 1 + s.bytes().filter(|&b| b == b'\n').count();
    budget.string(s.len().saturating_add(lines.saturating_mul(spaces)))?;
    let pad = " ".repeat(spaces);
    Ok(format!("{pad}{}", s.replace('\n', &format!("\n{pad}"))))
}

pub(crate) fn indent(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let s = string_arg(&args, 1)?;
    Ok(Value::String(indent_by(int_arg(&args, 0)?, &s, budget)?))
}

pub(crate) fn nindent(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let s = string_arg(&args, 1)?;
    let indented = indent_by(int_arg(&args, 0)?, &s, budget)?;
    Ok(Value::String(format!("\n{indented}")))
}

pub(crate) fn replace(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let (old, new, src) = (
        string_arg(&args, 0)?,
        string_arg(&args, 1)?,
        string_arg(&args, 2)?,
    );
    // An empty `old` matches before every character and at the end.
    let matches = if old.is_empty() {
        src.chars().count() + 1
    } else {
        src.matches(old.as_str()).count()
    };
    budget.string(src.len().saturating_add(matches.saturating_mul(new.len())))?;
    Ok(Value::String(src.replace(&old, &new)))
}

pub(crate) fn plural(args: &[Value]) -> FnResult {
    let (one, many) = (string_arg(args, 0)?, string_arg(args, 1)?);
    text(if int_arg(args, 2)? == 1 { one } else { many })
}

pub(crate) fn to_string(args: &[Value]) -> FnResult {
    Ok(Value::from_bytes(strval(&args[0])))
}

/// sprig's `strslice`: a list's non-nil elements as strings, or a single value as a one-element list.
pub(crate) fn strslice(v: &Value) -> Vec<Value> {
    match v {
        Value::List(items) => items
            .iter()
            .filter(|i| **i != Value::Null)
            .map(|i| Value::from_bytes(strval(i)))
            .collect(),
        Value::Null => Vec::new(),
        other => vec![Value::from_bytes(strval(other))],
    }
}

pub(crate) fn join(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let sep = bytes_arg(&args, 0)?;
    let items = strslice(&args[1]);
    let len = items
        .iter()
        .map(|i| i.as_bytes().map_or(0, <[u8]>::len))
        .sum::<usize>();
    let seps = sep.len().saturating_mul(items.len().saturating_sub(1));
    budget.string(len.saturating_add(seps))?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(item.as_bytes().unwrap_or_default());
    }
    Ok(Value::from_bytes(out))
}

/// Go's `strings.Split` (and `SplitN` when `n` is given): an empty separator splits into
/// characters. Each part is a value of its own, so their number is checked first.
fn go_split(
    s: &str,
    sep: &str,
    n: Option<i64>,
    budget: &mut Budget,
    map: bool,
) -> Result<Vec<String>, Exceeded> {
    if n == Some(0) {
        return Ok(Vec::new());
    }
    let limit = n.filter(|n| *n > 0).map(|n| n as usize);
    let found = if sep.is_empty() {
        s.chars().count()
    } else {
        s.matches(sep).count() + 1
    };
    let parts = limit.map_or(found, |l| found.min(l));
    if map {
        // Keys `_0`, `_1`...
        budget.map(parts)?;
        budget.string(parts.saturating_mul(8))?;
    } else {
        budget.list(parts)?;
    }
    budget.string(s.len())?;
    Ok(split_parts(s, sep, limit))
}

fn split_parts(s: &str, sep: &str, limit: Option<usize>) -> Vec<String> {
    if sep.is_empty() {
        let chars: Vec<String> = s.chars().map(String::from).collect();
        return match limit {
            Some(l) if l < chars.len() => {
                let mut head = chars[..l - 1].to_vec();
                head.push(chars[l - 1..].concat());
                head
            }
            _ => chars,
        };
    }
    match limit {
        Some(l) => s.splitn(l, sep).map(str::to_owned).collect(),
        None => s.split(sep).map(str::to_owned).collect(),
    }
}

fn indexed_map(parts: Vec<String>) -> Value {
    Value::Map(
        parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("_{i}"), Value::String(p)))
            .collect::<BTreeMap<_, _>>(),
    )
}

pub(crate) fn split(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let (sep, s) = (string_arg(&args, 0)?, string_arg(&args, 1)?);
    Ok(indexed_map(go_split(&s, &sep, None, budget, true)?))
}

pub(crate) fn splitn(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let n = int_arg(&args, 1)?;
    let (sep, s) = (string_arg(&args, 0)?, string_arg(&args, 2)?);
    Ok(indexed_map(go_split(&s, &sep, Some(n), budget, true)?))
}

pub(crate) fn split_list(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let (sep, s) = (string_arg(&args, 0)?, string_arg(&args, 1)?);
    let parts = go_split(&s, &sep, None, budget, false)?;
    Ok(Value::List(parts.into_iter().map(Value::String).collect()))
}

pub(crate) fn to_strings(args: &[Value]) -> FnResult {
    Ok(Value::List(strslice(&args[0])))
}

pub(crate) fn sort_alpha(args: &[Value]) -> FnResult {
    let mut items = match &args[0] {
        list @ Value::List(_) => strslice(list),
        other => return Ok(Value::List(vec![Value::from_bytes(strval(other))])),
    };
    items.sort_by(|a, b| a.as_bytes().cmp(&b.as_bytes()));
    Ok(Value::List(items))
}

/// Go's `path.Base`.
pub(crate) fn base(args: &[Value]) -> FnResult {
    let s = string_arg(args, 0)?;
    if s.is_empty() {
        return text(".".into());
    }
    let trimmed = s.trim_end_matches('/');
    if trimmed.is_empty() {
        return text("/".into());
    }
    text(trimmed.rsplit('/').next().unwrap_or(trimmed).to_owned())
}

/// Go's `path.Ext`.
pub(crate) fn ext(args: &[Value]) -> FnResult {
    let s = string_arg(args, 0)?;
    let last = s.rsplit('/').next().unwrap_or(&s);
    text(
        last.rfind('.')
            .map(|i| last[i..].to_owned())
            .unwrap_or_default(),
    )
}

pub(crate) fn b64enc(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let bytes = bytes_arg(&args, 0)?;
    budget.string(bytes.len().div_ceil(3).saturating_mul(4))?;
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(bytes),
    ))
}

/// Go's `base64.StdEncoding`: padding required, newlines ignored, trailing bits tolerated.
const GO_STD: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
);

/// sprig's `b64dec`: invalid input is not an error, the result is Go's error text
/// (`illegal base64 data at input byte N`), as ESO renders it.
pub(crate) fn b64dec(args: &[Value]) -> FnResult {
    let input = bytes_arg(args, 0)?;
    // Go skips \r and \n; keep where each kept byte was, for the error offset.
    let kept: Vec<usize> = (0..input.len())
        .filter(|&i| !matches!(input[i], b'\r' | b'\n'))
        .collect();
    let clean: Vec<u8> = kept.iter().map(|&i| input[i]).collect();
    match GO_STD.decode(&clean) {
        Ok(bytes) => Ok(Value::from_bytes(bytes)),
        Err(e) => {
            let at = match e {
                base64::DecodeError::InvalidByte(off, _)
                | base64::DecodeError::InvalidLastSymbol(off, _) => off,
                base64::DecodeError::InvalidLength(len) => len - len % 4,
                base64::DecodeError::InvalidPadding => {
                    clean.iter().position(|&b| b == b'=').unwrap_or(0)
                }
            };
            let original = kept.get(at).copied().unwrap_or(input.len());
            text(format!("illegal base64 data at input byte {original}"))
        }
    }
}

/// sprig's `hexdec`: like `b64dec`, invalid input renders Go's error text.
pub(crate) fn hexdec(args: &[Value]) -> FnResult {
    let input = bytes_arg(args, 0)?;
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len() / 2);
    for pair in input.chunks(2) {
        match (digit(pair[0]), pair.get(1).map(|&b| digit(b))) {
            (Some(hi), Some(Some(lo))) => out.push(hi << 4 | lo),
            (None, _) => return text(format!("encoding/hex: invalid byte: U+{:04X}", pair[0])),
            (Some(_), Some(None)) => {
                return text(format!("encoding/hex: invalid byte: U+{:04X}", pair[1]));
            }
            (Some(_), None) => return text("encoding/hex: odd length hex string".into()),
        }
    }
    Ok(Value::from_bytes(out))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn sha256sum(args: &[Value]) -> FnResult {
    text(hex(&sha2::Sha256::digest(bytes_arg(args, 0)?)))
}

pub(crate) fn sha512sum(args: &[Value]) -> FnResult {
    text(hex(&sha2::Sha512::digest(bytes_arg(args, 0)?)))
}
