//! Stores and their ExternalSecrets: with `--flood-gate`, a store that is not `Ready` holds
//! its ExternalSecrets back and they say why; a store is checked again as soon as its
//! credentials Secret changes, and its ExternalSecrets follow at once. A controller with a
//! class leaves an ExternalSecret whose store is missing alone, and serves it as soon as the
//! store (of its class) appears.

use std::time::Duration;

use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::{external_secret, put_secret, secret_data};
use secret_bridge_tests::manifest::{ACCESS_KEY, SECRET_ACCESS_KEY};
use secret_bridge_tests::wait::wait_for_ready;
use secret_bridge_tests::{Stack, Tenant, unique};

/// Well under the minute after which a store that is not ready is checked again anyway, and
/// the ExternalSecret's own retries (which the flood gate fails while the store is not ready).
const AT_ONCE: Duration = Duration::from_secs(15);

#[tokio::test]
async fn the_flood_gate_holds_external_secrets_until_their_store_is_ready() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    // The tenant's namespace gets the emulator's keys only later, in another Secret.
    let tenant = Tenant::new(&stack, "flood-gate", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let keys = "late-keys";
    tenant
        .apply(
            &tenant
                .secret_store("gated")
                .region("us-east-1")
                .static_keys_from(keys, None),
        )
        .await;
    let secret = unique("flood-gate-value");
    aws.upsert_secret(&secret, "flood-gate-value-1").await;
    let _controller = tenant.start_controller(&stack, &["--flood-gate"]);

    tenant
        .apply(
            &tenant
                .external_secret("app")
                .secret_store("gated")
                .refresh_interval("1h")
                .data("value", &secret),
        )
        .await;
    let (reason, message) = wait_for_ready(kube, ns, "app", "False", AT_ONCE).await;
    assert_eq!(reason, "SecretSyncedError", "{message}");
    assert!(
        message.contains("SecretStore \"gated\" is not ready"),
        "the ExternalSecret says the flood gate holds it: {message}"
    );
    assert!(secret_data(kube, ns, "app").await.is_none());

    // The credentials arrive: the store is checked at once, then its ExternalSecret synced.
    put_keys_as(&stack, ns, keys).await;
    tenant
        .wait_for_value("app", "value", "flood-gate-value-1", AT_ONCE)
        .await;
}

/// Writes the emulator's keys into Secret `name` of `namespace`.
async fn put_keys_as(stack: &Stack, namespace: &str, name: &str) {
    put_secret(
        &stack.kube,
        namespace,
        name,
        &[
            (ACCESS_KEY, &stack.env["AWS_ACCESS_KEY_ID"]),
            (SECRET_ACCESS_KEY, &stack.env["AWS_SECRET_ACCESS_KEY"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_external_secret_without_its_store_is_left_alone_until_the_store_appears() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "hands-off", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let secret = unique("hands-off-value");
    aws.upsert_secret(&secret, "hands-off-value-1").await;
    let _controller = tenant.start_controller(&stack, &[]);

    let orphan = tenant
        .external_secret("orphan")
        .secret_store("late")
        .refresh_interval("1h")
        .data("value", &secret);
    tenant.apply(&orphan).await;
    // Applied after it: once this one is synced, the controller has seen both.
    tenant
        .apply(
            &tenant
                .external_secret("marker")
                .refresh_interval("1h")
                .data("value", &secret),
        )
        .await;
    tenant
        .wait_for_value("marker", "value", "hands-off-value-1", AT_ONCE)
        .await;
    let untouched = external_secret(kube, ns, "orphan")
        .await
        .expect("ExternalSecret orphan");
    assert!(
        untouched.status.is_none(),
        "no status on an ExternalSecret whose store is missing: {:?}",
        untouched.status
    );

    // The store appears (of our class): its ExternalSecret is served at once, although the
    // controller scheduled no retry for it.
    tenant
        .apply(
            &tenant
                .secret_store("late")
                .region("us-east-1")
                .static_keys(),
        )
        .await;
    tenant
        .wait_for_value("orphan", "value", "hands-off-value-1", AT_ONCE)
        .await;
}
