//! The chart's Grafana dashboard and PrometheusRule only query series this controller
//! exports, and the dashboard is well formed: unique panel ids on Grafana's 24-column grid,
//! every target with a `refId` and an `expr`, every variable it uses defined.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use kube::runtime::reflector::{ObjectRef, store};
use regex::Regex;
use serde_json::Value;

use crate::api::ExternalSecret;
use crate::telemetry::aws_calls::PROVIDER_SQS;
use crate::telemetry::eso::{
    EXTERNAL_SECRET_CONTROLLER, Inventory, ObjectStatus, PROVIDER_AWS_SECRETS_MANAGER,
};
use crate::telemetry::metrics::{EventLabels, Metrics};

fn chart_file(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../infra/helm/secret-bridge")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
}

/// Every sample name a scrape can hold, with each family touched once.
fn exported() -> HashSet<String> {
    let metrics = Metrics::default();
    let live = store::Writer::<ExternalSecret>::default().as_reader();
    let object = ObjectRef::new("app").within("team");
    metrics.external_secret_reconciled(&object, &live, Some("aws"), Duration::from_millis(1));
    metrics.message("received");
    metrics
        .events
        .get_or_create(&EventLabels {
            event: "SecretLabelUpdated".into(),
        })
        .inc();
    metrics.event_lag_seconds.observe(0.1);
    metrics
        .aws_calls
        .record(PROVIDER_AWS_SECRETS_MANAGER, "GetSecretValue", true);
    metrics
        .aws_calls
        .record(PROVIDER_SQS, "ReceiveMessage", true);
    metrics
        .eso
        .set_max_concurrent_reconciles(EXTERNAL_SECRET_CONTROLLER, 1);
    let _worker = metrics.eso.worker_started(EXTERNAL_SECRET_CONTROLLER);
    let ready = |name: &str| ObjectStatus {
        namespace: "team".into(),
        name: name.into(),
        ready: Some("True".into()),
    };
    let text = metrics.encode(Inventory {
        external_secrets: vec![ready("app")],
        secret_stores: vec![ready("store")],
        cluster_secret_stores: vec![ready("global")],
    });
    let mut names: HashSet<String> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    // Prometheus's own series of every scrape target.
    names.insert("up".into());
    names
}

/// The metric names a PromQL text selects (a name followed by a `{` selector).
fn selected(promql: &str) -> BTreeSet<String> {
    let selector = Regex::new(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{").unwrap();
    selector
        .captures_iter(promql)
        .map(|c| c[1].to_owned())
        .collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&chart_file("files/grafana-dashboard.json")).expect("dashboard JSON")
}

fn exprs(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    exprs
}

#[test]
fn dashboard_and_alerts_query_only_exported_series() {
    let exported = exported();
    let dashboard = dashboard();
    let mut queried = BTreeSet::new();
    for expr in exprs(&dashboard) {
        queried.extend(selected(&expr));
    }
    let rules = chart_file("templates/prometheusrule.yaml");
    let from_rules = selected(&rules.replace("{%s", "{"));
    assert!(from_rules.len() >= 5, "{from_rules:?}");
    queried.extend(from_rules);
    // The job variable's query.
    queried.insert("secret_bridge_reconciles_total".into());
    let unknown: Vec<&String> = queried.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "queried but not exported: {unknown:?}\nexported: {exported:?}"
    );
    for needed in [
        "secret_bridge_event_lag_seconds_bucket",
        "externalsecret_provider_api_calls_count",
        "externalsecret_status_condition",
        "secret_bridge_reconcile_errors_total",
        "secret_bridge_sqs_messages_total",
    ] {
        assert!(queried.contains(needed), "nothing shows {needed}");
    }
}

#[test]
fn dashboard_is_well_formed() {
    let dashboard = dashboard();
    for key in ["title", "uid"] {
        assert!(dashboard[key].is_string(), "{key}");
    }
    assert!(dashboard["schemaVersion"].is_u64());
    let variables: HashSet<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| v["name"].as_str().expect("variable name"))
        .collect();
    let used = Regex::new(r"\$\{?([a-zA-Z_][a-zA-Z0-9_]*)").unwrap();
    let mut ids = HashSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("panel title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "duplicate id: {title}"
        );
        assert!(panel["type"].is_string(), "{title}");
        let grid = &panel["gridPos"];
        let (x, w, h) = (grid["x"].as_u64(), grid["w"].as_u64(), grid["h"].as_u64());
        let (Some(x), Some(w), Some(h)) = (x, w, h) else {
            panic!("{title}: gridPos {grid}");
        };
        assert!(
            x + w <= 24 && w > 0 && h > 0 && grid["y"].is_u64(),
            "{title}: {grid}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        let mut refs = HashSet::new();
        for target in targets {
            assert!(
                refs.insert(target["refId"].as_str().expect("refId")),
                "{title}"
            );
            let expr = target["expr"].as_str().expect("expr");
            for variable in used.captures_iter(expr) {
                let name = &variable[1];
                assert!(
                    name.starts_with("__") || variables.contains(name),
                    "{title}: ${name} is not a variable of the dashboard"
                );
            }
        }
    }
}
