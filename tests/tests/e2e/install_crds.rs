//! `scripts/install-crds` on the real apiserver: it installs CRDs that are missing and
//! upgrades its own, but refuses to replace CRDs of the same name that External Secrets
//! Operator's Helm release installed, unless given `--force`.
//!
//! The shared stack's `external-secrets.io` CRDs serve every other test, so this test never
//! touches them: it runs the script on a copy of our ExternalSecret CRD renamed into a group of
//! its own (the script decides by names and marks, not by group).

use std::path::Path;
use std::process::Output;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use secret_bridge_tests::stack::workspace_root;
use secret_bridge_tests::{Stack, unique};

/// Deletes the test's CRD when the test ends, even when it fails.
struct TestCrd {
    name: String,
    kubectl: String,
    kubeconfig: String,
}

impl Drop for TestCrd {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.kubectl)
            .args([
                "delete",
                "crd",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .env("KUBECONFIG", &self.kubeconfig)
            .output();
    }
}

fn install_crds(stack: &Stack, dir: &Path, force: bool) -> Output {
    let mut command = std::process::Command::new(workspace_root().join("scripts/install-crds"));
    command
        .args(["--crds", dir.to_str().expect("UTF-8 path")])
        .env("KUBECTL", &stack.env["KUBECTL"])
        .env("KUBECONFIG", &stack.env["KUBECONFIG"]);
    if force {
        command.arg("--force");
    }
    command.output().expect("run scripts/install-crds")
}

async fn part_of(stack: &Stack, name: &str) -> Option<String> {
    Api::<CustomResourceDefinition>::all(stack.kube.clone())
        .get(name)
        .await
        .expect("read the test CRD")
        .labels()
        .get("app.kubernetes.io/part-of")
        .cloned()
}

#[tokio::test]
async fn install_crds_refuses_to_replace_esos_crds_unless_forced() {
    let stack = Stack::connect().await;
    let group = format!("{}.install-crds.test", unique("g"));
    let name = format!("externalsecrets.{group}");
    let ours = std::fs::read_to_string(workspace_root().join("infra/crds/externalsecrets.yaml"))
        .expect("read our CRD")
        .replace("external-secrets.io", &group);
    let dir = std::env::temp_dir().join(unique("install-crds"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("externalsecrets.yaml"), &ours).expect("write the test CRD");
    let _cleanup = TestCrd {
        name: name.clone(),
        kubectl: stack.env["KUBECTL"].clone(),
        kubeconfig: stack.env["KUBECONFIG"].clone(),
    };

    // ESO's chart installed the CRD first: its Helm marks, no label of ours.
    let mut eso: CustomResourceDefinition = yaml_serde::from_str(&ours).expect("CRD YAML");
    eso.metadata.labels = Some(
        [("external-secrets.io/component", "controller")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
    );
    eso.metadata.annotations = Some(
        [
            ("meta.helm.sh/release-name", "external-secrets"),
            ("meta.helm.sh/release-namespace", "external-secrets"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into(),
    );
    let crds = Api::<CustomResourceDefinition>::all(stack.kube.clone());
    crds.create(&PostParams::default(), &eso)
        .await
        .expect("create ESO's CRD");

    let refused = install_crds(&stack, &dir, false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "refused: {stderr}");
    assert!(
        stderr.contains(&name) && stderr.contains("Helm release external-secrets/external-secrets"),
        "the refusal names the CRD and its owner: {stderr}"
    );
    assert_eq!(part_of(&stack, &name).await, None, "ESO's CRD is unchanged");

    let forced = install_crds(&stack, &dir, true);
    assert!(
        forced.status.success(),
        "--force: {}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_eq!(
        part_of(&stack, &name).await.as_deref(),
        Some("secret-bridge")
    );

    // Ours now: an upgrade needs no --force; and a missing CRD is simply installed.
    let upgraded = install_crds(&stack, &dir, false);
    assert!(
        upgraded.status.success(),
        "upgrade: {}",
        String::from_utf8_lossy(&upgraded.stderr)
    );
    crds.delete(&name, &DeleteParams::default())
        .await
        .expect("delete the test CRD");
    secret_bridge_tests::wait_for(
        "the test CRD deleted",
        std::time::Duration::from_secs(30),
        || {
            let crds = crds.clone();
            let name = name.clone();
            async move { crds.get_opt(&name).await.ok()?.is_none().then_some(()) }
        },
    )
    .await;
    let fresh = install_crds(&stack, &dir, false);
    assert!(
        fresh.status.success(),
        "fresh install: {}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    assert_eq!(
        part_of(&stack, &name).await.as_deref(),
        Some("secret-bridge")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
