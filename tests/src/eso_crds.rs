//! Running a test on External Secrets Operator's CRDs (`tests/fixtures/eso-crds/`) instead of
//! ours, then putting ours back. CRDs are cluster-wide: only the serialized `eso` test binary
//! uses this, and ours are restored even when the test fails.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::kube_helpers::install_crds;
use crate::stack::workspace_root;
use crate::{Stack, wait_for};

/// Runs `body` with ESO's CRDs installed in place of ours, and restores ours afterwards,
/// whether `body` passed or panicked.
pub async fn with_eso_crds<F>(stack: &Stack, body: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    replace_crds(
        &stack.kube,
        &workspace_root().join("tests/fixtures/eso-crds"),
    )
    .await;
    wait_for_schema(&stack.kube, Schema::Eso).await;
    let outcome = tokio::spawn(body).await;
    replace_crds(&stack.kube, &workspace_root().join("infra/crds")).await;
    install_crds(&stack.kube).await;
    wait_for_schema(&stack.kube, Schema::Ours).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Replaces (PUT, not apply: no field of the other schema may survive) each CRD of `dir`.
async fn replace_crds(client: &Client, dir: &Path) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for entry in std::fs::read_dir(dir).expect("CRD directory") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let mut crd: CustomResourceDefinition =
            yaml_serde::from_str(&std::fs::read_to_string(&path).expect("read CRD"))
                .expect("CRD YAML");
        let name = crd.name_any();
        let current = api.get_opt(&name).await.expect("read the CRD");
        let result = match current {
            Some(current) => {
                crd.metadata.resource_version = current.resource_version();
                api.replace(&name, &PostParams::default(), &crd).await
            }
            None => api.create(&PostParams::default(), &crd).await,
        };
        result.unwrap_or_else(|e| panic!("replace CRD {name} with {}: {e}", path.display()));
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Schema {
    Eso,
    Ours,
}

/// Waits until the apiserver validates ExternalSecrets with `schema`: ESO's refuses a
/// `syncWindows.kind` of `Deny` (its enum is `allow`, `deny`), ours keeps `syncWindows` as is.
/// The probe is a dry run in `default`, which always exists: the test's own namespace is
/// deleted when its tenant goes, before ours are restored.
async fn wait_for_schema(client: &Client, schema: Schema) {
    let gvk = GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(&gvk, "externalsecrets"),
    );
    let probe: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": "schema-probe"},
        "spec": {
            "secretStoreRef": {"name": "aws", "kind": "SecretStore"},
            "syncWindows": {"kind": "Deny", "windows": [{"schedule": "@daily", "duration": "1h"}]},
        },
    }))
    .expect("probe object");
    wait_for(
        &format!("the apiserver to serve {schema:?} ExternalSecret schema"),
        Duration::from_secs(30),
        || {
            let api = api.clone();
            let probe = probe.clone();
            async move {
                let params = PostParams {
                    dry_run: true,
                    ..Default::default()
                };
                let served = match api.create(&params, &probe).await {
                    Ok(_) => Schema::Ours,
                    Err(kube::Error::Api(status)) if status.code == 422 => Schema::Eso,
                    Err(_) => return None,
                };
                (served == schema).then_some(())
            }
        },
    )
    .await;
}
