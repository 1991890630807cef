//! On ESO's CRDs (its defaults, its status schema without our `syncedVersions`), secret-bridge
//! syncs an ExternalSecret written for ESO, reports `Ready`, validates its store, and follows a
//! change.

use std::time::Duration;

use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::eso_crds::with_eso_crds;
use secret_bridge_tests::kube_helpers::external_secret;
use secret_bridge_tests::wait::wait_for_ready;
use secret_bridge_tests::{Stack, Tenant, unique};
use serde_json::json;

use crate::serial;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn secret_bridge_syncs_on_esos_crds() {
    let _serial = serial().await;
    let stack = Stack::connect().await;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "eso-schema", "us-east-1").await;
    let secret = unique("eso-schema");
    aws.upsert_secret(&secret, r#"{"user":"app","password":"eso-schema-1"}"#)
        .await;

    let inside = stack.clone();
    with_eso_crds(&stack, async move {
        let stack = inside;
        let kube = &stack.kube;
        let ns = tenant.namespace.as_str();
        let _controller = tenant.start_controller(&stack, &[]);
        // As ESO's docs write it: no refreshInterval, no target; ESO's schema fills them in.
        let app = tenant.external_secret("app").extract(&secret);
        tenant.apply(&app).await;
        tenant
            .wait_for_value("app", "password", "eso-schema-1", TIMEOUT)
            .await;
        let (reason, message) = wait_for_ready(kube, ns, "app", "True", TIMEOUT).await;
        assert_eq!(reason, "SecretSynced", "{message}");
        let es = external_secret(kube, ns, "app")
            .await
            .expect("ExternalSecret");
        assert_eq!(
            es.spec.refresh_interval.as_deref(),
            Some("1h0m0s"),
            "ESO's default"
        );
        let status = es.status.expect("status");
        assert!(
            status.synced_versions.is_empty(),
            "ESO's status schema prunes our syncedVersions, so this ran on ESO's CRDs: {status:?}"
        );
        wait_for_ready_store(&stack, ns).await;

        // A change in AWS and ESO's force-sync annotation: the new value is read.
        aws.upsert_secret(&secret, r#"{"user":"app","password":"eso-schema-2"}"#)
            .await;
        tenant
            .apply(&app.annotations(json!({"force-sync": "1"})))
            .await;
        tenant
            .wait_for_value("app", "password", "eso-schema-2", TIMEOUT)
            .await;
    })
    .await;
}

/// Waits until the tenant's SecretStore `aws` shows `Ready=True`, written under ESO's schema.
async fn wait_for_ready_store(stack: &Stack, namespace: &str) {
    use kube::Api;
    use secret_bridge_controller::api::SecretStore;
    let api = Api::<SecretStore>::namespaced(stack.kube.clone(), namespace);
    secret_bridge_tests::wait_for("SecretStore aws Ready", TIMEOUT, || {
        let api = api.clone();
        async move {
            let store = api.get("aws").await.ok()?;
            store
                .status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        }
    })
    .await;
}
