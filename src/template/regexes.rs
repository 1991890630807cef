//! sprig's regular-expression functions, compiled with Go's RE2 syntax.

use super::budget::Budget;
use super::functions::{Budgeted, FnResult, int_arg, string_arg};
use super::value::Value;

fn text(s: String) -> FnResult {
    Ok(Value::String(s))
}

/// The function's pattern must compile; the message does not quote it (it may be computed from data).
fn regex(args: &[Value]) -> Result<regex::Regex, String> {
    let pattern = string_arg(args, 0)?;
    crate::go_regex::compile(&pattern).map_err(|_| "invalid regular expression".to_owned())
}

pub(crate) fn regex_match(args: &[Value]) -> FnResult {
    let s = string_arg(args, 1)?;
    Ok(Value::Bool(regex(args).is_ok_and(|r| r.is_match(&s))))
}

pub(crate) fn must_regex_match(args: &[Value]) -> FnResult {
    let s = string_arg(args, 1)?;
    Ok(Value::Bool(regex(args)?.is_match(&s)))
}

pub(crate) fn regex_find(args: &[Value]) -> FnResult {
    let s = string_arg(args, 1)?;
    text(
        regex(args)?
            .find(&s)
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default(),
    )
}

pub(crate) fn regex_find_all(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let s = string_arg(&args, 1)?;
    let n = int_arg(&args, 2)?;
    let limit = if n < 0 { usize::MAX } else { n as usize };
    let r = regex(&args)?;
    // The matches are disjoint, so their text is at most the input's.
    budget.list(r.find_iter(&s).take(limit).count())?;
    budget.string(s.len())?;
    let found = r
        .find_iter(&s)
        .take(limit)
        .map(|m| Value::String(m.as_str().to_owned()))
        .collect();
    Ok(Value::List(found))
}

/// The most a replacement of every match of `r` in `s` by `repl` can produce: each `$group`
/// in `repl` expands to text of its own match, and the matches are disjoint.
fn replaced_size(r: &regex::Regex, s: &str, repl: &str, expand: bool) -> usize {
    let matches = r.find_iter(s).count();
    let groups = if expand { repl.matches('$').count() } else { 0 };
    s.len()
        .saturating_add(matches.saturating_mul(repl.len()))
        .saturating_add(groups.saturating_mul(s.len()))
}

pub(crate) fn regex_replace_all(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let (s, repl) = (string_arg(&args, 1)?, string_arg(&args, 2)?);
    let r = regex(&args)?;
    budget.string(replaced_size(&r, &s, &repl, true))?;
    Ok(Value::String(r.replace_all(&s, repl.as_str()).into_owned()))
}

pub(crate) fn regex_replace_all_literal(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let (s, repl) = (string_arg(&args, 1)?, string_arg(&args, 2)?);
    let r = regex(&args)?;
    budget.string(replaced_size(&r, &s, &repl, false))?;
    Ok(Value::String(
        r.replace_all(&s, regex::NoExpand(&repl)).into_owned(),
    ))
}

pub(crate) fn regex_split(args: Vec<Value>, budget: &mut Budget) -> Budgeted {
    let s = string_arg(&args, 1)?;
    let n = int_arg(&args, 2)?;
    let r = regex(&args)?;
    let limit = usize::try_from(n).unwrap_or(usize::MAX);
    budget.list((r.find_iter(&s).count() + 1).min(limit))?;
    budget.string(s.len())?;
    let parts: Vec<Value> = match n {
        0 => Vec::new(),
        n if n < 0 => r.split(&s).map(|p| Value::String(p.to_owned())).collect(),
        n => r
            .splitn(&s, n as usize)
            .map(|p| Value::String(p.to_owned()))
            .collect(),
    };
    Ok(Value::List(parts))
}

pub(crate) fn regex_quote_meta(args: &[Value]) -> FnResult {
    text(regex::escape(&string_arg(args, 0)?))
}
