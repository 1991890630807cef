//! Secrets with the same name in two regions are kept apart: an event from one region only
//! refreshes the ExternalSecrets whose store is in that region.

use std::time::Duration;

use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::*;
use secret_bridge_tests::{ControllerProcess, Stack, unique};
use serde_json::json;

use crate::fixtures::Tenant;

#[tokio::test]
async fn same_name_in_two_regions_is_kept_apart() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let east = Aws::new(&stack.aws);
    let west = Aws::new(&Stack::aws_config_for(stack.env, "eu-west-1").await);
    let tenant = Tenant::new(&stack, "regions", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    apply_yaml(
        kube,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata:\n  name: aws-eu\nspec:\n  controller: {class}\n  provider:\n    aws:\n      service: SecretsManager\n      region: eu-west-1\n      auth:\n        secretRef:\n          accessKeyIDSecretRef: {{name: aws-keys, key: access-key}}\n          secretAccessKeySecretRef: {{name: aws-keys, key: secret-access-key}}\n",
            class = tenant.class
        ),
        ns,
    )
    .await;
    let name = unique("shared-name");
    east.upsert_secret(&name, r#"{"v":"east-1"}"#).await;
    west.upsert_secret(&name, r#"{"v":"west-1"}"#).await;
    let queue = east.plain_queue(&unique("regions")).await;
    let controller = ControllerProcess::start(
        &stack,
        ns,
        &["--controller-class", &tenant.class, "--queue-url", &queue],
    );
    let extract = format!("  refreshInterval: 1h\n  dataFrom:\n    - extract: {{key: {name}}}\n");
    tenant.external_secret(&stack, "east", &extract).await;
    apply_yaml(
        kube,
        &format!("apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: west\nspec:\n  secretStoreRef: {{name: aws-eu, kind: SecretStore}}\n{extract}"),
        ns,
    )
    .await;
    let timeout = Duration::from_secs(30);
    wait_for_secret_value(kube, ns, "east", "v", "east-1", timeout).await;
    wait_for_secret_value(kube, ns, "west", "v", "west-1", timeout).await;

    // Both regions rotate; only eu-west-1's event arrives (as EventBridge would deliver it).
    east.rotate(&name, r#"{"v":"east-2"}"#).await;
    let written = west.rotate(&name, r#"{"v":"west-2"}"#).await;
    let event = |region: &str, arn: &str, version: &str| {
        json!({
            "version": "0", "id": unique("event"), "detail-type": "Secret Label Updated",
            "source": "aws.secretsmanager", "account": "123456789012", "region": region,
            "time": "2026-01-01T00:00:00Z", "resources": [arn],
            "detail": {"name": name, "labelUpdated": "AWSCURRENT", "versionId": version},
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
    wait_for_secret_value(kube, ns, "west", "v", "west-2", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let data = secret_data(kube, ns, "east").await.unwrap();
    assert!(
        data["v"] == "east-1",
        "an eu-west-1 event must not refresh a us-east-1 store's ExternalSecret"
    );

    let east_arn = east
        .secrets
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    send(event("us-east-1", &east_arn, "v")).await;
    wait_for_secret_value(kube, ns, "east", "v", "east-2", Duration::from_secs(10)).await;
    controller.assert_logs_hide(&["east-1", "east-2", "west-1", "west-2"]);
}
