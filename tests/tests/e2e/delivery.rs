//! At-least-once delivery with AWS's rotation semantics: a pending value never reaches a
//! Secret, duplicates are harmless, and a message whose refresh failed is retried.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::DeleteParams;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::*;
use secret_bridge_tests::{ControllerProcess, Stack, unique, wait_for};
use serde_json::json;

use crate::fixtures::Tenant;

fn cloudtrail(
    event_name: &str,
    request: serde_json::Value,
    response: serde_json::Value,
) -> serde_json::Value {
    json!({
        "eventSource": "secretsmanager.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "requestParameters": request,
        "responseElements": response,
    })
}

async fn queue_drained(aws: &Aws, queue: &str) {
    wait_for(
        "the queue to be drained",
        Duration::from_secs(20),
        || async { (aws.queue_depth(queue).await == 0).then_some(()) },
    )
    .await;
}

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
    let controller = ControllerProcess::start(
        &stack,
        ns,
        &["--controller-class", &tenant.class, "--queue-url", &queue],
    );
    tenant
        .external_secret(&stack, "db", &format!("  refreshInterval: 1h\n  data:\n    - secretKey: password\n      remoteRef: {{key: {name}, property: password}}\n"))
        .await;
    wait_for_secret_value(
        kube,
        ns,
        "db",
        "password",
        "rotation-v1",
        Duration::from_secs(30),
    )
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
    let put = cloudtrail(
        "PutSecretValue",
        json!({"secretId": name, "versionStages": ["AWSPENDING"]}),
        json!({"arn": first.arn, "versionId": pending_id, "versionStages": ["AWSPENDING"]}),
    );
    aws.publish(&bus, "AWS API Call via CloudTrail", &put, &[])
        .await;
    queue_drained(&aws, &queue).await;
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
    let stage = cloudtrail(
        "UpdateSecretVersionStage",
        json!({"secretId": first.arn, "versionStage": "AWSCURRENT", "moveToVersionId": pending_id}),
        json!({"arn": first.arn, "name": name}),
    );
    aws.publish(&bus, "AWS API Call via CloudTrail", &stage, &[])
        .await;
    wait_for_secret_value(
        kube,
        ns,
        "db",
        "password",
        "rotation-v2",
        Duration::from_secs(10),
    )
    .await;

    // Duplicates and the stale first event change nothing.
    aws.publish(&bus, "AWS API Call via CloudTrail", &put, &[])
        .await;
    aws.publish(&bus, "AWS API Call via CloudTrail", &stage, &[])
        .await;
    queue_drained(&aws, &queue).await;
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
    let controller = ControllerProcess::start(
        &stack,
        ns,
        &["--controller-class", &tenant.class, "--queue-url", &queue],
    );
    tenant
        .external_secret(
            &stack,
            "app",
            &format!("  refreshInterval: 1h\n  dataFrom:\n    - extract: {{key: {name}}}\n"),
        )
        .await;
    wait_for_secret_value(
        kube,
        ns,
        "app",
        "token",
        "retry-v1",
        Duration::from_secs(30),
    )
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
    put_secret(
        kube,
        ns,
        "aws-keys",
        &[
            ("access-key", &stack.env["AWS_ACCESS_KEY_ID"]),
            ("secret-access-key", &stack.env["AWS_SECRET_ACCESS_KEY"]),
        ],
    )
    .await;
    wait_for_secret_value(
        kube,
        ns,
        "app",
        "token",
        "retry-v2",
        Duration::from_secs(30),
    )
    .await;
    queue_drained(&aws, &queue).await;
    let (_, metrics) = controller.probe_get("/metrics").await;
    assert!(
        metrics.contains(r#"secret_bridge_sqs_messages_total{result="kept"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"secret_bridge_sqs_messages_total{result="deleted"} 1"#),
        "{metrics}"
    );
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
    let controller = ControllerProcess::start(
        &stack,
        ns,
        &["--controller-class", &tenant.class, "--queue-url", &queue],
    );
    for (es, policy) in [("retain", "Retain"), ("delete", "Delete")] {
        let spec = format!(
            "  refreshInterval: 1h\n  target: {{deletionPolicy: {policy}}}\n  dataFrom:\n    - extract: {{key: {name}}}\n"
        );
        tenant.external_secret(&stack, es, &spec).await;
        wait_for_secret_value(kube, ns, es, "k", "deletion-v1", Duration::from_secs(30)).await;
    }

    aws.secrets
        .delete_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    let delete = cloudtrail(
        "DeleteSecret",
        json!({"secretId": name, "recoveryWindowInDays": 7}),
        json!({"arn": written.arn, "name": name}),
    );
    aws.publish(&bus, "AWS API Call via CloudTrail", &delete, &[])
        .await;
    wait_for(
        "Secret delete to be deleted",
        Duration::from_secs(10),
        || async {
            secret_data(kube, ns, "delete")
                .await
                .is_none()
                .then_some(())
        },
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
    queue_drained(&aws, &queue).await;
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
    let controller = ControllerProcess::start(
        &stack,
        ns,
        &["--controller-class", &tenant.class, "--queue-url", &queue],
    );
    let spec = format!("  refreshInterval: 1h\n  dataFrom:\n    - extract: {{key: {name}}}\n");
    tenant.external_secret(&stack, "app", &spec).await;
    wait_for_secret_value(kube, ns, "app", "k", "fifo-v1", Duration::from_secs(30)).await;

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
    wait_for_secret_value(kube, ns, "app", "k", "fifo-v2", Duration::from_secs(10)).await;
    queue_drained(&aws, &queue).await;
    controller.assert_logs_hide(&["fifo-v1", "fifo-v2"]);
}

/// Waits until the ExternalSecret's `Ready` condition has `status` and `reason` (a status
/// alone may still be the one from before the change under test).
pub async fn wait_for_reason(
    kube: &kube::Client,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
) {
    wait_for(
        &format!("ExternalSecret {ns}/{name} Ready={status} reason {reason}"),
        Duration::from_secs(10),
        || async {
            let es = external_secret(kube, ns, name).await?;
            let ready = es.ready_condition()?;
            (ready.status == status && ready.reason.as_deref() == Some(reason)).then_some(())
        },
    )
    .await;
}
