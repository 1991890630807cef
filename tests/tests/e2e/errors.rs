//! Bad references give `Ready=False` with a message that says what is wrong, while the other
//! ExternalSecrets keep syncing — including by events.

use std::time::Duration;

use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::*;
use secret_bridge_tests::{ControllerProcess, Stack, unique};
use serde_json::json;

use crate::fixtures::Tenant;

#[tokio::test]
async fn bad_references_report_clear_errors_while_others_keep_syncing() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "errors", "us-east-1").await;
    let ns = tenant.namespace.as_str();

    let good = unique("good");
    let plain = unique("plain");
    let missing = unique("missing");
    aws.upsert_secret(&good, r#"{"user":"u1","pass":"good-value-1"}"#)
        .await;
    aws.upsert_secret(&plain, "plain-text-value-xyz").await;
    let bus = unique("errors-bus");
    let queue = aws.event_queue(&unique("errors"), &bus, None, 30).await;
    let controller = ControllerProcess::start(
        &stack,
        &tenant.namespace,
        &["--controller-class", &tenant.class, "--queue-url", &queue],
    );

    let data = |key: &str, property: &str| {
        format!(
            "  refreshInterval: 1h\n  data:\n    - secretKey: value\n      remoteRef:\n        key: {key}\n        property: {property}\n"
        )
    };
    tenant
        .external_secret(&stack, "good", &data(&good, "pass"))
        .await;
    tenant
        .external_secret(&stack, "wrong-key", &data(&missing, "pass"))
        .await;
    tenant
        .external_secret(&stack, "not-json", &data(&plain, "user"))
        .await;
    tenant
        .external_secret(
            &stack,
            "bad-interval",
            &format!("  refreshInterval: soon\n  dataFrom:\n    - extract: {{key: {good}}}\n"),
        )
        .await;
    apply_yaml(
        kube,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: missing-store\nspec:\n  secretStoreRef: {{name: no-such-store, kind: SecretStore}}\n  dataFrom:\n    - extract: {{key: {good}}}\n"
        ),
        ns,
    )
    .await;

    let timeout = Duration::from_secs(30);
    wait_for_secret_value(kube, ns, "good", "value", "good-value-1", timeout).await;
    let expectations = [
        (
            "wrong-key",
            vec!["ResourceNotFoundException", missing.as_str()],
        ),
        (
            "not-json",
            // ESO's words: a secret that is not JSON just has no such key.
            vec!["key user does not exist in secret", plain.as_str()],
        ),
        (
            "missing-store",
            vec!["SecretStore \"no-such-store\" not found"],
        ),
        ("bad-interval", vec!["spec.refreshInterval", "\"soon\""]),
    ];
    for (name, expected) in expectations {
        let (reason, message) = wait_for_ready(kube, ns, name, "False", timeout).await;
        assert_eq!(reason, "SecretSyncedError", "{name}: {message}");
        for fragment in expected {
            assert!(
                message.contains(fragment),
                "{name}: {message:?} should mention {fragment:?}"
            );
        }
        assert!(
            secret_data(kube, ns, name).await.is_none(),
            "{name} must not produce a Secret"
        );
    }

    // The healthy one still follows events while the others fail.
    let rotated = aws
        .rotate(
            &good,
            &json!({"user": "u1", "pass": "good-value-2"}).to_string(),
        )
        .await;
    aws.publish_label_updated(&bus, &good, &rotated).await;
    wait_for_secret_value(
        kube,
        ns,
        "good",
        "value",
        "good-value-2",
        Duration::from_secs(10),
    )
    .await;
    let (reason, _) = wait_for_ready(kube, ns, "good", "True", timeout).await;
    assert_eq!(reason, "SecretSynced");

    controller.assert_logs_hide(&["good-value-1", "good-value-2", "plain-text-value-xyz"]);
}
