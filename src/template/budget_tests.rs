//! The render budget: hostile templates fail fast with a budget error naming the limit,
//! ordinary ones are untouched.

use super::render_tests::{data, ok};
use super::*;

const MARKER: &str = "MARKER-7f3a";

/// Renders `text` and returns the budget limit it hit; panics if it rendered or failed otherwise.
fn exceeds(text: &str) -> (Limit, TemplateError) {
    let pairs = data(&[("password", MARKER), ("short", "abc")]);
    match render("data.password", text, &pairs) {
        Ok(out) => panic!(
            "{text:?} rendered {} bytes, expected a budget error",
            out.len()
        ),
        Err(e) => match e.phase() {
            Phase::Budget(limit) => {
                assert!(!e.to_string().contains(MARKER), "{text:?}: {e}");
                (limit, e)
            }
            _ => panic!("{text:?} failed without a budget error: {e}"),
        },
    }
}

fn limit(text: &str) -> Limit {
    exceeds(text).0
}

#[test]
fn the_error_names_the_template_the_limit_and_the_position() {
    let (limit, e) = exceeds("line one\n  {{ $s := repeat 200000 \"a\" }}{{ splitList \"\" $s }}");
    assert_eq!(limit, Limit::Elements);
    assert_eq!((e.line(), e.column()), (2, 35));
    assert_eq!(
        e.to_string(),
        "unable to execute template data.password:2:35: at <splitList>: \
         render budget exceeded: list of more than 100000 elements"
    );
}

#[test]
fn splitting_a_long_string_is_refused_before_the_parts_exist() {
    // Measured before the budget: 2 GB resident, 17 s (splitList "" over 16 MB); now the
    // copy of the 16 MB string into splitList's argument is already too much.
    let huge = r#"{{ $s := repeat 16000000 "a" }}{{ splitList "" $s | len }}"#;
    assert_eq!(limit(huge), Limit::Bytes);
    let long = r#"{{ $s := repeat 1000000 "a" }}{{ splitList "" $s | len }}"#;
    assert_eq!(limit(long), Limit::Elements);
    assert_eq!(
        limit(r#"{{ $s := repeat 1000000 "a," }}{{ split "," $s | len }}"#),
        Limit::Elements
    );
    assert_eq!(
        limit(r#"{{ $s := repeat 1000000 "a," }}{{ splitn "," 999999 $s | len }}"#),
        Limit::Elements
    );
    assert_eq!(
        limit(r#"{{ $s := repeat 1000000 "a," }}{{ regexSplit "," $s -1 | len }}"#),
        Limit::Elements
    );
}

#[test]
fn huge_strings_are_refused_before_they_are_built() {
    for text in [
        r#"{{ repeat 1000000000 "x" }}"#,
        r#"{{ printf "%0999999999d" 1 }}"#,
        r#"{{ printf "%999999999s" "x" }}"#,
        r#"{{ printf "%.999999999f" 1.5 }}"#,
        r#"{{ printf "%*d" 999999999 1 }}"#,
        r#"{{ indent 999999999 "a" }}"#,
        r#"{{ nindent 1000 (repeat 100000 "\n") }}"#,
        r#"{{ replace "" (repeat 1000 "x") (repeat 100000 "a") }}"#,
        r#"{{ regexReplaceAllLiteral "" (repeat 100000 "a") (repeat 1000 "x") }}"#,
        r#"{{ join (repeat 100000 "x") (splitList "" (repeat 1000 "a")) }}"#,
        r#"{{ $s := repeat 3000000 "<" }}{{ toJson (list $s $s) }}"#,
        r#"{{ $s := repeat 10000000 "a" }}{{ b64enc $s | b64enc }}"#,
    ] {
        assert_eq!(limit(text), Limit::Bytes, "{text}");
    }
}

#[test]
fn doubling_in_a_range_is_stopped() {
    for text in [
        // Measured before the budget: 3.2 GB, 57 s.
        r#"{{ $s := "ab" }}{{ range 40 }}{{ $s = printf "%s%s" $s $s }}{{ end }}"#,
        r#"{{ $s := "ab" }}{{ range 40 }}{{ $s = cat $s $s }}{{ end }}"#,
        // Measured before the budget: 730 MB, 15 s.
        r#"{{ $l := list "xxxxxxxxxxxxxxxx" }}{{ range 40 }}{{ $l = concat $l $l }}{{ end }}"#,
        r#"{{ $l := list 1 }}{{ range 40 }}{{ $l = list $l $l }}{{ end }}"#,
        r#"{{ $d := dict }}{{ range 40 }}{{ $d = dict "a" $d "b" $d }}{{ end }}"#,
        r#"{{ $s := "[1]" }}{{ range 40 }}{{ $s = printf "[%s,%s]" $s $s }}{{ end }}{{ fromJson $s }}"#,
    ] {
        let hit = limit(text);
        assert!(
            matches!(hit, Limit::Bytes | Limit::Elements),
            "{text}: {hit:?}"
        );
    }
}

#[test]
fn growing_lists_in_a_range_are_bounded() {
    // A copy of the list per iteration (Go shares it) is charged: quadratic bytes.
    let copied = r#"{{ $l := list }}{{ range 1000000 }}{{ $x := append $l "xxxxxxxx" }}{{ $l = $x }}{{ end }}"#;
    assert_eq!(limit(copied), Limit::Bytes);
    // `$l = append $l x` moves the list: linear, and stopped by the element limit.
    let moved = r#"{{ $l := list }}{{ range 1000000 }}{{ $l = append $l 1 }}{{ end }}"#;
    assert_eq!(limit(moved), Limit::Elements);
    let prepended = r#"{{ $l := list }}{{ range 1000000 }}{{ $l = prepend $l 1 }}{{ end }}"#;
    assert_eq!(limit(prepended), Limit::Bytes);
}

#[test]
fn quadratic_list_functions_count_their_comparisons() {
    let keys: Vec<(String, String)> = (0..3000)
        .map(|i| (format!("k{i}"), String::new()))
        .collect();
    let pairs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let data = Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect(),
    );
    let tight = Limits {
        steps: 1000,
        ..Limits::default()
    };
    // 3000 distinct keys: 4.5 million comparisons.
    let e = render_within("t", "{{ keys . | uniq | len }}", &data, tight).unwrap_err();
    assert_eq!(e.phase(), Phase::Budget(Limit::Steps));
    let e = render_within("t", "{{ without (keys .) 1 2 3 4 5 | len }}", &data, tight);
    assert_eq!(e.unwrap(), b"3000");
}

#[test]
fn loops_are_stopped_by_steps() {
    assert_eq!(limit("{{ range 100000000 }}{{ end }}"), Limit::Steps);
    assert_eq!(
        limit("{{ range 1000 }}{{ range 1000 }}{{ range 1000 }}{{ end }}{{ end }}{{ end }}"),
        Limit::Steps
    );
}

#[test]
fn output_beyond_a_secret_is_refused() {
    assert_eq!(
        limit(r#"{{ range 2000 }}{{ repeat 1000 "x" }}{{ end }}"#),
        Limit::Output
    );
    let text = format!("{{{{ range 2000 }}}}{}{{{{ end }}}}", "x".repeat(1000));
    assert_eq!(limit(&text), Limit::Output);
}

#[test]
fn recursion_and_nesting_are_bounded() {
    let recursive = r#"{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}"#;
    assert_eq!(limit(recursive), Limit::Depth);
    // These would overflow the parser's stack (and abort the controller) without the limit.
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(100_000), ")".repeat(100_000));
    assert_eq!(limit(&parens), Limit::Depth);
    let ifs = format!(
        "{}x{}",
        "{{ if 1 }}".repeat(100_000),
        "{{ end }}".repeat(100_000)
    );
    assert_eq!(limit(&ifs), Limit::Depth);
    let chain = format!(
        "{{{{ if 0 }}}}{}{{{{ end }}}}",
        "{{ else if 0 }}".repeat(100_000)
    );
    assert_eq!(limit(&chain), Limit::Depth);
    let e = validate("t", &parens).unwrap_err();
    assert_eq!(e.phase(), Phase::Budget(Limit::Depth));
}

#[test]
fn the_deepest_template_allowed_fits_a_small_stack() {
    let depth = Limits::default().depth;
    let text = format!(
        "{}x{}",
        "{{ if 1 }}".repeat(depth - 1),
        "{{ end }}".repeat(depth - 1)
    );
    let parens = format!(
        "{{{{ {}1{} }}}}",
        "(".repeat(depth - 1),
        ")".repeat(depth - 1)
    );
    // Tokio's worker threads have 2 MiB stacks.
    let rendered = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || (ok(&text, &[]), ok(&parens, &[])))
        .expect("spawn")
        .join()
        .expect("no stack overflow");
    assert_eq!(rendered, ("x".to_owned(), "1".to_owned()));
}

#[test]
fn decoding_is_bounded() {
    // `[[],[],...]`: two bytes of text per list.
    assert_eq!(
        limit(r#"{{ $s := printf "[%s[]]" (repeat 4000000 "[],") }}{{ fromJson $s | len }}"#),
        Limit::Bytes
    );
    assert_eq!(
        limit(r#"{{ $s := printf "[%s0]" (repeat 120000 "0,") }}{{ mustFromJson $s | len }}"#),
        Limit::Elements
    );
    assert_eq!(
        limit(r#"{{ $s := repeat 110000 "0," }}{{ fromYaml (printf "a: [%s0]" $s) | len }}"#),
        Limit::Elements
    );
}

#[test]
fn ordinary_templates_fit_the_budget() {
    let keys: Vec<(String, String)> = (0..500)
        .map(|i| (format!("key{i:03}"), "v".repeat(50)))
        .collect();
    let pairs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let text =
        r#"{{ $l := list }}{{ range $k, $v := . }}{{ $l = append $l $k }}{{ end }}{{ len $l }}"#;
    assert_eq!(ok(text, &pairs), "500");
    // `set` stores a copy back into `$d` per key (Go shares the map): quadratic bytes, so a
    // dict built key by key in a range fits for a few hundred keys.
    let text = r#"{{ $d := dict }}{{ range $k, $v := . }}{{ if lt (len $d) 300 }}{{ $_ := set $d $k (upper $v) }}{{ end }}{{ end }}{{ len $d }}"#;
    assert_eq!(ok(text, &pairs), "300");
    let text = r#"{{ range $k, $v := . }}{{ $k }}={{ $v | b64enc }}{{ index $ "key000" | len }}
{{ end }}{{ toJson . | len }}"#;
    let out = ok(text, &pairs);
    assert!(
        out.contains("key499=dnZ2") && out.ends_with("\n31001"),
        "{out}"
    );
    assert_eq!(ok(r#"{{ repeat 900000 "x" | len }}"#, &[]), "900000");
    assert_eq!(ok(r#"{{ range 10000 }}{{ end }}ok"#, &[]), "ok");
}

#[test]
fn limits_can_be_set_per_render() {
    let tight = Limits {
        output: 4,
        ..Limits::default()
    };
    let e = render_within("t", "12345", &Value::Null, tight).unwrap_err();
    assert_eq!(e.phase(), Phase::Budget(Limit::Output));
    assert_eq!(
        render_within("t", "1234", &Value::Null, tight).unwrap(),
        b"1234"
    );
}
