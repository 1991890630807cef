//! Accelerator mode (`--mode=eso-trigger`): on an event, ESO's `force-sync` annotation lands
//! on exactly the ExternalSecrets that read the secret, and no Secret is written.

use std::time::Duration;

use secret_bridge_controller::events::eso_trigger::FORCE_SYNC_ANNOTATION;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::{external_secret, secret_data};
use secret_bridge_tests::manifest::Manifest;
use secret_bridge_tests::wait::wait_for_empty_queue;
use secret_bridge_tests::{ControllerProcess, Stack, Tenant, unique, wait_for};

#[tokio::test]
async fn eso_trigger_mode_annotates_exactly_the_matching_external_secrets() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "accel", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let rotated = unique("rotated");
    let other = unique("other");
    let written = aws
        .upsert_secret(&rotated, r#"{"k":"accel-value-1"}"#)
        .await;
    aws.upsert_secret(&other, r#"{"k":"accel-value-2"}"#).await;

    for (name, key, interval) in [
        ("by-name", &rotated, "1h"),
        ("by-arn", &written.arn, "0"),
        ("unrelated", &other, "1h"),
    ] {
        tenant
            .external_secret(name)
            .refresh_interval(interval)
            .extract(key)
            .apply(kube, ns)
            .await;
    }

    let bus = unique("accel-bus");
    let queue = aws.event_queue(&unique("accel"), &bus, None, 30).await;
    let controller = ControllerProcess::start(
        &stack,
        ns,
        &["--mode", "eso-trigger", "--queue-url", &queue],
    );
    controller.probe_address().await;
    aws.publish_label_updated(&bus, &rotated, &written).await;

    for name in ["by-name", "by-arn"] {
        wait_for(
            &format!("force-sync on {name}"),
            Duration::from_secs(15),
            || async {
                let es = external_secret(kube, ns, name).await?;
                es.metadata.annotations?.get(FORCE_SYNC_ANNOTATION).cloned()
            },
        )
        .await;
    }
    wait_for_empty_queue(&aws, &queue, Duration::from_secs(10)).await;
    let unrelated = external_secret(kube, ns, "unrelated").await.unwrap();
    let annotations = unrelated.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key(FORCE_SYNC_ANNOTATION),
        "only matching ExternalSecrets are annotated"
    );
    for name in ["by-name", "by-arn", "unrelated"] {
        assert!(
            secret_data(kube, ns, name).await.is_none(),
            "accelerator mode writes no Secret ({name})"
        );
        let es = external_secret(kube, ns, name).await.unwrap();
        assert!(
            es.status.is_none(),
            "accelerator mode writes no status ({name})"
        );
    }
    let logs = controller.logs();
    assert!(
        logs.contains("ESO will ignore the force-sync trigger"),
        "the refreshInterval 0 trap is reported"
    );
    controller.assert_logs_hide(&["accel-value-1", "accel-value-2"]);
}
