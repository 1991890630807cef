//! The consumer never acknowledges what it cannot read (so SQS moves it to the DLQ after
//! `maxReceiveCount`), acknowledges events for secrets nobody uses, and keeps serving.

use std::time::Duration;

use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::manifest::Manifest;
use secret_bridge_tests::metrics::{SQS_DEAD_LETTERED, SQS_UNREADABLE};
use secret_bridge_tests::wait::wait_for_empty_queue;
use secret_bridge_tests::{Stack, Tenant, unique};
use serde_json::json;

#[tokio::test]
async fn unreadable_messages_go_to_the_dlq_and_unused_secrets_are_acknowledged() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "queue", "us-east-1").await;
    let ns = tenant.namespace.as_str();

    let used = unique("used");
    aws.upsert_secret(&used, r#"{"token":"queue-value-1"}"#)
        .await;
    let bus = unique("queue-bus");
    let dlq = aws.plain_queue(&unique("queue-dlq")).await;
    let queue = aws
        .event_queue(&unique("queue"), &bus, Some((&dlq, 2)), 1)
        .await;
    let controller = tenant.start_controller(&stack, &["--queue-url", &queue]);
    tenant
        .external_secret("used")
        .refresh_interval("1h")
        .extract(&used)
        .apply(kube, ns)
        .await;
    tenant
        .wait_for_value("used", "token", "queue-value-1", Duration::from_secs(30))
        .await;

    let not_json = format!("not json {}", unique("garbage"));
    let unknown = json!({"detail-type": "Parameter Store Change", "source": "aws.ssm", "detail": {"name": unique("param")}}).to_string();
    for body in [&not_json, &unknown] {
        aws.sqs
            .send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let unused = unique("nobody-uses-this");
    aws.publish(
        &bus,
        "Secret Label Updated",
        &json!({"name": unused, "labelUpdated": "AWSCURRENT", "versionId": "v"}),
        &[],
    )
    .await;

    // The consumer survives them all and still applies events.
    let rotated = aws.rotate(&used, r#"{"token":"queue-value-2"}"#).await;
    aws.publish_label_updated(&bus, &used, &rotated).await;
    tenant
        .wait_for_value("used", "token", "queue-value-2", Duration::from_secs(10))
        .await;

    // Exactly the two unreadable messages reach the DLQ; the rest were acknowledged.
    let mut dead = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while dead.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for two messages in the DLQ, got {}",
            dead.len()
        );
        dead.extend(aws.receive(&dlq).await.into_iter().filter_map(|m| m.body));
    }
    dead.sort();
    let mut expected = vec![not_json.clone(), unknown.clone()];
    expected.sort();
    assert_eq!(dead, expected);
    wait_for_empty_queue(&aws, &queue, Duration::from_secs(30)).await;
    assert!(
        controller.logs().contains("cannot read message"),
        "unreadable messages are logged"
    );
    let metrics = controller.metrics().await;
    metrics.assert_value(SQS_DEAD_LETTERED, 2.0);
    metrics.assert_counted(SQS_UNREADABLE);
    controller.assert_logs_hide(&["queue-value-1", "queue-value-2"]);
}
