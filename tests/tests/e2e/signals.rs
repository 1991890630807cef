//! The signals an ESO user already watches: ESO's series on `/metrics` with the values of a
//! real run (one ExternalSecret syncing, one failing), AWS call counts equal to the calls the
//! emulator received, the series of a deleted ExternalSecret gone, and JSON logs shaped as
//! ESO's.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::DeleteParams;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::aws_proxy::AwsProxy;
use secret_bridge_tests::controller::ControllerProcess;
use secret_bridge_tests::kube_helpers::delete_external_secret;
use secret_bridge_tests::metrics::Metrics;
use secret_bridge_tests::wait::{wait_for, wait_for_ready};
use secret_bridge_tests::{Stack, Tenant, unique};

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn metrics_and_logs_speak_esos_language() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "signals", "us-east-1").await;
    let ns = tenant.namespace.clone();
    let secret = unique("signals");
    aws.upsert_secret(&secret, r#"{"token":"signals-value-1"}"#)
        .await;

    let proxy = AwsProxy::start(&stack.env["AWS_ENDPOINT_URL"]).await;
    let endpoint = proxy.url();
    let controller = ControllerProcess::start_with_env(
        &stack,
        &ns,
        &["--controller-class", &tenant.class, "--log-format", "json"],
        &[("AWS_ENDPOINT_URL", endpoint.as_str())],
    );
    tenant
        .apply(
            &tenant
                .external_secret("syncing")
                .refresh_interval("1h")
                .data_property("token", &secret, "token"),
        )
        .await;
    tenant
        .apply(
            &tenant
                .external_secret("failing")
                .refresh_interval("1h")
                .data("token", &unique("signals-missing")),
        )
        .await;
    tenant
        .wait_for_value("syncing", "token", "signals-value-1", TIMEOUT)
        .await;
    wait_for_ready(kube, &ns, "failing", "False", TIMEOUT).await;

    let condition = |name: &str, status: &str| {
        format!(
            r#"externalsecret_status_condition{{name="{name}",namespace="{ns}",condition="Ready",status="{status}"}}"#
        )
    };
    let object =
        |series: &str, name: &str| format!(r#"{series}{{name="{name}",namespace="{ns}"}}"#);
    let store_ready = format!(
        r#"secretstore_status_condition{{name="{}",namespace="{ns}",condition="Ready",status="True"}}"#,
        tenant.store
    );
    // The scrape reads conditions from the watch, which follows the status writes (the
    // Secret is written before the status, so its value does not say the status is there).
    controller
        .wait_for_metric(&condition("syncing", "True"), 1.0, TIMEOUT)
        .await;
    controller
        .wait_for_metric(&condition("failing", "False"), 1.0, TIMEOUT)
        .await;
    controller.wait_for_metric(&store_ready, 1.0, TIMEOUT).await;
    let metrics = controller.metrics().await;
    metrics.assert_value(&condition("syncing", "True"), 1.0);
    metrics.assert_value(&condition("syncing", "False"), 0.0);
    metrics.assert_value(&condition("failing", "True"), 0.0);
    assert!(metrics.value(&object("externalsecret_sync_calls_total", "syncing")) >= 1.0);
    metrics.assert_value(&object("externalsecret_sync_calls_error", "syncing"), 0.0);
    let failing_calls = metrics.value(&object("externalsecret_sync_calls_total", "failing"));
    assert!(failing_calls >= 1.0, "{metrics}");
    // Every reconcile of the failing one failed.
    metrics.assert_value(
        &object("externalsecret_sync_calls_error", "failing"),
        failing_calls,
    );
    let duration = metrics.value(&object("externalsecret_reconcile_duration", "syncing"));
    // Nanoseconds, as ESO: more than a microsecond, less than the whole test.
    assert!(duration > 1e3 && duration < 60e9, "{duration}\n{metrics}");
    metrics.assert_counted(
        r#"controller_runtime_reconcile_total{controller="externalsecret",result="success"}"#,
    );
    metrics.assert_counted(
        r#"controller_runtime_reconcile_total{controller="externalsecret",result="error"}"#,
    );
    metrics.assert_counted(
        r#"controller_runtime_reconcile_errors_total{controller="externalsecret"}"#,
    );
    metrics.assert_value(
        r#"controller_runtime_max_concurrent_reconciles{controller="externalsecret"}"#,
        32.0,
    );
    assert!(
        metrics.value("process_resident_memory_bytes") > 1e6,
        "{metrics}"
    );
    assert!(metrics.value("process_open_fds") >= 3.0, "{metrics}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let started = metrics.value("process_start_time_seconds");
    assert!(
        started <= now.as_secs_f64() + 1.0 && started > now.as_secs_f64() - 600.0,
        "process_start_time_seconds {started}"
    );

    // AWS calls: what the controller counted is what the emulator received, by operation.
    // The failing one keeps retrying, so read a moment when no call is under way.
    let (counted, received) = wait_for(
        "the controller's Secrets Manager call counts to match the proxy's",
        TIMEOUT,
        || async {
            let before = secrets_manager_calls(&proxy);
            let counted = provider_calls(&controller.metrics().await);
            let after = secrets_manager_calls(&proxy);
            (before == after && counted == before).then_some((counted, after))
        },
    )
    .await;
    assert!(
        counted.values().sum::<u64>() >= 2,
        "both ExternalSecrets read AWS: {counted:?} (proxy: {received:?})"
    );
    let metrics = controller.metrics().await;
    for (call, count) in &received {
        let ours: f64 = ["success", "error"]
            .iter()
            .map(|result| {
                metrics.value(&format!(
                    r#"secret_bridge_aws_calls_total{{operation="{call}",result="{result}"}}"#
                ))
            })
            .sum();
        assert!(ours >= *count as f64, "{call}: ours {ours}, proxy {count}");
    }

    // A deleted ExternalSecret's series go away: cardinality stays bounded.
    delete_external_secret(kube, &ns, "failing").await;
    wait_for(
        "the deleted ExternalSecret's series to leave /metrics",
        TIMEOUT,
        || async {
            let text = controller.metrics().await.text().to_owned();
            (!text.contains(&format!(r#"name="failing",namespace="{ns}""#))).then_some(())
        },
    )
    .await;

    // Logs: one flat JSON object per line, ESO's keys.
    let logs = controller.logs();
    let failed = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["msg"] == "sync failed" && entry["ExternalSecret"]["name"] == "failing")
        .unwrap_or_else(|| {
            panic!(
                "no JSON `sync failed` line for failing in {}",
                controller.log_path.display()
            )
        });
    assert_eq!(failed["ExternalSecret"]["namespace"], ns.as_str());
    assert_eq!(failed["level"], "warn");
    assert!(
        failed["ts"].is_f64() && failed["logger"].is_string(),
        "{failed}"
    );
    assert!(failed.get("fields").is_none(), "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ResourceNotFoundException")
    );
    controller.assert_logs_hide(&["signals-value-1"]);

    drop(controller);
    Api::<Namespace>::all(kube.clone())
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete the tenant namespace");
}

/// Secrets Manager calls the proxy forwarded, by operation.
fn secrets_manager_calls(proxy: &AwsProxy) -> BTreeMap<String, u64> {
    proxy
        .calls()
        .into_iter()
        .filter_map(|(key, count)| Some((key.strip_prefix("secretsmanager.")?.to_owned(), count)))
        .collect()
}

/// ESO's `externalsecret_provider_api_calls_count` for Secrets Manager, by call (both
/// statuses).
fn provider_calls(metrics: &Metrics) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in metrics.text().lines() {
        let Some(rest) = line.strip_prefix(
            r#"externalsecret_provider_api_calls_count{provider="AWS/SecretsManager",call=""#,
        ) else {
            continue;
        };
        let (call, rest) = rest.split_once('"').expect("call label");
        let value: f64 = rest.rsplit(' ').next().unwrap().parse().expect("a number");
        *calls.entry(call.to_owned()).or_default() += value as u64;
    }
    calls
}
