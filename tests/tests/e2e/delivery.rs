//! At-least-once delivery with AWS's rotation semantics: a pending value never reaches a
//! Secret, duplicates are harmless, and a message whose refresh failed is retried.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::DeleteParams;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::{external_secret, secret_data};
use secret_bridge_tests::manifest::Manifest;
use secret_bridge_tests::metrics::{SQS_DELETED, SQS_KEPT};
use secret_bridge_tests::tenant::put_keys;
use secret_bridge_tests::wait::{
    wait_for_empty_queue, wait_for_ready, wait_for_reason, wait_for_secret_gone,
};
use secret_bridge_tests::{Stack, Tenant, unique, wait_for};
use serde_json::json;

const DRAINED: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_rotation_never_exposes_the_pending_value() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "rotation", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let name = unique("rotating");
    let first = aws
        .upsert_secret(&name, r#"{"password":"rotation-v1"}"#)
        .await;
    let bus = unique("rotation-bus");
    let queue = aws.event_queue(&unique("rotation"), &bus, None, 30).await;
    let controller = tenant.start_controller(&stack, &["--queue-url", &queue]);
    tenant
        .external_secret("db")
        .refresh_interval("1h")
        .data_property("password", &name, "password")
        .apply(kube, ns)
        .await;
    tenant
        .wait_for_value("db", "password", "rotation-v1", Duration::from_secs(30))
        .await;

    // Step 1: the rotation writes the new value as AWSPENDING; CloudTrail reports the call.
    let pending = aws
        .secrets
        .put_secret_value()
        .secret_id(&name)
        .secret_string(r#"{"password":"rotation-v2"}"#)
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    let pending_id = pending.version_id.unwrap();
    let put = || {
        aws.publish_api_call(
            &bus,
            "PutSecretValue",
            json!({"secretId": name, "versionStages": ["AWSPENDING"]}),
            json!({"arn": first.arn, "versionId": pending_id, "versionStages": ["AWSPENDING"]}),
        )
    };
    put().await;
    wait_for_empty_queue(&aws, &queue, DRAINED).await;
    let data = secret_data(kube, ns, "db").await.unwrap();
    assert!(
        data["password"] == "rotation-v1",
        "the pending value must never reach the Secret"
    );

    // Step 2: AWSCURRENT moves to the new version.
    aws.secrets
        .update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&pending_id)
        .remove_from_version_id(&first.version_id)
        .send()
        .await
        .unwrap();
    let stage = || {
        aws.publish_api_call(
            &bus,
            "UpdateSecretVersionStage",
            json!({"secretId": first.arn, "versionStage": "AWSCURRENT", "moveToVersionId": pending_id}),
            json!({"arn": first.arn, "name": name}),
        )
    };
    stage().await;
    tenant
        .wait_for_value("db", "password", "rotation-v2", Duration::from_secs(10))
        .await;

    // Duplicates and the stale first event change nothing.
    put().await;
    stage().await;
    wait_for_empty_queue(&aws, &queue, DRAINED).await;
    let data = secret_data(kube, ns, "db").await.unwrap();
    assert!(data["password"] == "rotation-v2");
    let es = external_secret(kube, ns, "db").await.unwrap();
    assert_eq!(
        es.status.unwrap().synced_versions.get(&name),
        Some(&pending_id),
        "the synced VersionId is recorded"
    );
    controller.assert_logs_hide(&["rotation-v1", "rotation-v2"]);
}

#[tokio::test]
async fn a_message_whose_refresh_failed_is_retried() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "retry", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let name = unique("retried");
    aws.upsert_secret(&name, r#"{"token":"retry-v1"}"#).await;
    let bus = unique("retry-bus");
    let queue = aws.event_queue(&unique("retry"), &bus, None, 30).await;
    let controller = tenant.start_controller(&stack, &["--queue-url", &queue]);
    tenant
        .external_secret("app")
        .refresh_interval("1h")
        .extract(&name)
        .apply(kube, ns)
        .await;
    tenant
        .wait_for_value("app", "token", "retry-v1", Duration::from_secs(30))
        .await;

    // The store's credentials disappear: the refresh for the next event fails.
    Api::<Secret>::namespaced(kube.clone(), ns)
        .delete("aws-keys", &DeleteParams::default())
        .await
        .unwrap();
    let rotated = aws.rotate(&name, r#"{"token":"retry-v2"}"#).await;
    aws.publish_label_updated(&bus, &name, &rotated).await;
    wait_for(
        "the failed refresh to be logged",
        Duration::from_secs(20),
        || async {
            controller
                .logs()
                .contains("leaving the message for a retry")
                .then_some(())
        },
    )
    .await;
    assert!(
        aws.queue_depth(&queue).await >= 1,
        "the message stays in the queue"
    );
    let (_, message) = wait_for_ready(kube, ns, "app", "False", Duration::from_secs(10)).await;
    assert!(message.contains("aws-keys"), "{message}");

    // Credentials back: the retried message completes and is deleted.
    put_keys(&stack, ns).await;
    tenant
        .wait_for_value("app", "token", "retry-v2", Duration::from_secs(30))
        .await;
    wait_for_empty_queue(&aws, &queue, DRAINED).await;
    let metrics = controller.metrics().await;
    metrics.assert_counted(SQS_KEPT);
    metrics.assert_value(SQS_DELETED, 1.0);
    controller.assert_logs_hide(&["retry-v1", "retry-v2"]);
}

#[tokio::test]
async fn a_deleted_secret_follows_the_deletion_policy() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "deletion", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let name = unique("doomed");
    let written = aws.upsert_secret(&name, r#"{"k":"deletion-v1"}"#).await;
    let bus = unique("deletion-bus");
    let queue = aws.event_queue(&unique("deletion"), &bus, None, 30).await;
    let controller = tenant.start_controller(&stack, &["--queue-url", &queue]);
    for (es, policy) in [("retain", "Retain"), ("delete", "Delete")] {
        tenant
            .external_secret(es)
            .refresh_interval("1h")
            .target(json!({ "deletionPolicy": policy }))
            .extract(&name)
            .apply(kube, ns)
            .await;
        tenant
            .wait_for_value(es, "k", "deletion-v1", Duration::from_secs(30))
            .await;
    }

    aws.delete_secret_announced(&bus, &name, &written.arn).await;
    wait_for_secret_gone(
        kube,
        ns,
        "delete",
        "deletionPolicy Delete",
        Duration::from_secs(10),
    )
    .await;
    // As ESO, a Secret deleted by deletionPolicy Delete is the expected outcome: Ready=True.
    wait_for_reason(kube, ns, "delete", "True", "SecretDeleted").await;
    let (reason, _) = wait_for_ready(kube, ns, "retain", "False", Duration::from_secs(10)).await;
    assert_eq!(reason, "SecretSyncedError");
    let kept = secret_data(kube, ns, "retain")
        .await
        .expect("deletionPolicy Retain keeps the Secret");
    assert!(kept["k"] == "deletion-v1");
    // The event did its job: it is not retried into the dead-letter queue.
    wait_for_empty_queue(&aws, &queue, DRAINED).await;
    controller.assert_logs_hide(&["deletion-v1"]);
}

#[tokio::test]
async fn fifo_queues_work_too() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "fifo", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let name = unique("fifo-secret");
    aws.upsert_secret(&name, r#"{"k":"fifo-v1"}"#).await;
    let queue = aws
        .sqs
        .create_queue()
        .queue_name(format!("{}.fifo", unique("events")))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::ContentBasedDeduplication,
            "true",
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    aws.remove_queue_on_drop(&queue);
    let controller = tenant.start_controller(&stack, &["--queue-url", &queue]);
    tenant
        .external_secret("app")
        .refresh_interval("1h")
        .extract(&name)
        .apply(kube, ns)
        .await;
    tenant
        .wait_for_value("app", "k", "fifo-v1", Duration::from_secs(30))
        .await;

    let rotated = aws.rotate(&name, r#"{"k":"fifo-v2"}"#).await;
    // The fan-out Lambda's normalized message, grouped by secret as a FIFO queue requires.
    let body = json!({"secretBridge": 1, "kind": "SecretLabelUpdated", "region": "us-east-1",
        "name": name, "arn": rotated.arn, "versionId": rotated.version_id, "label": "AWSCURRENT"});
    aws.sqs
        .send_message()
        .queue_url(&queue)
        .message_group_id(&name)
        .message_body(body.to_string())
        .send()
        .await
        .unwrap();
    tenant
        .wait_for_value("app", "k", "fifo-v2", Duration::from_secs(10))
        .await;
    wait_for_empty_queue(&aws, &queue, DRAINED).await;
    controller.assert_logs_hide(&["fifo-v1", "fifo-v2"]);
}
