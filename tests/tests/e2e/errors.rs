//! Bad references give `Ready=False` with a message that says what is wrong, while the other
//! ExternalSecrets keep syncing — including by events; an ExternalSecret whose store is
//! missing is left alone by a controller with a class.

use std::time::Duration;

use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::{external_secret, secret_data};
use secret_bridge_tests::manifest::{self, Manifest};
use secret_bridge_tests::wait::wait_for_ready;
use secret_bridge_tests::{Stack, Tenant, unique};
use serde_json::json;

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
    let controller = tenant.start_controller(&stack, &["--queue-url", &queue]);

    for (name, key, property) in [
        ("good", &good, "pass"),
        ("wrong-key", &missing, "pass"),
        ("not-json", &plain, "user"),
    ] {
        tenant
            .external_secret(name)
            .refresh_interval("1h")
            .data_property("value", key, property)
            .apply(kube, ns)
            .await;
    }
    tenant
        .external_secret("bad-interval")
        .refresh_interval("soon")
        .extract(&good)
        .apply(kube, ns)
        .await;
    manifest::ExternalSecret::new("missing-store")
        .secret_store("no-such-store")
        .extract(&good)
        .apply(kube, ns)
        .await;

    let timeout = Duration::from_secs(30);
    tenant
        .wait_for_value("good", "value", "good-value-1", timeout)
        .await;
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
    // A controller with a class has no proof that an ExternalSecret whose store is missing
    // is its own (beside ESO it may not be): it leaves it alone. It was reconciled with the
    // others above, which all have their status by now.
    let untouched = external_secret(kube, ns, "missing-store")
        .await
        .expect("ExternalSecret missing-store");
    assert!(
        untouched.ready_condition().is_none(),
        "missing-store: no status from a controller that cannot prove it is its own: {:?}",
        untouched.status
    );
    assert!(secret_data(kube, ns, "missing-store").await.is_none());

    // The healthy one still follows events while the others fail.
    let rotated = aws
        .rotate(
            &good,
            &json!({"user": "u1", "pass": "good-value-2"}).to_string(),
        )
        .await;
    aws.publish_label_updated(&bus, &good, &rotated).await;
    tenant
        .wait_for_value("good", "value", "good-value-2", Duration::from_secs(10))
        .await;
    let (reason, _) = wait_for_ready(kube, ns, "good", "True", timeout).await;
    assert_eq!(reason, "SecretSynced");

    controller.assert_logs_hide(&["good-value-1", "good-value-2", "plain-text-value-xyz"]);
}
