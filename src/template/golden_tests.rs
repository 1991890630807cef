//! Go compatibility pinned by golden files: every case of `golden/go.json` renders here as
//! Go's `text/template` rendered it (or fails where it failed).
//!
//! The cases and the program that renders them with Go are in `tests/go-golden/main.go`;
//! regenerate the file from the repository root with
//! `GO111MODULE=off go run tests/go-golden/main.go > src/template/golden/go.json`.
//! This test needs no Go: it reads the committed JSON.

use super::*;

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    template: String,
    data: serde_json::Value,
    output: Option<String>,
    #[serde(default)]
    error: bool,
}

#[test]
fn renders_as_go_text_template() {
    let cases: Vec<Case> =
        serde_json::from_str(include_str!("golden/go.json")).expect("golden/go.json is valid");
    assert!(cases.len() > 80, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let data = Value::from_json(case.data.clone());
        let got = render_value(&case.name, &case.template, &data)
            .map(|out| String::from_utf8_lossy(&out).into_owned());
        match (&got, &case.output, case.error) {
            (Ok(out), Some(want), false) if out == want => {}
            (Err(_), None, true) => {}
            _ => failures.push(format!(
                "{}: {:?}\n  go:   {}\n  ours: {}",
                case.name,
                case.template,
                case.output
                    .as_deref()
                    .map_or("error".into(), |o| format!("{o:?}")),
                match &got {
                    Ok(out) => format!("{out:?}"),
                    Err(e) => format!("error: {e}"),
                },
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases differ from Go:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
