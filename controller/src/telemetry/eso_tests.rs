//! ESO's series as ESO's dashboards and alerts read them: names, labels, values, and the
//! series of deleted ExternalSecrets gone.

use std::time::Duration;

use kube::runtime::reflector::{ObjectRef, store};

use super::*;
use crate::telemetry::metrics::Metrics;

fn status(namespace: &str, name: &str, ready: Option<&str>) -> ObjectStatus {
    ObjectStatus {
        namespace: namespace.into(),
        name: name.into(),
        ready: ready.map(Into::into),
    }
}

fn reconcile(metrics: &Metrics, namespace: &str, name: &str, error: Option<&'static str>) {
    let live = store::Writer::<ExternalSecret>::default().as_reader();
    let object = ObjectRef::new(name).within(namespace);
    metrics.external_secret_reconciled(&object, &live, error, Duration::from_millis(3));
}

fn lines(text: &str, prefix: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| line.starts_with(prefix))
        .map(Into::into)
        .collect();
    lines.sort();
    lines
}

#[test]
fn per_external_secret_series_have_esos_names_labels_and_values() {
    let metrics = Metrics::default();
    reconcile(&metrics, "team", "good", None);
    reconcile(&metrics, "team", "good", None);
    reconcile(&metrics, "team", "bad", Some("aws"));
    reconcile(&metrics, "team", "deleted", None);
    metrics
        .aws_calls
        .record(PROVIDER_AWS_SECRETS_MANAGER, "GetSecretValue", false);
    let inventory = Inventory {
        external_secrets: vec![
            status("team", "good", Some("True")),
            status("team", "bad", Some("False")),
            status("team", "new", None),
        ],
        secret_stores: vec![status("team", "store", Some("True"))],
        cluster_secret_stores: vec![status("", "global", Some("False"))],
    };
    let text = metrics.encode(inventory);

    assert_eq!(
        lines(&text, "externalsecret_sync_calls_total"),
        [
            r#"externalsecret_sync_calls_total{name="bad",namespace="team"} 1"#,
            r#"externalsecret_sync_calls_total{name="good",namespace="team"} 2"#,
        ]
    );
    assert_eq!(
        lines(&text, "externalsecret_sync_calls_error"),
        [
            r#"externalsecret_sync_calls_error{name="bad",namespace="team"} 1"#,
            r#"externalsecret_sync_calls_error{name="good",namespace="team"} 0"#,
        ]
    );
    assert!(
        text.contains("# TYPE externalsecret_sync_calls_error unknown"),
        "{text}"
    );
    assert_eq!(
        lines(&text, "externalsecret_status_condition"),
        [
            r#"externalsecret_status_condition{name="bad",namespace="team",condition="Ready",status="False"} 1"#,
            r#"externalsecret_status_condition{name="bad",namespace="team",condition="Ready",status="True"} 0"#,
            r#"externalsecret_status_condition{name="good",namespace="team",condition="Ready",status="False"} 0"#,
            r#"externalsecret_status_condition{name="good",namespace="team",condition="Ready",status="True"} 1"#,
        ]
    );
    assert_eq!(
        lines(&text, "externalsecret_reconcile_duration"),
        [
            r#"externalsecret_reconcile_duration{name="bad",namespace="team"} 3000000.0"#,
            r#"externalsecret_reconcile_duration{name="good",namespace="team"} 3000000.0"#,
        ]
    );
    assert_eq!(
        lines(&text, "secretstore_status_condition"),
        [
            r#"secretstore_status_condition{name="store",namespace="team",condition="Ready",status="False"} 0"#,
            r#"secretstore_status_condition{name="store",namespace="team",condition="Ready",status="True"} 1"#,
        ]
    );
    assert_eq!(
        lines(&text, "clustersecretstore_status_condition"),
        [
            r#"clustersecretstore_status_condition{name="global",namespace="",condition="Ready",status="False"} 1"#,
            r#"clustersecretstore_status_condition{name="global",namespace="",condition="Ready",status="True"} 0"#,
        ]
    );
    assert_eq!(
        lines(&text, "externalsecret_provider_api_calls_count"),
        [
            r#"externalsecret_provider_api_calls_count{provider="AWS/SecretsManager",call="GetSecretValue",status="error"} 1"#
        ]
    );
    assert_eq!(
        lines(&text, "secret_bridge_aws_calls_total"),
        [r#"secret_bridge_aws_calls_total{operation="GetSecretValue",result="error"} 1"#]
    );
    assert_eq!(
        lines(&text, "controller_runtime_reconcile_total"),
        [
            r#"controller_runtime_reconcile_total{controller="externalsecret",result="error"} 1"#,
            r#"controller_runtime_reconcile_total{controller="externalsecret",result="success"} 3"#,
        ]
    );
    assert_eq!(
        lines(&text, "controller_runtime_reconcile_errors_total"),
        [r#"controller_runtime_reconcile_errors_total{controller="externalsecret"} 1"#]
    );
    assert!(
        text.contains(
            r#"controller_runtime_reconcile_time_seconds_count{controller="externalsecret"} 4"#
        ),
        "{text}"
    );
    // "new" was never reconciled by this process: it waits in the queue.
    assert_eq!(
        lines(&text, "workqueue_depth"),
        [r#"workqueue_depth{controller="externalsecret",name="externalsecret"} 1"#]
    );
    assert!(text.contains("process_resident_memory_bytes "), "{text}");
    assert!(text.contains("process_cpu_seconds_total "), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
}

#[test]
fn series_of_deleted_external_secrets_are_dropped() {
    let metrics = Metrics::default();
    reconcile(&metrics, "team", "gone", None);
    let before = metrics.encode(Inventory {
        external_secrets: vec![status("team", "gone", Some("True"))],
        ..Inventory::default()
    });
    assert!(before.contains(r#"name="gone""#), "{before}");
    let after = metrics.encode(Inventory::default());
    assert!(!after.contains(r#"name="gone""#), "{after}");
    // Counting starts again from zero if it comes back.
    reconcile(&metrics, "team", "gone", None);
    let again = metrics.encode(Inventory {
        external_secrets: vec![status("team", "gone", Some("True"))],
        ..Inventory::default()
    });
    assert!(
        again.contains(r#"externalsecret_sync_calls_total{name="gone",namespace="team"} 1"#),
        "{again}"
    );
}

#[test]
fn active_workers_count_running_reconciles() {
    let metrics = Metrics::default();
    metrics
        .eso
        .set_max_concurrent_reconciles(EXTERNAL_SECRET_CONTROLLER, 32);
    let worker = metrics.eso.worker_started(EXTERNAL_SECRET_CONTROLLER);
    let text = metrics.encode(Inventory::default());
    assert!(
        text.contains(r#"controller_runtime_active_workers{controller="externalsecret"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"controller_runtime_max_concurrent_reconciles{controller="externalsecret"} 32"#
        ),
        "{text}"
    );
    drop(worker);
    let text = metrics.encode(Inventory::default());
    assert!(
        text.contains(r#"controller_runtime_active_workers{controller="externalsecret"} 0"#),
        "{text}"
    );
}

#[test]
fn cluster_external_secrets_report_their_ready_condition() {
    let ces: crate::api::ClusterExternalSecret = serde_json::from_value(serde_json::json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ClusterExternalSecret",
        "metadata": {"name": "shared"},
        "spec": {"externalSecretSpec": {"secretStoreRef": {"name": "aws"}}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .expect("a ClusterExternalSecret");
    let mut writer = store::Writer::default();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(ces));
    let metrics = Metrics::default();
    metrics
        .eso
        .watch_cluster_external_secrets(writer.as_reader());
    let text = metrics.encode(Inventory::default());
    assert_eq!(
        lines(&text, "clusterexternalsecret_status_condition"),
        [
            r#"clusterexternalsecret_status_condition{name="shared",namespace="",condition="Ready",status="False"} 0"#,
            r#"clusterexternalsecret_status_condition{name="shared",namespace="",condition="Ready",status="True"} 1"#,
        ]
    );
}

#[test]
fn series_follow_the_inventory_order_and_each_family_is_described_once() {
    let metrics = Metrics::default();
    let names: Vec<String> = (0..200).rev().map(|i| format!("app-{i}")).collect();
    for name in &names {
        reconcile(&metrics, "team", name, None);
    }
    let inventory = Inventory {
        external_secrets: names
            .iter()
            .map(|name| status("team", name, Some("True")))
            .collect(),
        ..Inventory::default()
    };
    let text = metrics.encode(inventory);

    let shown: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("externalsecret_sync_calls_total{name=\""))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(shown == names, "series out of the inventory's order");
    let mut described: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("# TYPE "))
        .collect();
    let all = described.len();
    described.sort_unstable();
    described.dedup();
    assert_eq!(described.len(), all, "a family described twice");
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(text.matches("# EOF").count(), 1);
}
