//! Secrets with the same name in two regions are kept apart: an event from one region only
//! refreshes the ExternalSecrets whose store is in that region.

use std::time::Duration;

use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::secret_data;
use secret_bridge_tests::manifest::Manifest;
use secret_bridge_tests::metrics::SQS_DELETED;
use secret_bridge_tests::{Stack, Tenant, unique};
use serde_json::json;

#[tokio::test]
async fn same_name_in_two_regions_is_kept_apart() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let east = Aws::new(&stack.aws);
    let west = Aws::new(&Stack::aws_config_for(stack.env, "eu-west-1").await);
    let tenant = Tenant::new(&stack, "regions", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    tenant
        .secret_store("aws-eu")
        .region("eu-west-1")
        .static_keys()
        .apply(kube, ns)
        .await;
    let shared = unique("shared-name");
    east.upsert_secret(&shared, r#"{"v":"east-1"}"#).await;
    west.upsert_secret(&shared, r#"{"v":"west-1"}"#).await;
    let queue = east.plain_queue(&unique("regions")).await;
    let controller = tenant.start_controller(&stack, &["--queue-url", &queue]);
    let extract = |name: &str| {
        tenant
            .external_secret(name)
            .refresh_interval("1h")
            .extract(&shared)
    };
    extract("east").apply(kube, ns).await;
    extract("west").secret_store("aws-eu").apply(kube, ns).await;
    let timeout = Duration::from_secs(30);
    tenant.wait_for_value("east", "v", "east-1", timeout).await;
    tenant.wait_for_value("west", "v", "west-1", timeout).await;

    // Both regions rotate; only eu-west-1's event arrives (as EventBridge would deliver it).
    east.rotate(&shared, r#"{"v":"east-2"}"#).await;
    let written = west.rotate(&shared, r#"{"v":"west-2"}"#).await;
    let event = |region: &str, arn: &str, version: &str| {
        json!({
            "version": "0", "id": unique("event"), "detail-type": "Secret Label Updated",
            "source": "aws.secretsmanager", "account": "123456789012", "region": region,
            "time": "2026-01-01T00:00:00Z", "resources": [arn],
            "detail": {"name": shared, "labelUpdated": "AWSCURRENT", "versionId": version},
        })
        .to_string()
    };
    let send = |body: String| {
        let sqs = east.sqs.clone();
        let queue = queue.clone();
        async move {
            sqs.send_message()
                .queue_url(queue)
                .message_body(body)
                .send()
                .await
                .unwrap()
        }
    };
    send(event("eu-west-1", &written.arn, &written.version_id)).await;
    tenant
        .wait_for_value("west", "v", "west-2", Duration::from_secs(10))
        .await;
    // The event is done with (its message deleted) before the other region's Secret is read.
    controller
        .wait_for_metric(SQS_DELETED, 1.0, Duration::from_secs(10))
        .await;
    let data = secret_data(kube, ns, "east").await.unwrap();
    assert!(
        data["v"] == "east-1",
        "an eu-west-1 event must not refresh a us-east-1 store's ExternalSecret"
    );

    let east_arn = east
        .secrets
        .describe_secret()
        .secret_id(&shared)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    send(event("us-east-1", &east_arn, "v")).await;
    tenant
        .wait_for_value("east", "v", "east-2", Duration::from_secs(10))
        .await;
    controller.assert_logs_hide(&["east-1", "east-2", "west-1", "west-2"]);
}
