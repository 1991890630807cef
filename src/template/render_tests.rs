//! The template language: actions, pipelines, variables, control structures, printing.

use super::*;

pub(super) fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// Renders and returns the output as text; panics with the (value-free) error otherwise.
pub(super) fn ok(text: &str, pairs: &[(&str, &str)]) -> String {
    match render("test", text, &data(pairs)) {
        Ok(out) => String::from_utf8(out).expect("utf-8 output"),
        Err(e) => panic!("{text:?} failed: {e}"),
    }
}

pub(super) fn fails(text: &str, pairs: &[(&str, &str)]) -> TemplateError {
    match render("test", text, &data(pairs)) {
        Ok(_) => panic!("{text:?} rendered, expected an error"),
        Err(e) => e,
    }
}

#[test]
fn plain_text_and_fields() {
    assert_eq!(ok("no actions", &[]), "no actions");
    assert_eq!(
        ok(
            "{{ .user }}:{{ .password }}",
            &[("user", "admin"), ("password", "s3cr3t")]
        ),
        "admin:s3cr3t"
    );
    assert_eq!(
        ok(
            r#"{{ index . "key.with.dots" }}"#,
            &[("key.with.dots", "v")]
        ),
        "v"
    );
    assert_eq!(
        ok(
            r#"{{ index . "service-account-token" }}"#,
            &[("service-account-token", "t")]
        ),
        "t"
    );
    assert_eq!(ok("{{.a}}{{.b}}", &[("a", "1"), ("b", "2")]), "12");
}

#[test]
fn eso_docs_config_file() {
    let text = "datasources:\n- name: Graphite\n  password: \"{{ .password }}\"\n  user: \"{{ .user }}\"\n";
    assert_eq!(
        ok(text, &[("user", "foobert"), ("password", "harharhar")]),
        "datasources:\n- name: Graphite\n  password: \"harharhar\"\n  user: \"foobert\"\n"
    );
    assert_eq!(
        ok(
            r#"{{ .dburl | replace "postgres://" "postgresql://" }}"#,
            &[("dburl", "postgres://u@h/db")]
        ),
        "postgresql://u@h/db"
    );
}

#[test]
fn eso_docs_templated_keys_and_values() {
    let text = "my-application-{{ .user}}: {{ .password | b64enc }}\n{{- if hasPrefix \"oci://\" .uri }}\nenableOCI: true\n{{- else }}\nenableOCI: false\n{{- end }}\napplication-type: grafana";
    assert_eq!(
        ok(
            text,
            &[("user", "bob"), ("password", "pw"), ("uri", "oci://x")]
        ),
        "my-application-bob: cHc=\nenableOCI: true\napplication-type: grafana"
    );
    assert_eq!(
        ok(
            text,
            &[("user", "bob"), ("password", "pw"), ("uri", "https://x")]
        ),
        "my-application-bob: cHc=\nenableOCI: false\napplication-type: grafana"
    );
}

#[test]
fn eso_docs_range_over_from_json() {
    let text = "{{- range $key, $val := . }}\n{{- $json := $val | fromJson }}\n{{ $key }}: {{ $json.cert }}\n{{- end }}";
    let pairs = [
        ("a", r#"{"cert":"Y2VydA==","description":"x"}"#),
        ("b", r#"{"cert":"Yg=="}"#),
    ];
    assert_eq!(ok(text, &pairs), "\na: Y2VydA==\nb: Yg==");
}

#[test]
fn eso_docs_helm_escape() {
    assert_eq!(ok("{{ `{{ .mysecret }}` }}", &[]), "{{ .mysecret }}");
}

#[test]
fn eso_tests_json_round_trips() {
    let secret = [("secret", r#"{"foo": {"baz":"bang"}}"#)];
    assert_eq!(
        ok(
            "{{ $var := .secret | fromJson }}{{ $var.foo | toJson }}",
            &secret
        ),
        r#"{"baz":"bang"}"#
    );
    assert_eq!(
        ok("{{ .secret | fromJson | toJson }}", &secret),
        r#"{"foo":{"baz":"bang"}}"#
    );
    let flat = [("secret", r#"{"foo": "bar"}"#)];
    assert_eq!(
        ok("{{ $var := .secret | fromJson }}{{ $var.foo }}", &flat),
        "bar"
    );
    assert_eq!(
        ok("{{ $var := .secret | fromJson | toYaml }}{{ $var }}", &flat),
        "foo: bar"
    );
    assert_eq!(
        ok(
            "{{ .secret | fromYaml | toJson }}",
            &[("secret", "foo: bar")]
        ),
        r#"{"foo":"bar"}"#
    );
    assert_eq!(
        ok("{{ .secret | b64dec }}", &[("secret", "MTIzNA==")]),
        "1234"
    );
    assert_eq!(
        ok(r#"{{ "123412341234" | b64enc | b64dec }}"#, &[]),
        "123412341234"
    );
    assert_eq!(
        ok("{{ .path | ext }}", &[("path", "foo/bar/baz.exe")]),
        ".exe"
    );
    assert_eq!(
        ok("{{ .value | upper }}", &[("value", "username")]),
        "USERNAME"
    );
}

#[test]
fn trim_markers_and_comments() {
    assert_eq!(ok("a  {{- .x -}}  b", &[("x", "X")]), "aXb");
    assert_eq!(ok("a\n\n{{- .x }}\n", &[("x", "X")]), "aX\n");
    assert_eq!(ok("a {{/* a comment */}} b", &[]), "a  b");
    assert_eq!(ok("a {{- /* trimmed */ -}} b", &[]), "ab");
    assert_eq!(ok("{{ 3 -}} x", &[]), "3x");
    assert_eq!(ok("{{-3}}", &[]), "-3");
}

#[test]
fn literals() {
    assert_eq!(ok(r#"{{ "a\tb\n\"c\"\u00e9" }}"#, &[]), "a\tb\n\"c\"é");
    assert_eq!(ok("{{ `raw \\n` }}", &[]), "raw \\n");
    assert_eq!(
        ok("{{ 42 }} {{ -7 }} {{ 0x1F }} {{ 1_000 }} {{ 010 }}", &[]),
        "42 -7 31 1000 8"
    );
    assert_eq!(
        ok("{{ 1.5 }} {{ 1e3 }} {{ 1.0 }} {{ 1e6 }}", &[]),
        "1.5 1000 1 1e+06"
    );
    assert_eq!(ok("{{ true }} {{ false }} {{ 'a' }}", &[]), "true false 97");
}

#[test]
fn pipelines_and_parentheses() {
    assert_eq!(ok("{{ .x | upper | quote }}", &[("x", "ab")]), "\"AB\"");
    assert_eq!(ok(r#"{{ printf "%s-%s" "a" .x }}"#, &[("x", "b")]), "a-b");
    assert_eq!(ok(r#"{{ .x | printf "%s-%s" "a" }}"#, &[("x", "b")]), "a-b");
    assert_eq!(
        ok(r#"{{ (fromJson .j).port }}"#, &[("j", r#"{"port": 8080}"#)]),
        "8080"
    );
    assert_eq!(
        ok(
            r#"{{ (fromJson .j).a.b }}"#,
            &[("j", r#"{"a": {"b": "deep"}}"#)]
        ),
        "deep"
    );
    assert_eq!(
        ok(
            r#"{{ upper (printf "%s%s" .x (lower "Y")) }}"#,
            &[("x", "a")]
        ),
        "AY"
    );
}

#[test]
fn variables() {
    assert_eq!(ok("{{ $x := .a }}{{ $x }}", &[("a", "1")]), "1");
    assert_eq!(ok("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", &[]), "2");
    assert_eq!(
        ok("{{ with .a }}{{ $.b }}{{ end }}", &[("a", "1"), ("b", "2")]),
        "2"
    );
    assert_eq!(ok("{{ $ := 3 }}", &[]), "");
    // An assignment inside a range is visible after it; a declaration is not.
    assert_eq!(
        ok(
            "{{ $n := 0 }}{{ range list 1 2 3 }}{{ $n = add $n . }}{{ end }}{{ $n }}",
            &[]
        ),
        "6"
    );
    let e = fails("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}", &[]);
    assert!(e.message().contains("undefined variable \"$y\""), "{e}");
}

#[test]
fn if_else_chains() {
    let t = r#"{{ if eq .x "a" }}A{{ else if eq .x "b" }}B{{ else }}C{{ end }}"#;
    assert_eq!(ok(t, &[("x", "a")]), "A");
    assert_eq!(ok(t, &[("x", "b")]), "B");
    assert_eq!(ok(t, &[("x", "z")]), "C");
    assert_eq!(
        ok(r#"{{ if .x }}yes{{ else }}no{{ end }}"#, &[("x", "")]),
        "no"
    );
    assert_eq!(
        ok(
            r#"{{ if and .x (not .y) }}yes{{ end }}"#,
            &[("x", "1"), ("y", "")]
        ),
        "yes"
    );
    assert_eq!(
        ok(r#"{{ if or .y .x }}yes{{ end }}"#, &[("x", "1"), ("y", "")]),
        "yes"
    );
}

#[test]
fn with_and_else_with() {
    assert_eq!(
        ok(
            "{{ with .a }}[{{ . }}]{{ else }}none{{ end }}",
            &[("a", "v")]
        ),
        "[v]"
    );
    assert_eq!(
        ok(
            "{{ with .a }}[{{ . }}]{{ else }}none{{ end }}",
            &[("a", "")]
        ),
        "none"
    );
    assert_eq!(
        ok(
            "{{ with .a }}A{{ else with .b }}B{{ . }}{{ end }}",
            &[("a", ""), ("b", "x")]
        ),
        "Bx"
    );
    assert_eq!(
        ok("{{ with $x := .a }}{{ $x }}{{ end }}", &[("a", "v")]),
        "v"
    );
}

#[test]
fn range_forms() {
    assert_eq!(ok("{{ range list 1 2 3 }}{{ . }},{{ end }}", &[]), "1,2,3,");
    assert_eq!(
        ok(
            "{{ range $i, $v := list \"a\" \"b\" }}{{ $i }}={{ $v }} {{ end }}",
            &[]
        ),
        "0=a 1=b "
    );
    assert_eq!(
        ok("{{ range $v := list \"a\" \"b\" }}{{ $v }}{{ end }}", &[]),
        "ab"
    );
    assert_eq!(
        ok(
            "{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}",
            &[("b", "2"), ("a", "1")]
        ),
        "a=1;b=2;"
    );
    assert_eq!(
        ok("{{ range list }}x{{ else }}empty{{ end }}", &[]),
        "empty"
    );
    assert_eq!(ok("{{ range 3 }}{{ . }}{{ end }}", &[]), "012");
    assert_eq!(
        ok(
            "{{ range list 1 2 3 4 }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}",
            &[]
        ),
        "13"
    );
    assert_eq!(
        ok(
            r#"{{ range (fromJson .j).users }}{{ .name }} {{ end }}"#,
            &[("j", r#"{"users":[{"name":"a"},{"name":"b"}]}"#)]
        ),
        "a b "
    );
}

#[test]
fn define_and_template() {
    assert_eq!(
        ok(
            r#"{{ define "t" }}<{{ . }}>{{ end }}{{ template "t" .x }}"#,
            &[("x", "v")]
        ),
        "<v>"
    );
    assert_eq!(
        ok(r#"{{ block "b" .x }}[{{ . }}]{{ end }}"#, &[("x", "v")]),
        "[v]"
    );
}

#[test]
fn printing_matches_go() {
    assert_eq!(
        ok(r#"{{ fromJson "{\"b\":2,\"a\":[1,\"x\",null]}" }}"#, &[]),
        "map[a:[1 x <nil>] b:2]"
    );
    assert_eq!(ok(r#"{{ fromJson "not json" }}"#, &[]), "<no value>");
    assert_eq!(
        ok(r#"{{ (fromJson "{\"a\":null}").a }}"#, &[]),
        "<no value>"
    );
    assert_eq!(
        ok(
            r#"{{ fromJson "1000000" }} {{ fromJson "1234567" }} {{ fromJson "0.00001" }} {{ fromJson "0.0001" }} {{ fromJson "123456.5" }}"#,
            &[]
        ),
        "1e+06 1.234567e+06 1e-05 0.0001 123456.5"
    );
    assert_eq!(ok(r#"{{ print 1 2 "a" "b" 3 }}"#, &[]), "1 2ab3");
    assert_eq!(ok(r#"{{ println "a" 1 }}"#, &[]), "a 1\n");
    assert_eq!(ok(r#"{{ print nil }}"#, &[]), "<nil>");
    assert_eq!(ok(r#"{{ list 1 "a" true }}"#, &[]), "[1 a true]");
}

#[test]
fn printf_verbs() {
    assert_eq!(
        ok(
            r#"{{ printf "%s|%d|%v|%q|%t|%%" "s" 42 1.5 "q\"" true }}"#,
            &[]
        ),
        r#"s|42|1.5|"q\""|true|%"#
    );
    assert_eq!(
        ok(
            r#"{{ printf "%5s|%-5s|%05d|%.2f|%x|%X" "a" "b" 42 3.14159 "hi" 255 }}"#,
            &[]
        ),
        "    a|b    |00042|3.14|6869|FF"
    );
    assert_eq!(ok(r#"{{ printf "%d" "x" }}"#, &[]), "%!d(string=x)");
    assert_eq!(ok(r#"{{ printf "%s %s" "a" }}"#, &[]), "a %!s(MISSING)");
    assert_eq!(
        ok(r#"{{ printf "%s" "a" "b" }}"#, &[]),
        "a%!(EXTRA string=b)"
    );
    assert_eq!(
        ok(r#"{{ printf "%d" (fromJson "8080") }}"#, &[]),
        "%!d(float64=8080)"
    );
    assert_eq!(ok(r#"{{ printf "%v" (fromJson "8080") }}"#, &[]), "8080");
    assert_eq!(ok(r#"{{ printf "%e" 1234.5678 }}"#, &[]), "1.234568e+03");
}

#[test]
fn comparisons() {
    assert_eq!(
        ok(
            r#"{{ eq "a" "b" "a" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt "b" "a" }} {{ ge 1 2 }}"#,
            &[]
        ),
        "true true true true true false"
    );
    assert_eq!(ok(r#"{{ eq (len .x) 3 }}"#, &[("x", "abc")]), "true");
    let e = fails(r#"{{ eq (fromJson "1") 1 }}"#, &[]);
    assert!(
        e.message().contains("incompatible types for comparison"),
        "{e}"
    );
}

#[test]
fn len_and_index() {
    assert_eq!(
        ok(
            r#"{{ len .x }} {{ len (list 1 2) }} {{ len (dict "a" 1) }}"#,
            &[("x", "héllo")]
        ),
        "6 2 1"
    );
    assert_eq!(
        ok(
            r#"{{ index (list "a" "b") 1 }} {{ index (fromJson "{\"a\":{\"b\":\"c\"}}") "a" "b" }}"#,
            &[]
        ),
        "b c"
    );
    // A missing key in ESO's string map is "", not an error.
    assert_eq!(ok(r#"[{{ index . "missing" }}]"#, &[("x", "1")]), "[]");
    assert_eq!(ok(r#"{{ index .x 0 }}"#, &[("x", "A")]), "65");
}

#[test]
fn binary_data_passes_through() {
    let mut data = BTreeMap::new();
    data.insert("bin".to_owned(), vec![0xff, 0x00, 0xfe]);
    assert_eq!(
        render("t", "{{ .bin }}", &data).unwrap(),
        vec![0xff, 0x00, 0xfe]
    );
    assert_eq!(
        render("t", "{{ .bin | b64enc }}", &data).unwrap(),
        b"/wD+".to_vec()
    );
    assert_eq!(
        render("t", "{{ .bin | b64enc | b64dec }}", &data).unwrap(),
        vec![0xff, 0x00, 0xfe]
    );
    assert_eq!(render("t", "{{ len .bin }}", &data).unwrap(), b"3".to_vec());
}

#[test]
fn render_value_takes_any_dot() {
    let v = Value::Map(
        [(
            "Values".to_owned(),
            Value::List(vec![Value::int(1), Value::from("x")]),
        )]
        .into(),
    );
    assert_eq!(
        render_value("t", "{{ range .Values }}{{ . }}{{ end }}", &v).unwrap(),
        b"1x".to_vec()
    );
    assert_eq!(
        render_value("t", "{{ . }}", &Value::from("s")).unwrap(),
        b"s".to_vec()
    );
}

#[test]
fn set_mutates_the_variable_like_a_go_map() {
    assert_eq!(
        ok(r#"{{ $d := dict }}{{ $_ := set $d "a" 1 }}{{ $d.a }}"#, &[]),
        "1"
    );
    assert_eq!(
        ok(
            r#"{{ $creds := list }}{{ range $u, $p := . }}{{ $creds = append $creds (printf "%s:%s" $u $p) }}{{ end }}{{ $creds | join "\n" | quote }}"#,
            &[("a", "1"), ("b", "2")]
        ),
        r#""a:1\nb:2""#
    );
}
