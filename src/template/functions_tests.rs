//! The function map: each function against what ESO (Go + sprig) renders.

use super::render_tests::{fails, ok};
use super::*;

#[test]
fn supported_functions_is_the_function_table() {
    let table: std::collections::BTreeSet<_> = functions::names().collect();
    let listed: std::collections::BTreeSet<_> = SUPPORTED_FUNCTIONS.iter().copied().collect();
    assert_eq!(table, listed);
    assert_eq!(listed.len(), SUPPORTED_FUNCTIONS.len(), "no duplicates");
}

#[test]
fn base64() {
    assert_eq!(
        ok("{{ .x | b64enc }}", &[("x", "user:pass")]),
        "dXNlcjpwYXNz"
    );
    assert_eq!(
        ok("{{ .x | b64dec }}", &[("x", "dXNlcjpwYXNz")]),
        "user:pass"
    );
    assert_eq!(
        ok("{{ .x | b64dec }}", &[("x", "dXNl\ncjpw\r\nYXNz")]),
        "user:pass"
    );
    // sprig renders Go's error text instead of failing.
    assert_eq!(
        ok("{{ .x | b64dec }}", &[("x", "iam_no_base64")]),
        "illegal base64 data at input byte 3"
    );
    assert_eq!(
        ok("{{ .x | b64dec }}", &[("x", "abc")]),
        "illegal base64 data at input byte 0"
    );
    assert_eq!(
        ok(
            "{{ .x | sha256sum | hexdec | b64enc }}",
            &[("x", "example")]
        ),
        "UNhY4JhezH9gQYqvDMWrWH9CwlcKiECVqejMrND2VFw="
    );
}

#[test]
fn json() {
    assert_eq!(
        ok(r#"{{ "a<b>&\"c\"" | toJson }}"#, &[]),
        r#""a\u003cb\u003e\u0026\"c\"""#
    );
    assert_eq!(ok(r#"{{ "a<b>" | toRawJson }}"#, &[]), r#""a<b>""#);
    assert_eq!(
        ok(
            r#"{{ .j | fromJson | toJson }}"#,
            &[("j", r#"{"b":1.50,"a":[true,null,1e21,10000000]}"#)]
        ),
        r#"{"a":[true,null,1e+21,10000000],"b":1.5}"#
    );
    assert_eq!(
        ok(
            r#"{{ .j | fromJson | toPrettyJson }}"#,
            &[("j", r#"{"a":[1],"b":{}}"#)]
        ),
        "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}"
    );
    assert_eq!(ok(r#"{{ dict "k" 1 | toJson }}"#, &[]), r#"{"k":1}"#);
    let e = fails(r#"{{ mustFromJson "{" }}"#, &[]);
    assert!(
        e.message()
            .starts_with("error calling mustFromJson: invalid JSON"),
        "{e}"
    );
}

#[test]
fn yaml() {
    assert_eq!(
        ok(
            r#"{{ .j | fromJson | toYaml }}"#,
            &[("j", r#"{"b":[1,2],"a":{"c":"d"},"n":8080}"#)]
        ),
        "a:\n  c: d\nb:\n- 1\n- 2\nn: 8080"
    );
    assert_eq!(
        ok(r#"{{ (.y | fromYaml).a.b }}"#, &[("y", "a:\n  b: deep\n")]),
        "deep"
    );
    assert_eq!(
        ok(r#"{{ (.y | fromYaml).port }}"#, &[("y", "port: 5432")]),
        "5432"
    );
    assert_eq!(
        ok(
            r#"{{ hasKey (.y | fromYaml) "Error" }}"#,
            &[("y", "- a\n- b")]
        ),
        "true"
    );
}

#[test]
fn strings() {
    let pairs = [("x", "  Hello World  ")];
    assert_eq!(ok("[{{ .x | trim }}]", &pairs), "[Hello World]");
    assert_eq!(
        ok("{{ .x | trim | upper }} {{ .x | trim | lower }}", &pairs),
        "HELLO WORLD hello world"
    );
    assert_eq!(
        ok(r#"{{ title "hello wide-world o'neil" }}"#, &[]),
        "Hello Wide-World O'Neil"
    );
    assert_eq!(
        ok(
            r#"{{ trimAll "$" "$$5.00$" }} {{ trimPrefix "pre-" "pre-fix" }} {{ trimSuffix ".txt" "a.txt" }}"#,
            &[]
        ),
        "5.00 fix a"
    );
    assert_eq!(
        ok(
            r#"{{ quote "a" 1 }} {{ squote "b" }} {{ .x | quote }}"#,
            &[("x", "q\"\n")]
        ),
        r#""a" "1" 'b' "q\"\n""#
    );
    assert_eq!(ok(r#"{{ replace "a" "b" "banana" }}"#, &[]), "bbnbnb");
    assert_eq!(
        ok(r#"{{ indent 2 "a\nb" }}|{{ nindent 2 "a" }}"#, &[]),
        "  a\n  b|\n  a"
    );
    assert_eq!(
        ok(
            r#"{{ contains "ell" "hello" }} {{ hasPrefix "he" "hello" }} {{ hasSuffix "lo" "hello" }}"#,
            &[]
        ),
        "true true true"
    );
    assert_eq!(
        ok(
            r#"{{ repeat 3 "ab" }} {{ toString 12 }} {{ toString (fromJson "1.5") }}"#,
            &[]
        ),
        "ababab 12 1.5"
    );
    assert_eq!(
        ok(r#"{{ .x | sha256sum }}"#, &[("x", "abc")]),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        ok(
            r#"{{ trunc 3 "abcdef" }} {{ substr 1 3 "abcdef" }} {{ nospace "a b c" }} {{ cat "a" 1 nil "b" }}"#,
            &[]
        ),
        "abc bc abc a 1 b"
    );
    assert_eq!(ok(r#"{{ "a b" | urlquery }}"#, &[]), "a+b");
}

#[test]
fn split_and_join() {
    assert_eq!(
        ok(
            r#"{{ (split ":" .x)._0 }}/{{ (split ":" .x)._1 }}"#,
            &[("x", "user:pass")]
        ),
        "user/pass"
    );
    assert_eq!(
        ok(r#"{{ splitList "," "a,b,c" | join "-" }}"#, &[]),
        "a-b-c"
    );
    assert_eq!(ok(r#"{{ list 1 "a" nil 2.5 | join "," }}"#, &[]), "1,a,2.5");
    assert_eq!(
        ok(
            r#"{{ range splitList "," .x }}[{{ . }}]{{ end }}"#,
            &[("x", "a,,b")]
        ),
        "[a][][b]"
    );
}

#[test]
fn regex() {
    assert_eq!(
        ok(
            r#"{{ regexMatch "^[a-z]+$" "abc" }} {{ regexMatch "(" "abc" }}"#,
            &[]
        ),
        "true false"
    );
    assert_eq!(
        ok(r#"{{ regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W" }}"#, &[]),
        "-W-xxW-"
    );
    assert_eq!(
        ok(r#"{{ regexReplaceAllLiteral "a(x*)b" "-ab-" "$1" }}"#, &[]),
        "-$1-"
    );
    assert_eq!(
        ok(
            r#"{{ regexFind "[0-9]+" "ab12cd34" }} {{ regexFindAll "[0-9]+" "ab12cd34" -1 }}"#,
            &[]
        ),
        "12 [12 34]"
    );
    let e = fails(r#"{{ regexReplaceAll "(" "x" "y" }}"#, &[]);
    assert!(
        e.message()
            .contains("error calling regexReplaceAll: invalid regular expression"),
        "{e}"
    );
}

#[test]
fn defaults() {
    assert_eq!(
        ok(r#"{{ .x | default "fallback" }}"#, &[("x", "")]),
        "fallback"
    );
    assert_eq!(
        ok(r#"{{ .x | default "fallback" }}"#, &[("x", "set")]),
        "set"
    );
    assert_eq!(
        ok(r#"{{ index . "nope" | default "d" }}"#, &[("x", "1")]),
        "d"
    );
    assert_eq!(
        ok(
            r#"{{ empty "" }} {{ empty 0 }} {{ empty (list) }} {{ empty "a" }}"#,
            &[]
        ),
        "true true true false"
    );
    assert_eq!(ok(r#"{{ coalesce "" .x "z" }}"#, &[("x", "y")]), "y");
    assert_eq!(
        ok(
            r#"{{ ternary "yes" "no" true }} {{ ternary "yes" "no" (eq 1 2) }}"#,
            &[]
        ),
        "yes no"
    );
}

#[test]
fn dicts_and_lists() {
    assert_eq!(
        ok(
            r#"{{ $d := dict "a" 1 "b" 2 }}{{ get $d "a" }} {{ hasKey $d "b" }} {{ keys $d }} {{ values $d }}"#,
            &[]
        ),
        "1 true [a b] [1 2]"
    );
    assert_eq!(
        ok(
            r#"{{ $d := dict "a" 1 }}{{ $_ := unset $d "a" }}{{ len $d }}"#,
            &[]
        ),
        "0"
    );
    assert_eq!(
        ok(
            r#"{{ pick (dict "a" 1 "b" 2) "a" }} {{ omit (dict "a" 1 "b" 2) "a" }}"#,
            &[]
        ),
        "map[a:1] map[b:2]"
    );
    assert_eq!(
        ok(
            r#"{{ dig "a" "b" "def" (fromJson "{\"a\":{\"b\":\"v\"}}") }} {{ dig "a" "x" "def" (fromJson "{\"a\":{}}") }}"#,
            &[]
        ),
        "v def"
    );
    assert_eq!(
        ok(
            r#"{{ merge (dict "a" 1) (dict "a" 2 "b" 3) }} {{ mergeOverwrite (dict "a" 1) (dict "a" 2) }}"#,
            &[]
        ),
        "map[a:1 b:3] map[a:2]"
    );
    assert_eq!(
        ok(
            r#"{{ first (list 1 2 3) }} {{ last (list 1 2 3) }} {{ rest (list 1 2 3) }} {{ initial (list 1 2 3) }}"#,
            &[]
        ),
        "1 3 [2 3] [1 2]"
    );
    assert_eq!(
        ok(
            r#"{{ append (list 1) 2 }} {{ prepend (list 1) 0 }} {{ concat (list 1) (list 2) }} {{ reverse (list 1 2) }}"#,
            &[]
        ),
        "[1 2] [0 1] [1 2] [2 1]"
    );
    assert_eq!(
        ok(
            r#"{{ uniq (list 1 1 2) }} {{ without (list 1 2 3) 2 }} {{ has 2 (list 1 2) }} {{ compact (list "" "a") }}"#,
            &[]
        ),
        "[1 2] [1 3] true [a]"
    );
    assert_eq!(
        ok(
            r#"{{ sortAlpha (list "b" "a" "c") }} {{ slice (list 1 2 3) 1 }} {{ pluck "a" (dict "a" 1) (dict "b" 2) }}"#,
            &[]
        ),
        "[a b c] [2 3] [1]"
    );
}

#[test]
fn numbers_and_types() {
    assert_eq!(
        ok(
            r#"{{ add 1 2 3 }} {{ add1 1 }} {{ sub 5 2 }} {{ mul 2 3 }} {{ div 7 2 }} {{ mod 7 2 }} {{ max 1 5 3 }} {{ min 4 2 }}"#,
            &[]
        ),
        "6 2 3 6 3 1 5 2"
    );
    assert_eq!(
        ok(
            r#"{{ atoi "42" }} {{ int "7" }} {{ float64 "1.5" }} {{ add .n 1 }}"#,
            &[("n", "41")]
        ),
        "42 7 1.5 42"
    );
    assert_eq!(
        ok(
            r#"{{ typeOf "a" }} {{ typeOf (fromJson "1") }} {{ kindOf (list) }} {{ kindIs "map" (dict) }}"#,
            &[]
        ),
        "string float64 slice true"
    );
    let e = fails(r#"{{ div 1 0 }}"#, &[]);
    assert!(e.message().contains("integer divide by zero"), "{e}");
}

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBfzCCASWgAwIBAgIUc2VjcmV0LWJyaWRnZQ==\n-----END CERTIFICATE-----\n";
const KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";

#[test]
fn filter_pem() {
    let bundle = format!("{KEY}{CERT}");
    let pairs = [("bundle", bundle.as_str())];
    assert_eq!(
        ok(r#"{{ .bundle | filterPEM "CERTIFICATE" }}"#, &pairs),
        CERT
    );
    assert_eq!(
        ok(r#"{{ .bundle | filterPEM "PRIVATE KEY" }}"#, &pairs),
        KEY
    );
    assert_eq!(
        ok(r#"{{ .bundle | filterPEM "certificate" }}"#, &pairs),
        CERT
    );
    let e = fails(r#"{{ .x | filterPEM "CERTIFICATE" }}"#, &[("x", "junk")]);
    assert!(e.message().contains("found junk"), "{e}");
}
