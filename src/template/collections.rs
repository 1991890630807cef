//! sprig's defaults, JSON, dictionary, list, number and type functions, and ESO's YAML functions.

use std::collections::BTreeMap;

use super::budget::{Budget, VALUE_SIZE};
use super::encoding::{self, JsonStyle};
use super::functions::{
    Budgeted, FnResult, Refusal, bool_arg, bytes_arg, list_arg, map_arg, string_arg,
};
use super::numbers::to_i64;
use super::strings::strval;
use super::value::{Kind, Value};

/// sprig's `empty`: nil, false, zero and empty strings, lists and maps.
pub(crate) fn is_empty(v: &Value) -> bool {
    !v.is_true()
}

pub(crate) fn default(args: &[Value]) -> FnResult {
    match args.get(1) {
        Some(given) if !is_empty(given) => Ok(given.clone()),
        _ => Ok(args[0].clone()),
    }
}

pub(crate) fn empty(args: &[Value]) -> FnResult {
    Ok(Value::Bool(is_empty(&args[0])))
}

pub(crate) fn coalesce(args: &[Value]) -> FnResult {
    Ok(args
        .iter()
        .find(|v| !is_empty(v))
        .cloned()
        .unwrap_or(Value::Null))
}

pub(crate) fn all(args: &[Value]) -> FnResult {
    Ok(Value::Bool(args.iter().all(|v| !is_empty(v))))
}

pub(crate) fn any(args: &[Value]) -> FnResult {
    Ok(Value::Bool(args.iter().any(|v| !is_empty(v))))
}

pub(crate) fn compact(args: &[Value]) -> FnResult {
    let list = list_arg(args, 0, "compact")?;
    Ok(Value::List(
        list.into_iter().filter(|v| !is_empty(v)).collect(),
    ))
}

pub(crate) fn ternary(args: &[Value]) -> FnResult {
    Ok(args[if bool_arg(args, 2)? { 0 } else { 1 }].clone())
}

pub(crate) fn identity(args: &[Value]) -> FnResult {
    Ok(args[0].clone())
}

/// Charges a document about to be decoded: at most one value per structural byte
/// (`[{,:-` or a newline), each a list or map slot, plus its text. A short document such as
/// `[[],[],...]` decodes to many times its size, so the bound is taken before decoding;
/// each list and map is checked against the element limit after.
fn decode_budget(text: &[u8], budget: &mut Budget) -> Result<(), Refusal> {
    let values = text
        .iter()
        .filter(|b| matches!(b, b'[' | b'{' | b',' | b':' | b'-' | b'\n'))
        .count()
        + 1;
    budget.alloc(values.saturating_mul(2 * VALUE_SIZE))?;
    budget.string(text.len())?;
    Ok(())
}

/// sprig's `fromJson`: invalid JSON gives nil, not an error.
pub(crate) fn from_json(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let text = bytes_arg(&args, 0)?;
    decode_budget(text, budget)?;
    let value = encoding::from_json(text).unwrap_or(Value::Null);
    budget.measure(&value)?;
    Ok(value)
}

pub(crate) fn must_from_json(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let text = bytes_arg(&args, 0)?;
    decode_budget(text, budget)?;
    // The position and the kind of fault only: the text may be a secret.
    let value = encoding::from_json(text).map_err(|e| {
        format!(
            "invalid JSON: {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    budget.measure(&value)?;
    Ok(value)
}

fn json(args: Vec<Value>, budget: &mut Budget, escape_html: bool, indent: bool) -> Budgeted {
    let style = JsonStyle {
        escape_html,
        indent,
    };
    let json = encoding::to_json(&args[0], style, budget)?;
    budget.string(json.len())?;
    Ok(Value::String(json))
}

pub(crate) fn to_json(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    json(args, budget, true, false)
}

pub(crate) fn to_pretty_json(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    json(args, budget, true, true)
}

pub(crate) fn to_raw_json(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    json(args, budget, false, false)
}

pub(crate) fn to_yaml(args: &[Value]) -> FnResult {
    Ok(Value::String(encoding::to_yaml(&args[0])))
}

pub(crate) fn from_yaml(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let text = string_arg(&args, 0)?;
    decode_budget(text.as_bytes(), budget)?;
    let value = encoding::from_yaml(&text);
    budget.measure(&value)?;
    Ok(value)
}

pub(crate) fn dict(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    budget.map(args.len().div_ceil(2))?;
    let mut map = BTreeMap::new();
    let mut args = args.into_iter();
    while let Some(key) = args.next() {
        let key = String::from_utf8_lossy(&strval(&key)).into_owned();
        budget.string(key.len())?;
        map.insert(
            key,
            args.next().unwrap_or_else(|| Value::String(String::new())),
        );
    }
    Ok(Value::Map(map))
}

pub(crate) fn get(args: &[Value]) -> FnResult {
    let map = map_arg(args, 0)?;
    Ok(map
        .get(&string_arg(args, 1)?)
        .cloned()
        .unwrap_or_else(|| Value::String(String::new())))
}

/// `set`: returns the updated map; the evaluator also stores it back into the variable it came
/// from, since Go maps are references and templates rely on `$_ := set $d "k" "v"`.
/// The map argument, owned: a copy, or moved out of the variable it is stored back into.
fn own_map(args: &mut [Value]) -> Result<BTreeMap<String, Value>, String> {
    map_arg(args, 0)?;
    match std::mem::take(&mut args[0]) {
        Value::Map(map) => Ok(map),
        _ => Err("internal error: not a map".into()),
    }
}

pub(crate) fn set(mut args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let key = string_arg(&args, 1)?;
    let mut map = own_map(&mut args)?;
    budget.elements("map", map.len() + 1)?;
    budget.alloc(key.len() + 2 * VALUE_SIZE)?;
    map.insert(key, std::mem::take(&mut args[2]));
    Ok(Value::Map(map))
}

pub(crate) fn unset(mut args: Vec<Value>, _: &mut Budget) -> Budgeted {
    let key = string_arg(&args, 1)?;
    let mut map = own_map(&mut args)?;
    map.remove(&key);
    Ok(Value::Map(map))
}

pub(crate) fn has_key(args: &[Value]) -> FnResult {
    Ok(Value::Bool(
        map_arg(args, 0)?.contains_key(&string_arg(args, 1)?),
    ))
}

pub(crate) fn pluck(args: &[Value]) -> FnResult {
    let key = string_arg(args, 0)?;
    let mut found = Vec::new();
    for n in 1..args.len() {
        if let Some(v) = map_arg(args, n)?.get(&key) {
            found.push(v.clone());
        }
    }
    Ok(Value::List(found))
}

/// `keys`, sorted (Go's map order is random, so any order is ESO-compatible).
pub(crate) fn keys(args: &[Value]) -> FnResult {
    let mut keys = Vec::new();
    for n in 0..args.len() {
        keys.extend(map_arg(args, n)?.keys().map(|k| Value::String(k.clone())));
    }
    Ok(Value::List(keys))
}

pub(crate) fn pick(args: &[Value]) -> FnResult {
    let map = map_arg(args, 0)?;
    let mut picked = BTreeMap::new();
    for n in 1..args.len() {
        let key = string_arg(args, n)?;
        if let Some(v) = map.get(&key) {
            picked.insert(key, v.clone());
        }
    }
    Ok(Value::Map(picked))
}

pub(crate) fn omit(args: &[Value]) -> FnResult {
    let mut map = map_arg(args, 0)?.clone();
    for n in 1..args.len() {
        map.remove(&string_arg(args, n)?);
    }
    Ok(Value::Map(map))
}

pub(crate) fn values(args: &[Value]) -> FnResult {
    Ok(Value::List(map_arg(args, 0)?.values().cloned().collect()))
}

/// mergo's deep merge: keys missing (or empty, when not overwriting) in `dst` come from `src`.
fn merge_into(dst: &mut BTreeMap<String, Value>, src: &BTreeMap<String, Value>, overwrite: bool) {
    for (k, v) in src {
        match (dst.get_mut(k), v) {
            (Some(Value::Map(d)), Value::Map(s)) => merge_into(d, s, overwrite),
            // Keep a set value unless overwriting with a set one.
            (Some(existing), _) if !is_empty(existing) && (!overwrite || is_empty(v)) => {}
            (_, _) => {
                dst.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_all(args: &[Value], overwrite: bool) -> FnResult {
    let mut dst = map_arg(args, 0)?.clone();
    for n in 1..args.len() {
        merge_into(&mut dst, map_arg(args, n)?, overwrite);
    }
    Ok(Value::Map(dst))
}

pub(crate) fn merge(args: &[Value]) -> FnResult {
    merge_all(args, false)
}

pub(crate) fn merge_overwrite(args: &[Value]) -> FnResult {
    merge_all(args, true)
}

/// `dig "a" "b" default map`.
pub(crate) fn dig(args: &[Value]) -> FnResult {
    let (path, rest) = args.split_at(args.len() - 2);
    let default = &rest[0];
    let mut current = map_arg(args, args.len() - 1)?;
    for n in 0..path.len() {
        let key = string_arg(path, n)?;
        match current.get(&key) {
            None => return Ok(default.clone()),
            Some(v) if n == path.len() - 1 => return Ok(v.clone()),
            Some(Value::Map(m)) => current = m,
            Some(other) => {
                return Err(format!(
                    "dig: cannot descend into type {}",
                    other.type_name()
                ));
            }
        }
    }
    Ok(default.clone())
}

pub(crate) fn list(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    budget.list(args.len())?;
    Ok(Value::List(args))
}

/// The Go reflect kind name, used in sprig's list errors and `kindOf`.
pub(crate) fn kind_name(v: &Value) -> &'static str {
    match v.kind() {
        Kind::String => "string",
        Kind::Bool => "bool",
        Kind::Int => "int",
        Kind::Uint => "uint64",
        Kind::Float => "float64",
        Kind::List => "slice",
        Kind::Map => "map",
        Kind::Nil => "invalid",
    }
}

/// The list and the item of `append` and `prepend`, the list's new length checked.
fn list_and_item(
    args: Vec<Value>,
    function: &str,
    budget: &mut Budget,
) -> Result<(Vec<Value>, Value), Refusal> {
    let mut args = args.into_iter();
    match (args.next(), args.next()) {
        (Some(Value::List(list)), Some(item)) => {
            budget.elements("list", list.len() + 1)?;
            Ok((list, item))
        }
        (Some(other), _) => Err(format!("cannot {function} on type {}", kind_name(&other)).into()),
        (None, _) => Err("internal error: missing argument".into()),
    }
}

pub(crate) fn append(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let (mut list, item) = list_and_item(args, "push", budget)?;
    // The list is ours (a copy, or moved out of a variable being reassigned): a slot more
    // costs a new buffer only when it is full, twice as large as Vec grows.
    if list.len() == list.capacity() {
        budget.alloc(list.capacity().max(2).saturating_mul(2 * VALUE_SIZE))?;
    }
    list.push(item);
    Ok(Value::List(list))
}

pub(crate) fn prepend(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let (mut list, item) = list_and_item(args, "prepend", budget)?;
    // Every element moves (sprig copies the list), so each prepend costs the whole list.
    budget.list(list.len() + 1)?;
    list.insert(0, item);
    Ok(Value::List(list))
}

pub(crate) fn first(args: &[Value]) -> FnResult {
    Ok(list_arg(args, 0, "find first")?
        .into_iter()
        .next()
        .unwrap_or(Value::Null))
}

pub(crate) fn last(args: &[Value]) -> FnResult {
    Ok(list_arg(args, 0, "find last")?.pop().unwrap_or(Value::Null))
}

pub(crate) fn rest(args: &[Value]) -> FnResult {
    let list = list_arg(args, 0, "find rest")?;
    Ok(if list.is_empty() {
        Value::Null
    } else {
        Value::List(list[1..].to_vec())
    })
}

pub(crate) fn initial(args: &[Value]) -> FnResult {
    let mut list = list_arg(args, 0, "find initial")?;
    Ok(if list.pop().is_none() {
        Value::Null
    } else {
        Value::List(list)
    })
}

pub(crate) fn reverse(args: &[Value]) -> FnResult {
    let mut list = list_arg(args, 0, "find reverse")?;
    list.reverse();
    Ok(Value::List(list))
}

/// sprig's `uniq`, quadratic as sprig's: the comparisons count as steps.
pub(crate) fn uniq(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let list = list_arg(&args, 0, "find uniq")?;
    budget.list(list.len())?;
    let mut out: Vec<Value> = Vec::new();
    for v in list {
        budget.work(out.len())?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(Value::List(out))
}

pub(crate) fn without(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let list = list_arg(&args, 0, "find without")?;
    budget.list(list.len())?;
    budget.work(list.len().saturating_mul(args.len() - 1))?;
    Ok(Value::List(
        list.into_iter()
            .filter(|v| !args[1..].contains(v))
            .collect(),
    ))
}

pub(crate) fn has(args: &[Value]) -> FnResult {
    match &args[1] {
        Value::Null => Ok(Value::Bool(false)),
        Value::List(list) => Ok(Value::Bool(list.contains(&args[0]))),
        other => Err(format!("cannot find has on type {}", kind_name(other))),
    }
}

pub(crate) fn concat(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let mut len = 0usize;
    for arg in &args {
        match arg {
            Value::List(l) => len = len.saturating_add(l.len()),
            other => return Err(format!("cannot concat on type {}", kind_name(other)).into()),
        }
    }
    budget.list(len)?;
    let mut out = Vec::with_capacity(len);
    for arg in args {
        if let Value::List(l) = arg {
            out.extend(l);
        }
    }
    Ok(Value::List(out))
}

pub(crate) fn slice(args: &[Value]) -> FnResult {
    let list = list_arg(args, 0, "slice")?;
    if list.is_empty() {
        return Ok(Value::Null);
    }
    let start = args.get(1).map_or(0, to_i64);
    let end = args.get(2).map_or(list.len() as i64, to_i64);
    if start < 0 || end < start || end as usize > list.len() {
        return Err("slice bounds out of range".into());
    }
    Ok(Value::List(list[start as usize..end as usize].to_vec()))
}
