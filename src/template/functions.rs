//! The function map: Go's builtins, the sprig functions ESO adds, and ESO's own.

use std::collections::BTreeMap;

use super::budget::{Budget, Exceeded};
use super::value::Value;
use super::{builtins, collections, numbers, pem, regexes, strings};

/// A function's result, or what went wrong: a message that never contains argument values.
pub(crate) type FnResult = Result<Value, String>;

/// Why a budgeted function gave no value: an ordinary error, or a budget it would exceed.
#[derive(Debug)]
pub(crate) enum Refusal {
    Error(String),
    Budget(Exceeded),
}

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Refusal::Error(message)
    }
}

impl From<&str> for Refusal {
    fn from(message: &str) -> Self {
        Refusal::Error(message.to_owned())
    }
}

impl From<Exceeded> for Refusal {
    fn from(exceeded: Exceeded) -> Self {
        Refusal::Budget(exceeded)
    }
}

/// A budgeted function's result.
pub(crate) type Budgeted = Result<Value, Refusal>;

/// How a function is called, which says who accounts for the memory of its result.
pub(crate) enum Call {
    /// The result is at most a small multiple of the arguments: the evaluator charges it
    /// to the budget once it is made.
    Plain(fn(&[Value]) -> FnResult),
    /// The result can be far larger than the arguments (`repeat`, `splitList`, `printf`
    /// widths...): the function checks the budget before it allocates. It owns its
    /// arguments so that list functions reuse them instead of copying.
    Budgeted(fn(Vec<Value>, &mut Budget) -> Budgeted),
}

pub(crate) struct Function {
    pub name: &'static str,
    pub min_args: usize,
    /// `None` for variadic functions.
    pub max_args: Option<usize>,
    pub call: Call,
}

const fn f(
    name: &'static str,
    min_args: usize,
    max_args: usize,
    call: fn(&[Value]) -> FnResult,
) -> Function {
    Function {
        name,
        min_args,
        max_args: Some(max_args),
        call: Call::Plain(call),
    }
}

const fn variadic(name: &'static str, min_args: usize, call: fn(&[Value]) -> FnResult) -> Function {
    Function {
        name,
        min_args,
        max_args: None,
        call: Call::Plain(call),
    }
}

/// A function that checks the budget itself.
const fn b(
    name: &'static str,
    min_args: usize,
    max_args: Option<usize>,
    call: fn(Vec<Value>, &mut Budget) -> Budgeted,
) -> Function {
    Function {
        name,
        min_args,
        max_args,
        call: Call::Budgeted(call),
    }
}

/// Functions the evaluator implements itself (lazy arguments or access to variables).
fn evaluator_only(_: &[Value]) -> FnResult {
    Err("internal error: called outside the evaluator".into())
}

static FUNCTIONS: &[Function] = &[
    // Go's builtins.
    variadic("and", 1, evaluator_only),
    variadic("or", 1, evaluator_only),
    f("not", 1, 1, builtins::not),
    f("len", 1, 1, builtins::len),
    variadic("index", 1, builtins::index),
    variadic("print", 0, builtins::print),
    b("printf", 1, None, builtins::printf),
    variadic("println", 0, builtins::println),
    variadic("eq", 2, builtins::eq),
    f("ne", 2, 2, builtins::ne),
    f("lt", 2, 2, builtins::lt),
    f("le", 2, 2, builtins::le),
    f("gt", 2, 2, builtins::gt),
    f("ge", 2, 2, builtins::ge),
    variadic("urlquery", 0, builtins::urlquery),
    variadic("html", 0, builtins::html),
    variadic("js", 0, builtins::js),
    // sprig: strings.
    f("trim", 1, 1, strings::trim),
    f("upper", 1, 1, strings::upper),
    f("lower", 1, 1, strings::lower),
    f("title", 1, 1, strings::title),
    f("untitle", 1, 1, strings::untitle),
    f("trimAll", 2, 2, strings::trim_all),
    f("trimall", 2, 2, strings::trim_all),
    f("trimPrefix", 2, 2, strings::trim_prefix),
    f("trimSuffix", 2, 2, strings::trim_suffix),
    f("trunc", 2, 2, strings::trunc),
    f("substr", 3, 3, strings::substr),
    f("nospace", 1, 1, strings::nospace),
    b("repeat", 2, Some(2), strings::repeat),
    f("contains", 2, 2, strings::contains),
    f("hasPrefix", 2, 2, strings::has_prefix),
    f("hasSuffix", 2, 2, strings::has_suffix),
    variadic("quote", 0, strings::quote),
    variadic("squote", 0, strings::squote),
    variadic("cat", 0, strings::cat),
    b("indent", 2, Some(2), strings::indent),
    b("nindent", 2, Some(2), strings::nindent),
    b("replace", 3, Some(3), strings::replace),
    f("plural", 3, 3, strings::plural),
    f("toString", 1, 1, strings::to_string),
    b("join", 2, Some(2), strings::join),
    b("split", 2, Some(2), strings::split),
    b("splitList", 2, Some(2), strings::split_list),
    b("splitn", 3, Some(3), strings::splitn),
    f("toStrings", 1, 1, strings::to_strings),
    f("sortAlpha", 1, 1, strings::sort_alpha),
    f("base", 1, 1, strings::base),
    f("ext", 1, 1, strings::ext),
    // sprig: encoding and hashes.
    b("b64enc", 1, Some(1), strings::b64enc),
    f("b64dec", 1, 1, strings::b64dec),
    f("hexdec", 1, 1, strings::hexdec),
    f("sha256sum", 1, 1, strings::sha256sum),
    f("sha512sum", 1, 1, strings::sha512sum),
    // sprig: regular expressions.
    f("regexMatch", 2, 2, regexes::regex_match),
    f("mustRegexMatch", 2, 2, regexes::must_regex_match),
    f("regexFind", 2, 2, regexes::regex_find),
    f("mustRegexFind", 2, 2, regexes::regex_find),
    b("regexFindAll", 3, Some(3), regexes::regex_find_all),
    b("mustRegexFindAll", 3, Some(3), regexes::regex_find_all),
    b("regexReplaceAll", 3, Some(3), regexes::regex_replace_all),
    b(
        "mustRegexReplaceAll",
        3,
        Some(3),
        regexes::regex_replace_all,
    ),
    b(
        "regexReplaceAllLiteral",
        3,
        Some(3),
        regexes::regex_replace_all_literal,
    ),
    b(
        "mustRegexReplaceAllLiteral",
        3,
        Some(3),
        regexes::regex_replace_all_literal,
    ),
    b("regexSplit", 3, Some(3), regexes::regex_split),
    b("mustRegexSplit", 3, Some(3), regexes::regex_split),
    f("regexQuoteMeta", 1, 1, regexes::regex_quote_meta),
    // sprig: defaults and JSON.
    variadic("default", 1, collections::default),
    f("empty", 1, 1, collections::empty),
    variadic("coalesce", 0, collections::coalesce),
    variadic("all", 0, collections::all),
    variadic("any", 0, collections::any),
    f("compact", 1, 1, collections::compact),
    f("mustCompact", 1, 1, collections::compact),
    f("ternary", 3, 3, collections::ternary),
    b("fromJson", 1, Some(1), collections::from_json),
    b("mustFromJson", 1, Some(1), collections::must_from_json),
    b("toJson", 1, Some(1), collections::to_json),
    b("mustToJson", 1, Some(1), collections::to_json),
    b("toPrettyJson", 1, Some(1), collections::to_pretty_json),
    b("mustToPrettyJson", 1, Some(1), collections::to_pretty_json),
    b("toRawJson", 1, Some(1), collections::to_raw_json),
    b("mustToRawJson", 1, Some(1), collections::to_raw_json),
    f("deepCopy", 1, 1, collections::identity),
    f("mustDeepCopy", 1, 1, collections::identity),
    f("fail", 1, 1, evaluator_only),
    // sprig: dictionaries.
    b("dict", 0, None, collections::dict),
    f("get", 2, 2, collections::get),
    b("set", 3, Some(3), collections::set),
    b("unset", 2, Some(2), collections::unset),
    f("hasKey", 2, 2, collections::has_key),
    variadic("pluck", 1, collections::pluck),
    variadic("keys", 0, collections::keys),
    variadic("pick", 1, collections::pick),
    variadic("omit", 1, collections::omit),
    f("values", 1, 1, collections::values),
    variadic("merge", 1, collections::merge),
    variadic("mustMerge", 1, collections::merge),
    variadic("mergeOverwrite", 1, collections::merge_overwrite),
    variadic("mustMergeOverwrite", 1, collections::merge_overwrite),
    variadic("dig", 3, collections::dig),
    // sprig: lists.
    b("list", 0, None, collections::list),
    b("tuple", 0, None, collections::list),
    b("append", 2, Some(2), collections::append),
    b("push", 2, Some(2), collections::append),
    b("mustAppend", 2, Some(2), collections::append),
    b("mustPush", 2, Some(2), collections::append),
    b("prepend", 2, Some(2), collections::prepend),
    b("mustPrepend", 2, Some(2), collections::prepend),
    f("first", 1, 1, collections::first),
    f("mustFirst", 1, 1, collections::first),
    f("last", 1, 1, collections::last),
    f("mustLast", 1, 1, collections::last),
    f("rest", 1, 1, collections::rest),
    f("mustRest", 1, 1, collections::rest),
    f("initial", 1, 1, collections::initial),
    f("mustInitial", 1, 1, collections::initial),
    f("reverse", 1, 1, collections::reverse),
    f("mustReverse", 1, 1, collections::reverse),
    b("uniq", 1, Some(1), collections::uniq),
    b("mustUniq", 1, Some(1), collections::uniq),
    b("without", 1, None, collections::without),
    b("mustWithout", 1, None, collections::without),
    f("has", 2, 2, collections::has),
    f("mustHas", 2, 2, collections::has),
    b("concat", 0, None, collections::concat),
    f("slice", 1, 3, collections::slice),
    f("mustSlice", 1, 3, collections::slice),
    // sprig: numbers and types.
    f("atoi", 1, 1, numbers::atoi),
    f("int", 1, 1, numbers::to_int),
    f("int64", 1, 1, numbers::to_int),
    f("float64", 1, 1, numbers::to_float),
    variadic("add", 0, numbers::add),
    f("add1", 1, 1, numbers::add1),
    f("sub", 2, 2, numbers::sub),
    variadic("mul", 1, numbers::mul),
    f("div", 2, 2, numbers::div),
    f("mod", 2, 2, numbers::modulo),
    variadic("max", 1, numbers::max),
    variadic("biggest", 1, numbers::max),
    variadic("min", 1, numbers::min),
    f("typeOf", 1, 1, numbers::type_of),
    f("typeIs", 2, 2, numbers::type_is),
    f("kindOf", 1, 1, numbers::kind_of),
    f("kindIs", 2, 2, numbers::kind_is),
    f("deepEqual", 2, 2, numbers::deep_equal),
    // ESO's own.
    f("toYaml", 1, 1, collections::to_yaml),
    b("fromYaml", 1, Some(1), collections::from_yaml),
    f("filterPEM", 2, 2, pem::filter_pem),
];

/// Every function name ESO's v2 engine knows (Go builtins, sprig's `TxtFuncMap`, ESO's own),
/// so that a template using one we lack gets a clear "not supported" rather than "not defined".
const ESO_FUNCTIONS: &[&str] = &[
    "call",
    "hello",
    "ago",
    "date",
    "date_in_zone",
    "date_modify",
    "dateInZone",
    "dateModify",
    "duration",
    "durationRound",
    "htmlDate",
    "htmlDateInZone",
    "must_date_modify",
    "mustDateModify",
    "mustToDate",
    "now",
    "toDate",
    "unixEpoch",
    "abbrev",
    "abbrevboth",
    "initials",
    "randAlphaNum",
    "randAlpha",
    "randAscii",
    "randNumeric",
    "swapcase",
    "shuffle",
    "snakecase",
    "camelcase",
    "kebabcase",
    "wrap",
    "wrapWith",
    "sha1sum",
    "adler32sum",
    "seq",
    "toDecimal",
    "until",
    "untilStep",
    "randInt",
    "add1f",
    "addf",
    "subf",
    "divf",
    "mulf",
    "maxf",
    "minf",
    "ceil",
    "floor",
    "round",
    "chunk",
    "mustChunk",
    "dir",
    "clean",
    "isAbs",
    "osBase",
    "osClean",
    "osDir",
    "osExt",
    "osIsAbs",
    "b32enc",
    "b32dec",
    "bcrypt",
    "htpasswd",
    "genPrivateKey",
    "derivePassword",
    "buildCustomCert",
    "genCA",
    "genCAWithKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
    "genSignedCertWithKey",
    "encryptAES",
    "decryptAES",
    "randBytes",
    "uuidv4",
    "semver",
    "semverCompare",
    "urlParse",
    "urlJoin",
    "pkcs12key",
    "pkcs12keyPass",
    "pkcs12cert",
    "pkcs12certPass",
    "pemToPkcs12",
    "pemToPkcs12Pass",
    "fullPemToPkcs12",
    "fullPemToPkcs12Pass",
    "pemTruststoreToPKCS12",
    "pemTruststoreToPKCS12Pass",
    "filterCertChain",
    "certSANs",
    "jwkPublicKeyPem",
    "jwkPrivateKeyPem",
    "rsaDecrypt",
    "env",
    "expandenv",
];

pub(crate) fn lookup(name: &str) -> Option<&'static Function> {
    static INDEX: std::sync::OnceLock<BTreeMap<&'static str, &'static Function>> =
        std::sync::OnceLock::new();
    INDEX
        .get_or_init(|| FUNCTIONS.iter().map(|f| (f.name, f)).collect())
        .get(name)
        .copied()
}

/// The parse error for a function we do not have.
pub(crate) fn unknown_message(name: &str) -> String {
    if ESO_FUNCTIONS.contains(&name) {
        format!("function {name:?} is not supported by secret-bridge")
    } else {
        format!("function {name:?} not defined")
    }
}

/// The names of all functions, in table order.
#[cfg(test)]
pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    FUNCTIONS.iter().map(|f| f.name)
}

// Argument helpers shared by the function modules. `n` is the 0-based argument index.

fn wrong_type(n: usize, expected: &str, got: &Value) -> String {
    format!(
        "wrong type for argument {}: expected {expected}; got {}",
        n + 1,
        got.type_name()
    )
}

/// A string argument (a non-UTF-8 string is read lossily).
pub(crate) fn string_arg(args: &[Value], n: usize) -> Result<String, String> {
    match &args[n] {
        Value::String(s) => Ok(s.clone()),
        Value::Bytes(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        other => Err(wrong_type(n, "string", other)),
    }
}

pub(crate) fn bytes_arg(args: &[Value], n: usize) -> Result<&[u8], String> {
    args[n]
        .as_bytes()
        .ok_or_else(|| wrong_type(n, "string", &args[n]))
}

pub(crate) fn int_arg(args: &[Value], n: usize) -> Result<i64, String> {
    args[n]
        .as_int()
        .ok_or_else(|| wrong_type(n, "int", &args[n]))
}

pub(crate) fn bool_arg(args: &[Value], n: usize) -> Result<bool, String> {
    match &args[n] {
        Value::Bool(b) => Ok(*b),
        other => Err(wrong_type(n, "bool", other)),
    }
}

pub(crate) fn map_arg(args: &[Value], n: usize) -> Result<&BTreeMap<String, Value>, String> {
    match &args[n] {
        Value::Map(m) => Ok(m),
        other => Err(wrong_type(n, "map[string]interface {}", other)),
    }
}

pub(crate) fn list_arg(args: &[Value], n: usize, function: &str) -> Result<Vec<Value>, String> {
    match &args[n] {
        Value::List(l) => Ok(l.clone()),
        other => Err(format!(
            "cannot {function} on type {}",
            super::collections::kind_name(other)
        )),
    }
}
