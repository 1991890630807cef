//! The tutorial's manifests, applied unchanged: synced, refreshed by an event, collected.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::*;
use secret_bridge_tests::metrics::SQS_DELETED;
use secret_bridge_tests::wait::{wait_for_empty_queue, wait_for_ready, wait_for_secret_gone};
use secret_bridge_tests::{ControllerProcess, Stack, tutorial, unique, wait_for};
use serde_json::json;

#[tokio::test]
async fn tutorial_flow_is_synced_then_refreshed_by_an_event_then_collected() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);

    // The tutorial's names are fixed; start from a clean slate if the demo ran before.
    tutorial::prepare(&stack).await;
    tutorial::put_aws_secret(&aws).await;
    let bus = unique("tutorial-bus");
    let queue = aws.event_queue(&unique("tutorial"), &bus, None, 30).await;
    let controller = ControllerProcess::start(&stack, "tutorial", &["--queue-url", &queue]);

    tutorial::apply(&stack).await;

    let data =
        tutorial::wait_for_password(&stack, tutorial::FIRST_PASSWORD, Duration::from_secs(30))
            .await;
    assert_eq!(data.get("username").map(String::as_str), Some("bob"));
    assert_eq!(data.len(), 2, "exactly the AWS secret's keys");
    let secret = Api::<Secret>::namespaced(kube.clone(), "app")
        .get("app-secret")
        .await
        .unwrap();
    let owner = &secret
        .metadata
        .owner_references
        .as_ref()
        .expect("creationPolicy Owner sets an owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ExternalSecret", "app-secret", Some(true))
    );
    let (reason, _) =
        wait_for_ready(kube, "app", "app-secret", "True", Duration::from_secs(10)).await;
    assert_eq!(reason, "SecretSynced");
    let es = external_secret(kube, "app", "app-secret").await.unwrap();
    let status = es.status.unwrap();
    assert!(status.refresh_time.is_some());
    assert_eq!(status.binding.unwrap().name, "app-secret");

    // A rotation in AWS with no event: with refreshInterval 1h nothing may change.
    let new_password = unique("rotated-password");
    let rotated = aws
        .rotate(
            "app-secret",
            &json!({"username": "bob", "password": new_password}).to_string(),
        )
        .await;
    // The controller looks at the ExternalSecret again (a change of its Secret's metadata
    // wakes it) and, not due for a refresh, leaves the Secret as it is.
    let reconciled = controller.reconciles_of("ExternalSecret", "app", "app-secret");
    Api::<Secret>::namespaced(kube.clone(), "app")
        .patch(
            "app-secret",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"secret-bridge-tests/poke": "1"}}})),
        )
        .await
        .expect("annotate the Secret");
    wait_for(
        "a reconcile of app/app-secret after the rotation",
        Duration::from_secs(10),
        || async {
            (controller.reconciles_of("ExternalSecret", "app", "app-secret") > reconciled)
                .then_some(())
        },
    )
    .await;
    let before = secret_data(kube, "app", "app-secret").await.unwrap();
    assert!(
        before["password"] == tutorial::FIRST_PASSWORD,
        "nothing but the event may refresh the Secret"
    );

    // The event alone brings the new value within seconds.
    let start = Instant::now();
    aws.publish_label_updated(&bus, "app-secret", &rotated)
        .await;
    tutorial::wait_for_password(&stack, &new_password, Duration::from_secs(10)).await;
    println!("rotation event → Secret updated in {:?}", start.elapsed());
    wait_for_empty_queue(&aws, &queue, Duration::from_secs(10)).await;

    // Probes and metrics tell the same story.
    assert_eq!(controller.probe_get("/healthz").await.0, 200);
    assert_eq!(controller.probe_get("/readyz").await.0, 200);
    let metrics = controller.metrics().await;
    for sample in [
        r#"secret_bridge_events_total{event="SecretLabelUpdated"}"#,
        SQS_DELETED,
        "secret_bridge_event_lag_seconds_count",
    ] {
        metrics.assert_value(sample, 1.0);
    }

    // A Secret deleted behind the controller's back comes back.
    Api::<Secret>::namespaced(kube.clone(), "app")
        .delete("app-secret", &Default::default())
        .await
        .unwrap();
    tutorial::wait_for_password(&stack, &new_password, Duration::from_secs(10)).await;

    // Deleting the ExternalSecret deletes its Secret (garbage collection by the controller-manager).
    delete_external_secret(kube, "app", "app-secret").await;
    wait_for_secret_gone(
        kube,
        "app",
        "app-secret",
        "collected with its owner",
        Duration::from_secs(60),
    )
    .await;

    controller.assert_logs_hide(&[tutorial::FIRST_PASSWORD, &new_password]);
}
