//! The tutorial's fixed names and manifests, shared by its end-to-end test and the demo.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Stack;
use crate::aws::Aws;
use crate::kube_helpers::*;
use crate::manifest::{ACCESS_KEY, SECRET_ACCESS_KEY};
use crate::wait::{wait_for, wait_for_secret_value};

pub const STORE: &str = include_str!("../../infra/examples/tutorial/cluster-secret-store.yaml");
pub const EXTERNAL_SECRET: &str =
    include_str!("../../infra/examples/tutorial/external-secret.yaml");

/// The AWS secret (and ExternalSecret, and Secret) of the tutorial, and its first password.
pub const SECRET: &str = "app-secret";
pub const FIRST_PASSWORD: &str = "abc123xyz456";

/// Writes the tutorial's AWS secret with [`FIRST_PASSWORD`]. It is kept: its name is fixed,
/// and a demo or another run may be reading it.
pub async fn put_aws_secret(aws: &Aws) {
    aws.upsert_kept_secret(
        SECRET,
        &format!(r#"{{"username":"bob","password":"{FIRST_PASSWORD}"}}"#),
    )
    .await;
}

/// Waits until the Secret `app/app-secret` holds `password`; returns its data.
pub async fn wait_for_password(
    stack: &Stack,
    password: &str,
    timeout: Duration,
) -> BTreeMap<String, String> {
    wait_for_secret_value(&stack.kube, "app", SECRET, "password", password, timeout).await
}

/// Removes a previous run's `app/app-secret` (and, through garbage collection, its Secret),
/// then creates namespace `app` and the credentials Secret `default/awssm-secret` with the
/// emulator's keys, as the tutorial asks its reader to.
pub async fn prepare(stack: &Stack) {
    let kube = &stack.kube;
    install_crds(kube).await;
    delete_external_secret(kube, "app", "app-secret").await;
    wait_for(
        "a previous app/app-secret to be gone",
        Duration::from_secs(60),
        || async {
            (external_secret(kube, "app", "app-secret").await.is_none()
                && secret_data(kube, "app", "app-secret").await.is_none())
            .then_some(())
        },
    )
    .await;
    ensure_namespace(kube, "app").await;
    put_secret(
        kube,
        "default",
        "awssm-secret",
        &[
            (ACCESS_KEY, &stack.env["AWS_ACCESS_KEY_ID"]),
            (SECRET_ACCESS_KEY, &stack.env["AWS_SECRET_ACCESS_KEY"]),
        ],
    )
    .await;
}

/// Applies the tutorial's manifests, unchanged.
pub async fn apply(stack: &Stack) {
    apply_yaml(&stack.kube, STORE, "default").await;
    apply_yaml(&stack.kube, EXTERNAL_SECRET, "app").await;
}
