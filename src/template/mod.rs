//! The Go template engine of ESO's `spec.target.template` (`engineVersion: v2`).
//!
//! ESO renders each template with Go's `text/template`, `missingkey=error`, the sprig function
//! map (minus `env`/`expandenv`) and a few functions of its own, with the secret data as `.`:
//! a `map[string]string` of the fetched values. This module re-implements that subset in pure
//! Rust so the same manifests render the same bytes:
//!
//! - text and `{{ }}` actions with trim markers `{{-`/`-}}` and comments `{{/* */}}`;
//! - pipelines `a | f b`, parenthesised sub-expressions, literals (strings, raw strings, numbers,
//!   characters, booleans, `nil`), field chains `.a.b`, `$`, `$x := ...`, `$x = ...`;
//! - `if`/`else if`/`else`, `with`/`else with`/`else`, `range` over lists, maps and integers with
//!   `break`/`continue`, `define`/`template`/`block`;
//! - the functions in [`SUPPORTED_FUNCTIONS`]. Any other function is a parse error that names it.
//!
//! Errors ([`TemplateError`]) name the template, the position and the construct or function at
//! fault, and never contain a data value or a rendered value.

mod ast;
mod budget;
mod builtins;
mod collections;
mod encoding;
mod error;
mod exec;
mod functions;
mod gofmt;
mod lex;
mod literals;
mod numbers;
mod operands;
mod parse;
mod pem;
mod printf;
mod regexes;
mod strings;
mod value;

use std::collections::BTreeMap;

pub use budget::{Limit, Limits};
pub use error::{Phase, TemplateError};
pub use value::Value;

/// Every function templates may call, for documentation. Go's builtins, sprig's functions as ESO
/// ships them, and ESO's own `toYaml`, `fromYaml` and `filterPEM`.
pub const SUPPORTED_FUNCTIONS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "urlquery",
    "html",
    "js",
    "trim",
    "upper",
    "lower",
    "title",
    "untitle",
    "trimAll",
    "trimall",
    "trimPrefix",
    "trimSuffix",
    "trunc",
    "substr",
    "nospace",
    "repeat",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "quote",
    "squote",
    "cat",
    "indent",
    "nindent",
    "replace",
    "plural",
    "toString",
    "join",
    "split",
    "splitList",
    "splitn",
    "toStrings",
    "sortAlpha",
    "base",
    "ext",
    "b64enc",
    "b64dec",
    "hexdec",
    "sha256sum",
    "sha512sum",
    "regexMatch",
    "mustRegexMatch",
    "regexFind",
    "mustRegexFind",
    "regexFindAll",
    "mustRegexFindAll",
    "regexReplaceAll",
    "mustRegexReplaceAll",
    "regexReplaceAllLiteral",
    "mustRegexReplaceAllLiteral",
    "regexSplit",
    "mustRegexSplit",
    "regexQuoteMeta",
    "default",
    "empty",
    "coalesce",
    "all",
    "any",
    "compact",
    "mustCompact",
    "ternary",
    "fromJson",
    "mustFromJson",
    "toJson",
    "mustToJson",
    "toPrettyJson",
    "mustToPrettyJson",
    "toRawJson",
    "mustToRawJson",
    "deepCopy",
    "mustDeepCopy",
    "fail",
    "dict",
    "get",
    "set",
    "unset",
    "hasKey",
    "pluck",
    "keys",
    "pick",
    "omit",
    "values",
    "merge",
    "mustMerge",
    "mergeOverwrite",
    "mustMergeOverwrite",
    "dig",
    "list",
    "tuple",
    "append",
    "push",
    "mustAppend",
    "mustPush",
    "prepend",
    "mustPrepend",
    "first",
    "mustFirst",
    "last",
    "mustLast",
    "rest",
    "mustRest",
    "initial",
    "mustInitial",
    "reverse",
    "mustReverse",
    "uniq",
    "mustUniq",
    "without",
    "mustWithout",
    "has",
    "mustHas",
    "concat",
    "slice",
    "mustSlice",
    "atoi",
    "int",
    "int64",
    "float64",
    "add",
    "add1",
    "sub",
    "mul",
    "div",
    "mod",
    "max",
    "biggest",
    "min",
    "typeOf",
    "typeIs",
    "kindOf",
    "kindIs",
    "deepEqual",
    "toYaml",
    "fromYaml",
    "filterPEM",
];

/// Renders `text` (Go `text/template` syntax) against `data`, the `.` of the template, whose
/// values are bytes as ESO passes them (Go strings). `name` is used in errors
/// (e.g. `spec.target.template.data.config`).
pub fn render(
    name: &str,
    text: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>, TemplateError> {
    let data = data
        .iter()
        .map(|(k, v)| (k.clone(), Value::from_bytes(v.clone())))
        .collect();
    render_value(name, text, &Value::Map(data))
}

/// Renders `text` against any value as `.` (and `$`), within the default [`Limits`].
pub fn render_value(name: &str, text: &str, data: &Value) -> Result<Vec<u8>, TemplateError> {
    render_within(name, text, data, Limits::default())
}

/// Renders `text` against `data` within `limits`: a template that would use more memory,
/// output, steps or nesting fails with [`Phase::Budget`] before it allocates past them.
pub fn render_within(
    name: &str,
    text: &str,
    data: &Value,
    limits: Limits,
) -> Result<Vec<u8>, TemplateError> {
    let tree = parse_tree(name, text, &limits)?;
    exec::execute(name, text, &tree, data, limits)
}

/// Parses `text` without executing it, to report syntax errors and unsupported functions early.
pub fn validate(name: &str, text: &str) -> Result<(), TemplateError> {
    parse_tree(name, text, &Limits::default()).map(|_| ())
}

fn parse_tree(name: &str, text: &str, limits: &Limits) -> Result<parse::Tree, TemplateError> {
    parse::parse(text, limits).map_err(|e| match e {
        parse::Failure::Syntax(pos, message) => {
            TemplateError::new(name, Phase::Parse, text, pos, String::new(), message)
        }
        parse::Failure::Budget(pos, exceeded) => {
            TemplateError::budget(name, text, pos, String::new(), exceeded)
        }
    })
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod render_tests;

#[cfg(test)]
#[path = "functions_tests.rs"]
mod functions_tests;

#[cfg(test)]
#[path = "errors_tests.rs"]
mod errors_tests;

#[cfg(test)]
#[path = "budget_tests.rs"]
mod budget_tests;

#[cfg(test)]
#[path = "golden_tests.rs"]
mod golden_tests;
