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

/// A marker in the data and in the template text, through every kind of error: no message
/// quotes it. Messages name the template, the position, functions, fields and variables.
/// The one exception is by design: `fail "text"` shows its literal, the author's message.
#[test]
fn errors_never_quote_template_text_or_data() {
    const MARKER: &str = "MARKER-7f3a";
    const NUMBER: &str = "73173017301730173017";
    let json = format!(r#"{{"pw":"{MARKER}","list":["{MARKER}"],"n":1}}"#);
    let pairs = data(&[("password", MARKER), ("json", &json)]);
    let templates = [
        // Lexing and parsing, with the marker in literals, raw strings and numbers.
        format!(r#"{{{{ "{MARKER} }}}}"#),
        format!("{{{{ `{MARKER} }}}}"),
        format!("{{{{ '{MARKER}' }}}}"),
        format!("{{{{ {NUMBER} }}}}"),
        format!("{{{{ 0x{NUMBER}{NUMBER} }}}}"),
        format!("{{{{ {NUMBER}x }}}}"),
        format!(r#"{{{{ "{MARKER}".x }}}}"#),
        format!(r#"{{{{ "{MARKER}" | "{MARKER}" }}}}"#),
        format!(r#"{{{{ if "{MARKER}" }}}}"#),
        format!(r#"{{{{ "{MARKER}" ) }}}}"#),
        format!(r#"{{{{ "{MARKER}" # }}}}"#),
        format!(r#"{{{{ template "x" "{MARKER}" ) }}}}"#),
        format!(r#"{{{{ end }}}}{MARKER}"#),
        format!(r#"{{{{/* {MARKER} "#),
        // Execution, with the marker in literals.
        format!(r#"{{{{ "{MARKER}" 1 }}}}"#),
        format!(r#"{{{{ {NUMBER} 1 }}}}"#),
        format!(r#"{{{{ upper "{MARKER}" 1 }}}}"#),
        format!(r#"{{{{ index "{MARKER}" 99 }}}}"#),
        format!(r#"{{{{ range "{MARKER}" }}}}{{{{ end }}}}"#),
        format!(r#"{{{{ mustFromJson "{MARKER}" }}}}"#),
        format!(r#"{{{{ mustRegexMatch "({MARKER}" "x" }}}}"#),
        format!(r#"{{{{ ("{MARKER}").x }}}}"#),
        format!(r#"{{{{ eq "{MARKER}" 1 }}}}"#),
        format!(r#"{{{{ lt (list "{MARKER}") 1 }}}}"#),
        format!(r#"{{{{ filterPEM "X" "-----BEGIN {MARKER}" }}}}"#),
        format!(r#"{{{{ repeat 1000000000 "{MARKER}" }}}}"#),
        format!(r#"{{{{ splitList "" (repeat 20000 "{MARKER}") }}}}"#),
        // Execution, with the marker in the data.
        "{{ .password.x }}".into(),
        "{{ .password 1 }}".into(),
        "{{ index .password 99 }}".into(),
        "{{ mustFromJson .password }}".into(),
        "{{ mustFromJson (printf \"[%s\" .json) }}".into(),
        "{{ (fromJson .json).pw.x }}".into(),
        "{{ (fromJson .json).missing }}".into(),
        "{{ fail .password }}".into(),
        "{{ repeat 10000000 .password }}".into(),
        "{{ printf \"%0999999999s\" .password }}".into(),
    ];
    for text in &templates {
        let Err(e) = render("data.password", text, &pairs) else {
            panic!("{text:?} rendered, expected an error");
        };
        let shown = format!("{e} | {e:?}");
        assert!(
            !shown.contains(MARKER) && !shown.contains(NUMBER) && !shown.contains("7f3a"),
            "{text:?} quoted the marker: {shown}"
        );
        assert!(shown.contains("data.password:1:"), "{shown}");
    }
    let e = fails(&format!(r#"{{{{ fail "{MARKER}" }}}}"#), &[]);
    assert!(e.message().contains(MARKER), "fail shows its own literal");
}
