//! The target Secret as ESO writes it, on a real apiserver: creation policies (Merge into an
//! existing Secret, None, Orphan, Owner), immutable Secrets, refresh policies, Events and
//! templates.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use secret_bridge_controller::api::ExternalSecret;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::*;
use secret_bridge_tests::manifest::Manifest;
use secret_bridge_tests::wait::{
    refresh_time, wait_for_event, wait_for_ready, wait_for_secret_gone,
};
use secret_bridge_tests::{Stack, Tenant, unique, wait_for};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn secret(stack: &Stack, namespace: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(stack.kube.clone(), namespace)
        .get_opt(name)
        .await
        .expect("read Secret")
}

async fn wait_for_secret(stack: &Stack, namespace: &str, name: &str) -> Secret {
    wait_for(&format!("Secret {namespace}/{name}"), TIMEOUT, || {
        secret(stack, namespace, name)
    })
    .await
}

fn keys(data: &BTreeMap<String, String>) -> Vec<&str> {
    data.keys().map(String::as_str).collect()
}

async fn patch_metadata(stack: &Stack, namespace: &str, name: &str, metadata: serde_json::Value) {
    Api::<ExternalSecret>::namespaced(stack.kube.clone(), namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": metadata })),
        )
        .await
        .expect("patch ExternalSecret metadata");
}

#[tokio::test]
async fn creation_policies_and_immutable_secrets_as_eso() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "target", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let shared = unique("target-shared");
    let frozen = unique("target-frozen");
    aws.upsert_secret(&shared, r#"{"user":"u1","pass":"target-value-1"}"#)
        .await;
    aws.upsert_secret(&frozen, r#"{"pass":"frozen-value-1"}"#)
        .await;
    // Someone else's Secret, to merge into.
    put_secret(kube, ns, "existing", &[("other", "kept")]).await;
    let controller = tenant.start_controller(&stack, &[]);

    let shared_es = |name: &str| tenant.external_secret(name).extract(&shared);
    shared_es("owner")
        .labels(json!({"team": "blue"}))
        .annotations(json!({"note": "copied"}))
        .refresh_interval("1h")
        .apply(kube, ns)
        .await;
    for (name, target) in [
        (
            "merge",
            json!({"name": "existing", "creationPolicy": "Merge"}),
        ),
        (
            "merge-missing",
            json!({"name": "absent", "creationPolicy": "Merge"}),
        ),
        ("none", json!({"creationPolicy": "None"})),
        ("orphan", json!({"creationPolicy": "Orphan"})),
    ] {
        shared_es(name).target(target).apply(kube, ns).await;
    }
    tenant
        .external_secret("immutable")
        .refresh_interval("1s")
        .target(json!({"immutable": true}))
        .extract(&frozen)
        .apply(kube, ns)
        .await;

    // Owner: owned, labelled and hashed as ESO; the ExternalSecret's labels and annotations
    // are copied; a `Created` Event.
    let owned = wait_for_secret(&stack, ns, "owner").await;
    let es = external_secret(kube, ns, "owner").await.unwrap();
    let owners = owned.owner_references();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "ExternalSecret");
    assert_eq!(owners[0].uid, es.uid().unwrap());
    assert_eq!(owners[0].controller, Some(true));
    assert_eq!(owned.labels()["team"], "blue");
    assert_eq!(
        owned.labels()["reconcile.external-secrets.io/managed"],
        "true"
    );
    assert_eq!(
        owned.labels()["reconcile.external-secrets.io/created-by"].len(),
        56,
        "SHA3-224 of namespace/name, as ESO"
    );
    assert_eq!(owned.annotations()["note"], "copied");
    assert_eq!(
        owned.annotations()["reconcile.external-secrets.io/data-hash"].len(),
        56
    );
    assert_eq!(owned.type_.as_deref(), Some("Opaque"));
    let (reason, _) = wait_for_ready(kube, ns, "owner", "True", TIMEOUT).await;
    assert_eq!(reason, "SecretSynced");
    let status = external_secret(kube, ns, "owner")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.binding.unwrap().name, "owner");
    assert!(status.refresh_time.is_some());
    assert!(
        status
            .synced_resource_version
            .unwrap()
            .starts_with(&format!("{}-", es.metadata.generation.unwrap()))
    );
    wait_for_event(kube, ns, "owner", "Created", TIMEOUT).await;

    // A key someone else adds to an Owner Secret is removed, as ESO replaces the data.
    put_secret(kube, ns, "owner", &[("intruder", "x")]).await;
    wait_for("the foreign key removed", TIMEOUT, || async {
        let data = secret_data(kube, ns, "owner").await?;
        (keys(&data) == ["pass", "user"]).then_some(())
    })
    .await;

    // Merge: our keys join the existing ones; no owner.
    let merged = tenant
        .wait_for_value("existing", "pass", "target-value-1", TIMEOUT)
        .await;
    assert_eq!(keys(&merged), ["other", "pass", "user"]);
    assert!(
        secret(&stack, ns, "existing")
            .await
            .unwrap()
            .owner_references()
            .is_empty()
    );
    // Merge without a Secret to merge into: nothing created, Ready with SecretMissing.
    let (reason, message) = wait_for_ready(kube, ns, "merge-missing", "True", TIMEOUT).await;
    assert_eq!(reason, "SecretMissing");
    assert_eq!(
        message,
        "secret will not be created due to CreationPolicy=Merge"
    );
    assert!(secret(&stack, ns, "absent").await.is_none());
    // None: synced, nothing written.
    let (reason, _) = wait_for_ready(kube, ns, "none", "True", TIMEOUT).await;
    assert_eq!(reason, "SecretSynced");
    assert!(secret(&stack, ns, "none").await.is_none());

    // Orphan: no owner, so the Secret outlives its ExternalSecret; the Owner one does not.
    let orphan = wait_for_secret(&stack, ns, "orphan").await;
    assert!(orphan.owner_references().is_empty());
    assert!(
        !orphan
            .labels()
            .contains_key("reconcile.external-secrets.io/created-by")
    );
    delete_external_secret(kube, ns, "orphan").await;
    delete_external_secret(kube, ns, "owner").await;
    wait_for_secret_gone(kube, ns, "owner", "collected with its owner", TIMEOUT).await;
    assert!(secret(&stack, ns, "orphan").await.is_some());

    // Immutable: written once; as ESO, a new value in AWS is not applied to the existing
    // Secret and the sync still counts as done.
    let frozen_secret = wait_for_secret(&stack, ns, "immutable").await;
    assert_eq!(frozen_secret.immutable, Some(true));
    aws.upsert_secret(&frozen, r#"{"pass":"frozen-value-2"}"#)
        .await;
    let synced_before = external_secret(kube, ns, "immutable")
        .await
        .unwrap()
        .status
        .unwrap()
        .refresh_time;
    wait_for(
        "a refresh of the immutable ExternalSecret",
        TIMEOUT,
        || async {
            let status = external_secret(kube, ns, "immutable").await?.status?;
            (status.refresh_time != synced_before).then_some(())
        },
    )
    .await;
    let (reason, _) = wait_for_ready(kube, ns, "immutable", "True", TIMEOUT).await;
    assert_eq!(reason, "SecretSynced");
    assert_eq!(
        secret_data(kube, ns, "immutable").await.unwrap()["pass"],
        "frozen-value-1"
    );
    // A Secret someone else made immutable cannot take new data: that is an error.
    let sealed = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("sealed".into()),
            ..Default::default()
        },
        string_data: Some([("pass".to_owned(), "old".to_owned())].into()),
        immutable: Some(true),
        ..Default::default()
    };
    Api::<Secret>::namespaced(kube.clone(), ns)
        .create(&Default::default(), &sealed)
        .await
        .expect("create an immutable Secret");
    tenant
        .external_secret("into-sealed")
        .target(json!({"name": "sealed", "creationPolicy": "Merge"}))
        .extract(&frozen)
        .apply(kube, ns)
        .await;
    let (reason, message) = wait_for_ready(kube, ns, "into-sealed", "False", TIMEOUT).await;
    assert_eq!(reason, "SecretSyncedError");
    assert!(message.contains("immutable"), "{message}");
    assert_eq!(
        secret_data(kube, ns, "sealed").await.unwrap()["pass"],
        "old"
    );

    controller.assert_logs_hide(&["target-value-1", "frozen-value-1", "frozen-value-2"]);
}

#[tokio::test]
async fn refresh_policies_as_eso() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "refresh", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let key = unique("refresh");
    aws.upsert_secret(&key, r#"{"pass":"refresh-value-1"}"#)
        .await;
    let controller = tenant.start_controller(&stack, &[]);
    for (name, policy) in [
        ("periodic", "Periodic"),
        ("on-change", "OnChange"),
        ("once", "CreatedOnce"),
    ] {
        tenant
            .external_secret(name)
            .refresh_interval("1s")
            .refresh_policy(policy)
            .extract(&key)
            .apply(kube, ns)
            .await;
        tenant
            .wait_for_value(name, "pass", "refresh-value-1", TIMEOUT)
            .await;
    }

    // A new value in AWS: only Periodic reads it.
    aws.upsert_secret(&key, r#"{"pass":"refresh-value-2"}"#)
        .await;
    tenant
        .wait_for_value("periodic", "pass", "refresh-value-2", TIMEOUT)
        .await;
    // The intervals keep coming and the controller acts on them: Periodic syncs three more
    // times. (Its `refreshTime` stays: those syncs changed nothing.)
    let syncs = format!(r#"externalsecret_sync_calls_total{{name="periodic",namespace="{ns}"}}"#);
    let synced = controller.wait_for_metric(&syncs, 1.0, TIMEOUT).await;
    let synced = controller
        .wait_for_metric(&syncs, synced + 3.0, TIMEOUT)
        .await;
    let refreshed = refresh_time(kube, ns, "periodic").await;
    controller
        .wait_for_metric(&syncs, synced + 2.0, TIMEOUT)
        .await;
    assert_eq!(refresh_time(kube, ns, "periodic").await, refreshed);
    for name in ["on-change", "once"] {
        assert_eq!(
            secret_data(kube, ns, name).await.unwrap()["pass"],
            "refresh-value-1",
            "{name} must not re-read AWS on its interval"
        );
    }

    // A label change is a change of the ExternalSecret: OnChange syncs, CreatedOnce does not.
    let once_reconciled = controller.reconciles_of("ExternalSecret", ns, "once");
    for name in ["on-change", "once"] {
        patch_metadata(&stack, ns, name, json!({"labels": {"touched": "yes"}})).await;
    }
    tenant
        .wait_for_value("on-change", "pass", "refresh-value-2", TIMEOUT)
        .await;
    // The controller has reconciled CreatedOnce since its label changed.
    wait_for(
        "a reconcile of once after its label change",
        TIMEOUT,
        || async {
            (controller.reconciles_of("ExternalSecret", ns, "once") > once_reconciled).then_some(())
        },
    )
    .await;
    assert_eq!(
        secret_data(kube, ns, "once").await.unwrap()["pass"],
        "refresh-value-1"
    );

    // CreatedOnce writes the Secret again when it is gone (as ESO: the Secret is not valid).
    Api::<Secret>::namespaced(kube.clone(), ns)
        .delete("once", &DeleteParams::default())
        .await
        .expect("delete Secret");
    tenant
        .wait_for_value("once", "pass", "refresh-value-2", TIMEOUT)
        .await;

    controller.assert_logs_hide(&["refresh-value-1", "refresh-value-2"]);
}

#[tokio::test]
async fn templates_render_type_metadata_and_data() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "template", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let key = unique("template");
    aws.upsert_secret(&key, r#"{"user":"admin","pass":"template-value-1"}"#)
        .await;
    apply_yaml(
        kube,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tpl\ndata:\n  config.ini: |\n    user={{ .user }}\n  pairs: |\n    shout: '{{ .user | upper }}'\n",
        ns,
    )
    .await;
    let controller = tenant.start_controller(&stack, &[]);
    tenant
        .external_secret("templated")
        .target(json!({"template": {
            "engineVersion": "v2",
            "type": "kubernetes.io/basic-auth",
            "metadata": {
                "labels": {"app": "{{ .user }}-app"},
                "annotations": {"fixed": "yes"},
            },
            "data": {
                "username": "{{ .user }}",
                "password": "{{ .pass }}",
                "url": "db://{{ .user }}@host/{{ .user | b64enc }}",
            },
            "templateFrom": [
                {"configMap": {"name": "tpl", "items": [
                    {"key": "config.ini"},
                    {"key": "pairs", "templateAs": "KeysAndValues"},
                ]}},
                {"literal": "owner: '{{ .user | lower }}'", "target": "Annotations"},
            ],
        }}))
        .extract(&key)
        .apply(kube, ns)
        .await;
    let data = tenant
        .wait_for_value("templated", "password", "template-value-1", TIMEOUT)
        .await;
    assert_eq!(
        keys(&data),
        ["config.ini", "password", "shout", "url", "username"]
    );
    assert_eq!(data["url"], "db://admin@host/YWRtaW4=");
    assert_eq!(data["config.ini"], "user=admin\n");
    assert_eq!(data["shout"], "ADMIN");
    let written = secret(&stack, ns, "templated").await.unwrap();
    assert_eq!(written.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(written.labels()["app"], "admin-app");
    assert_eq!(written.annotations()["fixed"], "yes");
    assert_eq!(written.annotations()["owner"], "admin");

    // A template error is reported without the values.
    tenant
        .external_secret("broken")
        .target(json!({"template": {"data": {"x": "{{ .missing }}"}}}))
        .extract(&key)
        .apply(kube, ns)
        .await;
    let (reason, message) = wait_for_ready(kube, ns, "broken", "False", TIMEOUT).await;
    assert_eq!(reason, "SecretSyncedError");
    assert!(message.contains("template"), "{message}");
    assert!(!message.contains("template-value-1"));
    controller.assert_logs_hide(&["template-value-1"]);
}
