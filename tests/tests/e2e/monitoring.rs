//! The chart's monitoring: the PrometheusRule renders, `promtool` accepts its rules and its
//! alerts fire on the series they are meant for; the Grafana dashboard ships in a ConfigMap
//! with the sidecar's label, unchanged from `files/grafana-dashboard.json`. (That every query
//! names a series the controller exports is the unit test
//! `telemetry::monitoring_tests` of the controller crate.)

use std::path::Path;

use secret_bridge_tests::deploy::helm::{CHART, helm_ok, render};
use secret_bridge_tests::stack::workspace_root;
use secret_bridge_tests::{Stack, unique};
use serde_json::Value;

/// The job the rules select by default: the chart's metrics Service (release `release`).
const JOB: &str = "release-secret-bridge-metrics";

/// What promtool's unit tests check: each alert fires on the series it watches.
const RULE_TESTS: &str = r#"
rule_files: [rules.json]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'externalsecret_status_condition{job="JOB",name="app",namespace="team",condition="Ready",status="False"}'
        values: '1x20'
      - series: 'externalsecret_status_condition{job="JOB",name="ok",namespace="team",condition="Ready",status="False"}'
        values: '0x20'
      - series: 'secret_bridge_sqs_messages_total{job="JOB",result="dead_lettered"}'
        values: '0 0 0 1 1 1'
      - series: 'externalsecret_provider_api_calls_count{job="JOB",provider="AWS/SQS",call="ReceiveMessage",status="success"}'
        values: '0+3x5 15x20'
    alert_rule_test:
      - eval_time: 5m
        alertname: SecretBridgeExternalSecretNotReady
        exp_alerts: []
      - eval_time: 15m
        alertname: SecretBridgeExternalSecretNotReady
        exp_alerts:
          - exp_labels: {severity: warning, job: JOB, name: app, namespace: team, condition: Ready, status: "False"}
            exp_annotations:
              summary: ExternalSecret team/app is not Ready
              description: Its Secret is not being refreshed. kubectl describe externalsecret app -n team shows the cause in the Ready condition and the Events.
      - eval_time: 4m
        alertname: SecretBridgeEventsDeadLettered
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: Secrets Manager events went to the dead-letter queue
              description: 1 messages reached the queue's maxReceiveCount in the last 15 minutes. The ExternalSecrets they refresh keep retrying; redrive the DLQ once the cause is fixed (README, Troubleshooting).
      - eval_time: 8m
        alertname: SecretBridgeNoSqsReceive
        exp_alerts: []
      - eval_time: 18m
        alertname: SecretBridgeNoSqsReceive
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: The controller has not received from its SQS queue
              description: "No successful ReceiveMessage for 10m although queueUrl is set: AWS events are not reaching the cluster. Check the controller's log for SQS errors (permissions, the queue URL, KMS)."
      - eval_time: 10m
        alertname: SecretBridgeAbsent
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: secret-bridge is not running or not scraped
              description: No scrape of the controller succeeded. Secrets are neither refreshed by events nor resynced.
"#;

#[tokio::test]
async fn chart_monitoring_renders_and_promtool_accepts_and_fires_its_alerts() {
    let stack = Stack::connect().await;
    let values = [
        "--set",
        "grafanaDashboard.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "queueUrl=https://sqs.us-east-1.amazonaws.com/123456789012/events",
    ];
    let mut lint = vec!["lint", "--strict", CHART];
    lint.extend_from_slice(&values);
    let linted = helm_ok(&stack, &lint).await;
    assert!(
        !linted.stdout.contains("[WARNING]") && !linted.stdout.contains("[ERROR]"),
        "{}",
        linted.stdout
    );
    let documents = render(&stack, &values).await;
    let of_kind = |kind: &str| {
        documents
            .iter()
            .find(|doc| doc["kind"] == kind)
            .unwrap_or_else(|| panic!("the chart renders no {kind}"))
            .clone()
    };

    let rule = of_kind("PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    let dir = workspace_root().join("target").join(unique("promtool"));
    std::fs::create_dir_all(&dir).expect("create a scratch dir");
    std::fs::write(dir.join("rules.json"), rule["spec"].to_string()).expect("write rules");
    std::fs::write(dir.join("tests.yaml"), RULE_TESTS.replace("JOB", JOB)).expect("write tests");
    let checked = promtool(&dir, &["check", "rules", "rules.json"]).await;
    let tested = promtool(&dir, &["test", "rules", "tests.yaml"]).await;
    std::fs::remove_dir_all(&dir).expect("remove the scratch dir");
    checked.expect("promtool check rules");
    tested.expect("promtool test rules");

    // Without a queue, no alert expects SQS receives.
    let without_queue = render(
        &stack,
        &["--set", "prometheusRule.enabled=true", "--set", "queueUrl="],
    )
    .await;
    let alerts: Vec<&str> = without_queue
        .iter()
        .filter(|doc| doc["kind"] == "PrometheusRule")
        .flat_map(|doc| doc["spec"]["groups"][0]["rules"].as_array().unwrap())
        .map(|rule| rule["alert"].as_str().unwrap())
        .collect();
    assert!(alerts.contains(&"SecretBridgeAbsent"), "{alerts:?}");
    assert!(!alerts.contains(&"SecretBridgeNoSqsReceive"), "{alerts:?}");

    let dashboard = of_kind("ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(
        dashboard["data"]["secret-bridge.json"]
            .as_str()
            .expect("the dashboard's JSON"),
    )
    .expect("the dashboard is JSON");
    let file = std::fs::read_to_string(
        Path::new(&workspace_root())
            .join(CHART)
            .join("files/grafana-dashboard.json"),
    )
    .expect("read the dashboard file");
    assert_eq!(json, serde_json::from_str::<Value>(&file).unwrap());
    assert_eq!(json["uid"], "secret-bridge");

    // Both are off by default (their CRD and a Grafana sidecar may not exist).
    let defaults = render(&stack, &[]).await;
    assert!(
        defaults
            .iter()
            .all(|doc| doc["kind"] != "PrometheusRule" && doc["kind"] != "ConfigMap")
    );
}

/// Runs promtool in `dir`; `Err` with its output unless it succeeded.
async fn promtool(dir: &Path, args: &[&str]) -> Result<(), String> {
    let output = tokio::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .map_err(|e| {
            format!(
                "run promtool ({e}): install Debian's `prometheus` package: `scripts/stack install` (or `stack up` on a stopped stack) does"
            )
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
