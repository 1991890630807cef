//! The target Secret as ESO writes it, on a real apiserver: creation policies (Merge into an
//! existing Secret, None, Orphan, Owner), immutable Secrets, refresh policies, Events, and
//! ClusterExternalSecrets across namespaces.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Namespace, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use secret_bridge_controller::api::{ClusterExternalSecret, ExternalSecret};
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::*;
use secret_bridge_tests::{ControllerProcess, Stack, unique, wait_for};
use serde_json::json;

use crate::fixtures::Tenant;

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

/// The reasons of the Events recorded for the ExternalSecret `name`.
async fn event_reasons(stack: &Stack, namespace: &str, name: &str) -> Vec<String> {
    Api::<Event>::namespaced(stack.kube.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter_map(|e| e.reason)
        .collect()
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
    let controller = ControllerProcess::start(&stack, ns, &["--controller-class", &tenant.class]);

    let extract = |key: &str| format!("  dataFrom:\n    - extract: {{key: {key}}}\n");
    let with_target = |target: &str| format!("  target:\n{target}{}", extract(&shared));
    apply_yaml(
        kube,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: owner\n  labels: {{team: blue}}\n  annotations: {{note: copied}}\nspec:\n  secretStoreRef: {{name: aws, kind: SecretStore}}\n  refreshInterval: 1h\n{}",
            extract(&shared)
        ),
        ns,
    )
    .await;
    tenant
        .external_secret(
            &stack,
            "merge",
            &with_target("    name: existing\n    creationPolicy: Merge\n"),
        )
        .await;
    tenant
        .external_secret(
            &stack,
            "merge-missing",
            &with_target("    name: absent\n    creationPolicy: Merge\n"),
        )
        .await;
    tenant
        .external_secret(&stack, "none", &with_target("    creationPolicy: None\n"))
        .await;
    tenant
        .external_secret(
            &stack,
            "orphan",
            &with_target("    creationPolicy: Orphan\n"),
        )
        .await;
    tenant
        .external_secret(
            &stack,
            "immutable",
            &format!(
                "  refreshInterval: 1s\n  target:\n    immutable: true\n{}",
                extract(&frozen)
            ),
        )
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
    wait_for("a Created Event", TIMEOUT, || async {
        event_reasons(&stack, ns, "owner")
            .await
            .contains(&"Created".to_owned())
            .then_some(())
    })
    .await;

    // A key someone else adds to an Owner Secret is removed, as ESO replaces the data.
    put_secret(kube, ns, "owner", &[("intruder", "x")]).await;
    wait_for("the foreign key removed", TIMEOUT, || async {
        let data = secret_data(kube, ns, "owner").await?;
        (keys(&data) == ["pass", "user"]).then_some(())
    })
    .await;

    // Merge: our keys join the existing ones; no owner.
    let merged =
        wait_for_secret_value(kube, ns, "existing", "pass", "target-value-1", TIMEOUT).await;
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
    wait_for("the owned Secret garbage-collected", TIMEOUT, || async {
        secret(&stack, ns, "owner").await.is_none().then_some(())
    })
    .await;
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
        .external_secret(
            &stack,
            "into-sealed",
            &format!(
                "  target:\n    name: sealed\n    creationPolicy: Merge\n{}",
                extract(&frozen)
            ),
        )
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
    let controller = ControllerProcess::start(&stack, ns, &["--controller-class", &tenant.class]);
    let spec = |policy: &str| {
        format!(
            "  refreshInterval: 1s\n  refreshPolicy: {policy}\n  dataFrom:\n    - extract: {{key: {key}}}\n"
        )
    };
    for (name, policy) in [
        ("periodic", "Periodic"),
        ("on-change", "OnChange"),
        ("once", "CreatedOnce"),
    ] {
        tenant.external_secret(&stack, name, &spec(policy)).await;
        wait_for_secret_value(kube, ns, name, "pass", "refresh-value-1", TIMEOUT).await;
    }

    // A new value in AWS: only Periodic reads it.
    aws.upsert_secret(&key, r#"{"pass":"refresh-value-2"}"#)
        .await;
    wait_for_secret_value(kube, ns, "periodic", "pass", "refresh-value-2", TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["on-change", "once"] {
        assert_eq!(
            secret_data(kube, ns, name).await.unwrap()["pass"],
            "refresh-value-1",
            "{name} must not re-read AWS on its interval"
        );
    }

    // A label change is a change of the ExternalSecret: OnChange syncs, CreatedOnce does not.
    for name in ["on-change", "once"] {
        patch_metadata(&stack, ns, name, json!({"labels": {"touched": "yes"}})).await;
    }
    wait_for_secret_value(kube, ns, "on-change", "pass", "refresh-value-2", TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        secret_data(kube, ns, "once").await.unwrap()["pass"],
        "refresh-value-1"
    );

    // CreatedOnce writes the Secret again when it is gone (as ESO: the Secret is not valid).
    Api::<Secret>::namespaced(kube.clone(), ns)
        .delete("once", &DeleteParams::default())
        .await
        .expect("delete Secret");
    wait_for_secret_value(kube, ns, "once", "pass", "refresh-value-2", TIMEOUT).await;

    controller.assert_logs_hide(&["refresh-value-1", "refresh-value-2"]);
}

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
        ensure_namespace(kube, ns).await;
    }
    for ns in [&blue1, &blue2, &taken] {
        label_namespace(&stack, ns, json!({ "team": team })).await;
    }
    let store = unique("ces-store");
    apply_yaml(
        kube,
        &format!(
            r#"
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: {store}
spec:
  controller: {class}
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-keys, key: access-key, namespace: {ns}}}
          secretAccessKeySecretRef: {{name: aws-keys, key: secret-access-key, namespace: {ns}}}
"#,
            class = tenant.class,
            ns = tenant.namespace,
        ),
        &tenant.namespace,
    )
    .await;
    // An ExternalSecret of the same name that the ClusterExternalSecret does not own.
    apply_yaml(
        kube,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: shared\nspec:\n  secretStoreRef: {{name: {store}, kind: ClusterSecretStore}}\n  dataFrom:\n    - extract: {{key: {key}}}\n"
        ),
        &taken,
    )
    .await;
    let controller = ControllerProcess::start(
        &stack,
        &tenant.namespace,
        &[
            "--controller-class",
            &tenant.class,
            "--cluster-external-secrets",
            "true",
        ],
    );

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
    wait_for(
        "the ExternalSecret removed from the unselected namespace",
        TIMEOUT,
        || async {
            external_secret(kube, &blue1, "shared")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    let mut expected = vec![blue2.clone(), other.clone()];
    expected.sort();
    status(expected).await;

    // A new matching namespace gets it at once (the Namespace watch, not the 1m refresh).
    let late = unique("ces-e");
    ensure_namespace(kube, &late).await;
    label_namespace(&stack, &late, json!({ "team": team })).await;
    wait_for_secret_value(kube, &late, "shared", "pass", "ces-value-1", TIMEOUT).await;

    // Deleting the ClusterExternalSecret removes what it created.
    api.delete(&ces_name, &DeleteParams::default())
        .await
        .expect("delete ClusterExternalSecret");
    for ns in [&blue2, &other, &late] {
        wait_for(
            "the owned ExternalSecret garbage-collected",
            TIMEOUT,
            || async {
                external_secret(kube, ns, "shared")
                    .await
                    .is_none()
                    .then_some(())
            },
        )
        .await;
    }
    assert!(external_secret(kube, &taken, "shared").await.is_some());

    controller.assert_logs_hide(&["ces-value-1"]);
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
    let controller = ControllerProcess::start(&stack, ns, &["--controller-class", &tenant.class]);
    tenant
        .external_secret(
            &stack,
            "templated",
            &format!(
                r#"  target:
    template:
      engineVersion: v2
      type: kubernetes.io/basic-auth
      metadata:
        labels: {{app: "{{{{ .user }}}}-app"}}
        annotations: {{fixed: "yes"}}
      data:
        username: "{{{{ .user }}}}"
        password: "{{{{ .pass }}}}"
        url: "db://{{{{ .user }}}}@host/{{{{ .user | b64enc }}}}"
      templateFrom:
        - configMap:
            name: tpl
            items:
              - key: config.ini
              - key: pairs
                templateAs: KeysAndValues
        - literal: "owner: '{{{{ .user | lower }}}}'"
          target: Annotations
  dataFrom:
    - extract: {{key: {key}}}
"#
            ),
        )
        .await;
    let data = wait_for_secret_value(
        kube,
        ns,
        "templated",
        "password",
        "template-value-1",
        TIMEOUT,
    )
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
        .external_secret(
            &stack,
            "broken",
            &format!(
                "  target:\n    template:\n      data:\n        x: \"{{{{ .missing }}}}\"\n  dataFrom:\n    - extract: {{key: {key}}}\n"
            ),
        )
        .await;
    let (reason, message) = wait_for_ready(kube, ns, "broken", "False", TIMEOUT).await;
    assert_eq!(reason, "SecretSyncedError");
    assert!(message.contains("template"), "{message}");
    assert!(!message.contains("template-value-1"));
    controller.assert_logs_hide(&["template-value-1"]);
}
