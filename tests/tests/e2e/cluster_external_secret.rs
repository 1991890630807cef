//! ClusterExternalSecrets on a real apiserver: an ExternalSecret stamped into every namespace
//! the selectors pick, removed from a namespace that stops matching, added to a new one at
//! once, and collected with the ClusterExternalSecret.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use secret_bridge_controller::api::ClusterExternalSecret;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::{TEST_MANAGER, external_secret};
use secret_bridge_tests::manifest::{self, Manifest};
use secret_bridge_tests::wait::{wait_for_external_secret_gone, wait_for_secret_value};
use secret_bridge_tests::{Stack, Tenant, unique, wait_for};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn label_namespace(stack: &Stack, name: &str, labels: serde_json::Value) {
    Api::<Namespace>::all(stack.kube.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await
        .expect("label Namespace");
}

#[tokio::test]
async fn cluster_external_secret_follows_namespace_selectors() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "ces", "us-east-1").await;
    let key = unique("ces");
    aws.upsert_secret(&key, r#"{"pass":"ces-value-1"}"#).await;
    let team = unique("team");
    let [blue1, blue2, other, taken] = ["ces-a", "ces-b", "ces-c", "ces-d"].map(unique);
    for ns in [&blue1, &blue2, &other, &taken] {
        tenant.other_namespace(ns).await;
    }
    for ns in [&blue1, &blue2, &taken] {
        label_namespace(&stack, ns, json!({ "team": team })).await;
    }
    let store = unique("ces-store");
    tenant
        .cluster_secret_store(&store)
        .static_keys_in(&tenant.namespace)
        .apply(kube, &tenant.namespace)
        .await;
    // An ExternalSecret of the same name that the ClusterExternalSecret does not own.
    manifest::ExternalSecret::new("shared")
        .cluster_secret_store(&store)
        .extract(&key)
        .apply(kube, &taken)
        .await;
    let controller = tenant.start_controller(&stack, &["--cluster-external-secrets", "true"]);

    let ces_name = unique("ces");
    let ces: ClusterExternalSecret = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ClusterExternalSecret",
        "metadata": {"name": ces_name},
        "spec": {
            "externalSecretName": "shared",
            "externalSecretMetadata": {"labels": {"from": "ces"}},
            "namespaceSelectors": [{"matchLabels": {"team": team}}],
            "namespaces": [other.clone()],
            "refreshTime": "1m",
            "externalSecretSpec": {
                "secretStoreRef": {"name": store, "kind": "ClusterSecretStore"},
                "refreshInterval": "1h",
                "dataFrom": [{"extract": {"key": key}}],
            },
        },
    }))
    .unwrap();
    let api = Api::<ClusterExternalSecret>::all(kube.clone());
    api.patch(
        &ces_name,
        &PatchParams::apply(TEST_MANAGER).force(),
        &Patch::Apply(&ces),
    )
    .await
    .expect("apply ClusterExternalSecret");

    for ns in [&blue1, &blue2, &other] {
        wait_for_secret_value(kube, ns, "shared", "pass", "ces-value-1", TIMEOUT).await;
        let es = external_secret(kube, ns, "shared").await.unwrap();
        assert_eq!(es.labels()["from"], "ces");
        assert_eq!(es.owner_references()[0].kind, "ClusterExternalSecret");
    }
    let status = |expected: Vec<String>| {
        let api = api.clone();
        let ces_name = ces_name.clone();
        let taken = taken.clone();
        async move {
            wait_for("the ClusterExternalSecret status", TIMEOUT, || async {
                let status = api.get(&ces_name).await.ok()?.status?;
                let failed: Vec<_> = status
                    .failed_namespaces
                    .iter()
                    .map(|f| (f.namespace.clone(), f.reason.clone().unwrap_or_default()))
                    .collect();
                (status.provisioned_namespaces == expected
                    && failed
                        == [(
                            taken.clone(),
                            "external secret already exists in namespace".to_owned(),
                        )])
                .then_some(status)
            })
            .await
        }
    };
    let mut expected = vec![blue1.clone(), blue2.clone(), other.clone()];
    expected.sort();
    let first = status(expected).await;
    assert_eq!(first.external_secret_name.as_deref(), Some("shared"));
    assert_eq!(first.conditions[0].status, "False");
    assert_eq!(
        first.conditions[0].message.as_deref(),
        Some("one or more namespaces failed")
    );
    // The ExternalSecret that was there first is left alone.
    assert!(
        external_secret(kube, &taken, "shared")
            .await
            .unwrap()
            .owner_references()
            .is_empty()
    );

    // A namespace that stops matching loses its ExternalSecret (and, through it, the Secret).
    label_namespace(&stack, &blue1, json!({ "team": null })).await;
    wait_for_external_secret_gone(kube, &blue1, "shared", "namespace unselected", TIMEOUT).await;
    let mut expected = vec![blue2.clone(), other.clone()];
    expected.sort();
    status(expected).await;

    // A new matching namespace gets it at once (the Namespace watch, not the 1m refresh).
    let late = unique("ces-e");
    tenant.other_namespace(&late).await;
    label_namespace(&stack, &late, json!({ "team": team })).await;
    wait_for_secret_value(kube, &late, "shared", "pass", "ces-value-1", TIMEOUT).await;

    // Deleting the ClusterExternalSecret removes what it created.
    api.delete(&ces_name, &DeleteParams::default())
        .await
        .expect("delete ClusterExternalSecret");
    for ns in [&blue2, &other, &late] {
        wait_for_external_secret_gone(kube, ns, "shared", "collected with its owner", TIMEOUT)
            .await;
    }
    assert!(external_secret(kube, &taken, "shared").await.is_some());

    controller.assert_logs_hide(&["ces-value-1"]);
}
