//! Applying manifests and reading results on the real apiserver.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use secret_bridge_controller::api::ExternalSecret;
use serde::Deserialize;

use crate::stack::workspace_root;
use crate::wait_for;

pub const TEST_MANAGER: &str = "secret-bridge-tests";

/// Applies every document of a YAML manifest with server-side apply (like `kubectl apply
/// --server-side`), in `default_namespace` when a namespaced document names none.
pub async fn apply_yaml(client: &Client, yaml: &str, default_namespace: &str) {
    for document in yaml_serde::Deserializer::from_str(yaml) {
        let value = serde_json::Value::deserialize(document).expect("valid YAML");
        if value.is_null() {
            continue;
        }
        apply_value(client, value, default_namespace).await;
    }
}

/// Applies one object with server-side apply, in `default_namespace` when it is namespaced
/// and names none.
pub async fn apply_value(client: &Client, value: serde_json::Value, default_namespace: &str) {
    let mut object: DynamicObject =
        serde_json::from_value(value).expect("manifest document is an object");
    let types = object
        .types
        .clone()
        .expect("manifest document has apiVersion and kind");
    let gvk = GroupVersionKind::try_from(&types).expect("valid apiVersion");
    let plural = format!("{}s", gvk.kind.to_lowercase());
    let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
    let cluster_scoped = matches!(
        gvk.kind.as_str(),
        "Namespace"
            | "ClusterSecretStore"
            | "CustomResourceDefinition"
            | "ClusterRole"
            | "ClusterRoleBinding"
    );
    let api: Api<DynamicObject> = if cluster_scoped {
        Api::all_with(client.clone(), &resource)
    } else {
        let namespace = object
            .namespace()
            .unwrap_or_else(|| default_namespace.to_owned());
        object.metadata.namespace = Some(namespace.clone());
        Api::namespaced_with(client.clone(), &namespace, &resource)
    };
    let name = object.name_any();
    api.patch(
        &name,
        &PatchParams::apply(TEST_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {} {name}: {e}", gvk.kind));
}

/// Installs the committed CRDs and waits until the apiserver serves them.
pub async fn install_crds(client: &Client) {
    let dir = workspace_root().join("infra/crds");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("infra/crds") {
        let path = entry.expect("dir entry").path();
        let crd: CustomResourceDefinition =
            yaml_serde::from_str(&std::fs::read_to_string(&path).expect("read CRD"))
                .expect("CRD YAML");
        let api = Api::<CustomResourceDefinition>::all(client.clone());
        api.patch(
            &crd.name_any(),
            &PatchParams::apply(TEST_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("install {}: {e}", path.display()));
        names.push(crd.name_any());
    }
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for name in names {
        wait_for(
            &format!("CRD {name} established"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            },
        )
        .await;
    }
}

pub async fn ensure_namespace(client: &Client, name: &str) {
    let namespace = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(TEST_MANAGER).force(),
            &Patch::Apply(&namespace),
        )
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

/// Creates or replaces an Opaque Secret with the given string data.
pub async fn put_secret(client: &Client, namespace: &str, name: &str, data: &[(&str, &str)]) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        string_data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(TEST_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap_or_else(|e| panic!("write Secret {namespace}/{name}: {e}"));
}

/// The Secret's data as UTF-8 strings, if it exists.
pub async fn secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Option<std::collections::BTreeMap<String, String>> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .ok()??;
    Some(
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect(),
    )
}

pub async fn external_secret(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Option<ExternalSecret> {
    Api::<ExternalSecret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .ok()?
}

pub async fn delete_external_secret(client: &Client, namespace: &str, name: &str) {
    let api = Api::<ExternalSecret>::namespaced(client.clone(), namespace);
    let _ = api.delete(name, &DeleteParams::default()).await;
}
