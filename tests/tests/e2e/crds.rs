//! The CRDs on the real apiserver: what ESO's schemas refuse, ours refuse at admission (with
//! a message naming the field), and ESO's defaults are filled in, so `kubectl get es` shows
//! the refresh interval that applies.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use secret_bridge_tests::kube_helpers::{TEST_MANAGER, ensure_namespace, install_crds};
use secret_bridge_tests::{Stack, unique};
use serde_json::{Value, json};

/// The namespace a test made, deleted when the test ends (even when it fails).
struct TestNamespace {
    name: String,
    kubectl: String,
    kubeconfig: String,
}

impl TestNamespace {
    async fn new(stack: &Stack, prefix: &str) -> TestNamespace {
        let name = unique(prefix);
        ensure_namespace(&stack.kube, &name).await;
        TestNamespace {
            name,
            kubectl: stack.env["KUBECTL"].clone(),
            kubeconfig: stack.env["KUBECONFIG"].clone(),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.kubectl)
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .env("KUBECONFIG", &self.kubeconfig)
            .output();
    }
}

fn api(client: &Client, kind: &str, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("external-secrets.io", "v1", kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a valid object")
}

/// An ExternalSecret spec that is valid, with `field` (a dotted path) set to `value`.
fn external_secret_with(path: &[&str], value: Value) -> Value {
    let mut spec = json!({
        "secretStoreRef": {"name": "aws", "kind": "SecretStore"},
        "target": {},
        "data": [{"secretKey": "value", "remoteRef": {"key": "db"}}],
        "dataFrom": [{"find": {"name": {"regexp": "^db"}}}],
    });
    set(&mut spec, path, value);
    spec
}

fn store_with(path: &[&str], value: Value) -> Value {
    let mut spec = json!({
        "provider": {"aws": {
            "service": "SecretsManager",
            "region": "us-east-1",
            "auth": {"secretRef": {
                "accessKeyIDSecretRef": {"name": "aws-keys", "key": "access-key"},
                "secretAccessKeySecretRef": {"name": "aws-keys", "key": "secret-access-key"},
            }},
        }},
    });
    set(&mut spec, path, value);
    spec
}

fn set(root: &mut Value, path: &[&str], value: Value) {
    let (last, parents) = path.split_last().expect("a path");
    let mut at = root;
    for key in parents {
        at = match key.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*key],
        };
    }
    at[*last] = value;
}

#[tokio::test]
async fn the_apiserver_refuses_invalid_manifests_naming_the_field() {
    let stack = Stack::connect().await;
    install_crds(&stack.kube).await;
    let namespace = TestNamespace::new(&stack, "crd-invalid").await;
    // Kubernetes 1.20 names a field inside a list without its index (`spec.data.secretKey`).
    let cases = [
        (
            "ExternalSecret",
            external_secret_with(&["target", "creationPolicy"], json!("Ownr")),
            "spec.target.creationPolicy",
        ),
        (
            "ExternalSecret",
            external_secret_with(&["target", "deletionPolicy"], json!("Keep")),
            "spec.target.deletionPolicy",
        ),
        (
            "ExternalSecret",
            external_secret_with(&["refreshPolicy"], json!("Sometimes")),
            "spec.refreshPolicy",
        ),
        (
            "ExternalSecret",
            external_secret_with(&["secretStoreRef", "kind"], json!("Store")),
            "spec.secretStoreRef.kind",
        ),
        (
            "ExternalSecret",
            external_secret_with(&["secretStoreRef", "name"], json!("Not_A_Name")),
            "spec.secretStoreRef.name",
        ),
        (
            "ExternalSecret",
            external_secret_with(&["data", "0", "secretKey"], json!("a/b")),
            "spec.data.secretKey",
        ),
        (
            "ExternalSecret",
            external_secret_with(
                &["data", "0", "remoteRef", "decodingStrategy"],
                json!("base64"),
            ),
            "spec.data.remoteRef.decodingStrategy",
        ),
        (
            "ExternalSecret",
            external_secret_with(&["data", "0", "remoteRef", "metadataPolicy"], json!("All")),
            "spec.data.remoteRef.metadataPolicy",
        ),
        (
            "ExternalSecret",
            external_secret_with(
                &["dataFrom", "0", "find", "conversionStrategy"],
                json!("Ascii"),
            ),
            "spec.dataFrom.find.conversionStrategy",
        ),
        (
            "ExternalSecret",
            external_secret_with(
                &["target", "template"],
                json!({"engineVersion": "v3", "mergePolicy": "Replace"}),
            ),
            "spec.target.template.engineVersion",
        ),
        (
            "SecretStore",
            store_with(&["provider", "aws", "service"], json!("SecretManager")),
            "spec.provider.aws.service",
        ),
        (
            "SecretStore",
            store_with(
                &[
                    "provider",
                    "aws",
                    "auth",
                    "secretRef",
                    "accessKeyIDSecretRef",
                    "name",
                ],
                json!("AWS Keys"),
            ),
            "spec.provider.aws.auth.secretRef.accessKeyIDSecretRef.name",
        ),
        (
            "SecretStore",
            store_with(&["provider", "aws", "sessionTagsPolicy"], json!("All")),
            "spec.provider.aws.sessionTagsPolicy",
        ),
    ];
    let mut admitted = Vec::new();
    for (i, (kind, spec, field)) in cases.into_iter().enumerate() {
        let name = format!("invalid-{i}");
        let result = api(&stack.kube, kind, &namespace.name)
            .create(&PostParams::default(), &object(kind, &name, spec))
            .await;
        match result {
            Err(kube::Error::Api(status)) if status.code == 422 => assert!(
                status.message.contains(field),
                "{kind} with an invalid {field}: the apiserver's message does not name the field: {}",
                status.message
            ),
            Err(other) => panic!("{kind} with an invalid {field}: unexpected error {other}"),
            Ok(_) => admitted.push(field),
        }
    }
    assert!(
        admitted.is_empty(),
        "the apiserver admitted invalid values of {admitted:?}"
    );
}

#[tokio::test]
async fn esos_defaults_are_filled_in_and_shown() {
    let stack = Stack::connect().await;
    install_crds(&stack.kube).await;
    let namespace = TestNamespace::new(&stack, "crd-defaults").await;
    let minimal = object(
        "ExternalSecret",
        "minimal",
        json!({
            "secretStoreRef": {"name": "aws"},
            "data": [{"secretKey": "value", "remoteRef": {"key": "db"}}],
        }),
    );
    let stored = api(&stack.kube, "ExternalSecret", &namespace.name)
        .patch(
            "minimal",
            &PatchParams::apply(TEST_MANAGER),
            &Patch::Apply(&minimal),
        )
        .await
        .expect("apply a minimal ExternalSecret");
    let spec = &stored.data["spec"];
    assert_eq!(spec["refreshInterval"], "1h0m0s", "{spec}");
    assert_eq!(
        spec["target"],
        json!({"creationPolicy": "Owner", "deletionPolicy": "Retain"}),
        "ESO's target defaults"
    );

    let output = std::process::Command::new(&stack.env["KUBECTL"])
        .args(["get", "externalsecret", "minimal", "-n", &namespace.name])
        .env("KUBECONFIG", &stack.env["KUBECONFIG"])
        .output()
        .expect("run kubectl");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "kubectl get: {table}");
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let row = lines.next().unwrap_or_default();
    let column = header
        .find("REFRESH INTERVAL")
        .unwrap_or_else(|| panic!("no Refresh Interval column in {table}"));
    assert!(
        row.get(column..)
            .is_some_and(|rest| rest.starts_with("1h0m0s")),
        "the Refresh Interval column shows the default:\n{table}"
    );
}
