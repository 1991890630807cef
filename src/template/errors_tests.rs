//! Errors: missing keys, unknown functions, syntax, and that no error ever carries a value.

use super::render_tests::{data, fails};
use super::*;

#[test]
fn missing_key_is_an_error_as_with_missingkey_error() {
    let e = fails("line one\n  {{ .unknown }}", &[("known", "v")]);
    assert_eq!(e.phase(), Phase::Execute);
    assert_eq!((e.name(), e.line(), e.column()), ("test", 2, 6));
    assert_eq!(
        e.to_string(),
        r#"unable to execute template test:2:6: at <.unknown>: map has no entry for key "unknown""#
    );
    let e = fails(r#"{{ (fromJson .j).b }}"#, &[("j", r#"{"a":1}"#)]);
    assert!(
        e.message().contains(r#"map has no entry for key "b""#),
        "{e}"
    );
    let e = fails("{{ .known.deeper }}", &[("known", "v")]);
    assert_eq!(e.message(), "can't evaluate field deeper in type string");
}

#[test]
fn unknown_functions_are_parse_errors_naming_them() {
    let e = fails("{{ .p12 | b64dec | pkcs12key }}", &[("p12", "x")]);
    assert_eq!(e.phase(), Phase::Parse);
    assert_eq!(
        e.message(),
        r#"function "pkcs12key" is not supported by secret-bridge"#
    );
    assert_eq!(e.column(), 20);
    let e = fails("{{ uper .x }}", &[("x", "x")]);
    assert_eq!(e.message(), r#"function "uper" not defined"#);
    assert!(
        validate("t", "{{ env \"HOME\" }}")
            .unwrap_err()
            .message()
            .contains("not supported by secret-bridge")
    );
}

#[test]
fn syntax_errors() {
    for (text, message) in [
        ("{{ #xx }}", "unrecognized character in action: '#'"),
        ("{{ .a ", "unclosed action"),
        ("{{ if .a }}x", "has no {{end}}"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ break }}", "{{break}} outside {{range}}"),
        ("{{ $x }}", "undefined variable \"$x\""),
        (
            "{{ \"a\" | \"b\" }}",
            "non executable command in pipeline stage 2",
        ),
        ("{{ (1 }}", "unclosed left paren"),
        ("{{ \"abc }}", "unterminated quoted string"),
        ("{{ 3x }}", "bad number syntax"),
        ("{{/* open }}", "unclosed comment"),
    ] {
        let e = validate("t", text).expect_err(text);
        assert_eq!(e.phase(), Phase::Parse, "{text}");
        assert!(e.message().contains(message), "{text}: {e}");
    }
}

#[test]
fn execution_errors() {
    for (text, message) in [
        ("{{ nil }}", "nil is not a command"),
        ("{{ .x 1 }}", "x is not a method but has arguments"),
        (
            "{{ upper }}",
            "wrong number of args for upper: want 1 got 0",
        ),
        (
            "{{ upper 1 }}",
            "wrong type for argument 1: expected string; got int",
        ),
        (
            "{{ range .x }}{{ end }}",
            "range can't iterate over a value of type string",
        ),
        ("{{ index (list 1) 5 }}", "index out of range"),
        ("{{ template \"nope\" }}", "no such template"),
        (
            "{{ fail \"custom message\" }}",
            "error calling fail: custom message",
        ),
    ] {
        let e = fails(text, &[("x", "v")]);
        assert_eq!(e.phase(), Phase::Execute, "{text}");
        assert!(e.message().contains(message), "{text}: {e}");
    }
}

/// Every error path that touches data, rendered with a secret in the data: no message may contain it.
#[test]
fn errors_never_contain_data_values() {
    const SECRET: &str = "hunter2";
    let json = format!(r#"{{"pw":"{SECRET}","n":1,"list":["{SECRET}"]}}"#);
    let pairs = data(&[("password", SECRET), ("json", &json), ("list", SECRET)]);
    let templates = [
        "{{ .password.field }}",
        "{{ .missing }}",
        "{{ .password | fail }}",
        "{{ fail .password }}",
        "{{ .password | int | upper }}",
        "{{ .password | regexReplaceAll .password \"x\" }}",
        "{{ regexMatch (printf \"(%s\" .password) \"x\" | mustRegexMatch (printf \"(%s\" .password) }}",
        "{{ mustFromJson .password }}",
        "{{ range .password }}{{ end }}",
        "{{ index .password 99 }}",
        "{{ index (fromJson .json) 1 }}",
        "{{ (fromJson .json).pw.deeper }}",
        "{{ (fromJson .json).nope }}",
        "{{ eq .password (fromJson .json).n }}",
        "{{ lt .password (list) }}",
        "{{ len (fromJson .json).n }}",
        "{{ ternary 1 2 .password }}",
        "{{ .password | filterPEM \"CERTIFICATE\" }}",
        "{{ append .password 1 }}",
        "{{ get .password \"k\" }}",
        "{{ .password 1 }}",
        "{{ $x := .password }}{{ $x 1 }}",
        "{{ eq (fromJson .json).list (fromJson .json).list }}",
        "{{ dig \"pw\" \"x\" \"d\" (fromJson .json) }}",
        "{{ template .password }}",
        "{{ div 1 (atoi .password) }}",
        "{{ .password | hunter2 }}",
    ];
    let mut seen = 0;
    for text in templates {
        let Err(e) = render("spec.target.template.data.config", text, &pairs) else {
            continue;
        };
        seen += 1;
        let shown = format!("{e} {e:?}");
        assert!(
            !shown.contains(SECRET) || text.contains(SECRET),
            "template {text:?} leaked a value"
        );
        assert!(shown.contains("spec.target.template.data.config"));
    }
    assert!(seen >= 20, "most of these must fail ({seen})");
}
