//! Playing the cases of one feature against one controller process.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::Tag;
use base64::Engine;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

use super::case::{AwsValue, Case, CaseSpec, Step, documents, load_cases};
use super::expect;
use super::placeholders::Values;
use crate::aws::Aws;
use crate::kube_helpers::{TEST_MANAGER, install_crds};
use crate::manifest::{Manifest, Store};
use crate::{ControllerProcess, Stack, unique};

/// The resources a case's expectations refer to by default.
#[derive(Debug, Clone, Default)]
pub struct Primary {
    pub namespace: String,
    /// The first ExternalSecret of the manifest.
    pub external_secret: Option<String>,
    /// Its target Secret's name (`spec.target.name`, else its own name).
    pub target: String,
    /// The ExternalSecret that should own the target.
    pub owner_name: Option<String>,
    pub cluster_external_secret: Option<String>,
}

struct Outcome {
    id: String,
    path: String,
    result: Result<(), String>,
    /// Secret values this case put in AWS, for the log check.
    values: Vec<String>,
}

/// Runs every case of `feature` (narrowed by `CONFORMANCE_FILTER`, a substring of
/// `<feature>/<case>`) at once against one controller started with `--controller-class` and
/// `extra_args`, then fails listing every failing case.
pub async fn run_feature(feature: &str, extra_args: &[&str]) {
    let filter = std::env::var("CONFORMANCE_FILTER").unwrap_or_default();
    let cases: Vec<Case> = load_cases(Some(feature))
        .unwrap_or_else(|e| panic!("invalid conformance cases:\n{e}"))
        .into_iter()
        .filter(|c| c.id().contains(&filter))
        .collect();
    if cases.is_empty() {
        assert!(
            !filter.is_empty(),
            "tests/conformance/{feature}/ holds no case"
        );
        println!("CONFORMANCE_FILTER={filter:?} selects no case of {feature}");
        return;
    }
    let stack = Stack::connect().await;
    install_crds(&stack.kube).await;
    let class = unique(&format!("conformance-{feature}"));
    let mut args = vec!["--controller-class", class.as_str()];
    args.extend_from_slice(extra_args);
    let controller = ControllerProcess::start(&stack, &class, &args);

    let tasks: Vec<_> = cases
        .into_iter()
        .map(|case| {
            let stack = stack.clone();
            let class = class.clone();
            tokio::spawn(async move { run_case(stack, case, class).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in futures::future::join_all(tasks).await {
        outcomes.push(task.unwrap_or_else(|e| Outcome {
            id: "?".into(),
            path: "?".into(),
            result: Err(format!("the case's task panicked: {e}")),
            values: Vec::new(),
        }));
    }
    outcomes.sort_by(|a, b| a.id.cmp(&b.id));
    let mut failures = Vec::new();
    for outcome in &outcomes {
        match &outcome.result {
            Ok(()) => println!("PASS {}", outcome.id),
            Err(report) => {
                println!("FAIL {}", outcome.id);
                failures.push(format!("{} ({}):\n    {report}", outcome.id, outcome.path));
            }
        }
    }
    let values: Vec<&str> = outcomes
        .iter()
        .flat_map(|o| o.values.iter().map(String::as_str))
        .collect();
    controller.assert_logs_hide(&values);
    assert!(
        failures.is_empty(),
        "{} of {} conformance cases of {feature} failed (controller log: {}):\n\n{}",
        failures.len(),
        outcomes.len(),
        controller.log_path.display(),
        failures.join("\n\n")
    );
}

async fn run_case(stack: Stack, case: Case, class: String) -> Outcome {
    let prefix = unique("cf");
    let mut values = Values {
        case: prefix.clone(),
        namespace: prefix,
        class,
        region: stack.env["AWS_REGION"].clone(),
        ..Values::default()
    };
    let mut runner = CaseRun {
        aws: Aws::new(&stack.aws),
        stack,
        secret_values: Vec::new(),
        cluster_objects: Vec::new(),
        aws_names: Vec::new(),
    };
    let result = runner.run(&case, &mut values).await;
    // Also after a failure: the report names what was applied, and the stack is shared.
    runner.clean_up(&values).await;
    Outcome {
        id: case.id(),
        path: case.path.display().to_string(),
        result: result.map_err(|e| format!("{e}\n    (namespace {})", values.namespace)),
        values: runner.secret_values,
    }
}

struct CaseRun {
    stack: Stack,
    aws: Aws,
    secret_values: Vec<String>,
    /// (kind, name) of cluster-scoped objects the case created.
    cluster_objects: Vec<(String, String)>,
    aws_names: Vec<String>,
}

impl CaseRun {
    async fn run(&mut self, case: &Case, values: &mut Values) -> Result<(), String> {
        // The AWS section may use only the per-run placeholders: ARNs and versions come from it.
        for secret in &case.spec.aws {
            let name = values.substitute(&secret.name)?;
            let value = self.value(&secret.value, values)?;
            let mut create = self
                .aws
                .secrets
                .create_secret()
                .name(&name)
                .set_description(secret.description.clone());
            create = match value {
                Payload::String(s) => create.secret_string(s),
                Payload::Binary(b) => create.secret_binary(Blob::new(b)),
            };
            for (key, value) in &secret.tags {
                create = create.tags(
                    Tag::builder()
                        .key(values.substitute(key)?)
                        .value(values.substitute(value)?)
                        .build(),
                );
            }
            let created = create
                .send()
                .await
                .map_err(|e| format!("CreateSecret {name}: {e:?}"))?;
            self.aws_names.push(name.clone());
            values
                .arns
                .insert(name.clone(), created.arn.unwrap_or_default());
            values
                .versions
                .insert(name.clone(), vec![created.version_id.unwrap_or_default()]);
            for version in &secret.versions {
                self.put_value(values, &name, &version.value, &version.stages)
                    .await?;
            }
        }
        // Everything else may use every placeholder.
        let spec: CaseSpec = yaml_serde::from_str(&values.substitute(&case.text)?)
            .map_err(|e| format!("case after substitution: {e}"))?;
        let primary = primary(&spec.manifest, &values.namespace)?;

        self.namespace(&values.namespace, &BTreeMap::new()).await?;
        for namespace in &spec.namespaces {
            self.namespace(&namespace.name, &namespace.labels).await?;
        }
        let env = self.stack.env;
        self.apply(
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: aws-keys\nstringData:\n  access-key: {}\n  secret-access-key: {}\n",
                env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
            ),
            &values.namespace,
        )
        .await?;
        let store = Store::secret_store("aws")
            .controller(&values.class)
            .region(&values.region)
            .static_keys();
        self.apply(&store.to_yaml(), &values.namespace).await?;
        if spec.cluster_store {
            let store = Store::cluster_secret_store(&values.case)
                .controller(&values.class)
                .region(&values.region)
                .static_keys_in(&values.namespace);
            self.apply(&store.to_yaml(), &values.namespace).await?;
        }
        if let Some(objects) = &spec.objects {
            self.apply(objects, &values.namespace).await?;
        }
        self.apply(&spec.manifest, &values.namespace).await?;

        let client = self.stack.kube.clone();
        expect::wait_until(&client, &primary, &spec.expect)
            .await
            .map_err(|e| format!("expect: {e}"))?;
        for (i, step) in spec.steps.iter().enumerate() {
            self.step(step, values, &primary)
                .await
                .map_err(|e| format!("steps[{i}]: {e}"))?;
        }
        Ok(())
    }

    async fn step(
        &mut self,
        step: &Step,
        values: &mut Values,
        primary: &Primary,
    ) -> Result<(), String> {
        if let Some(seconds) = step.wait {
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        }
        if let Some(put) = &step.put_secret_value {
            self.put_value(values, &put.secret, &put.value, &put.stages)
                .await?;
        }
        if let Some(moved) = &step.update_secret_version_stage {
            let target = values
                .versions
                .get(&moved.secret)
                .and_then(|v| v.get(moved.version))
                .cloned()
                .ok_or_else(|| format!("no version {} of {}", moved.version, moved.secret))?;
            let described = self
                .aws
                .secrets
                .describe_secret()
                .secret_id(&moved.secret)
                .send()
                .await
                .map_err(|e| format!("DescribeSecret {}: {e:?}", moved.secret))?;
            let holder = described
                .version_ids_to_stages
                .unwrap_or_default()
                .into_iter()
                .find(|(_, stages)| stages.contains(&moved.stage))
                .map(|(id, _)| id)
                .filter(|id| *id != target);
            self.aws
                .secrets
                .update_secret_version_stage()
                .secret_id(&moved.secret)
                .version_stage(&moved.stage)
                .move_to_version_id(&target)
                .set_remove_from_version_id(holder)
                .send()
                .await
                .map_err(|e| format!("UpdateSecretVersionStage {}: {e:?}", moved.secret))?;
        }
        if let Some(tag) = &step.tag_resource {
            let tags = tag
                .tags
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect();
            self.aws
                .secrets
                .tag_resource()
                .secret_id(&tag.secret)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| format!("TagResource {}: {e:?}", tag.secret))?;
        }
        if let Some(delete) = &step.delete_aws_secret {
            self.aws
                .secrets
                .delete_secret()
                .secret_id(&delete.secret)
                .force_delete_without_recovery(delete.force)
                .send()
                .await
                .map_err(|e| format!("DeleteSecret {}: {e:?}", delete.secret))?;
        }
        if let Some(yaml) = &step.apply {
            self.apply(yaml, &values.namespace).await?;
        }
        if let Some(object) = &step.delete {
            let namespace = object.namespace.as_deref().unwrap_or(&values.namespace);
            let api = dynamic_api(&self.stack.kube, &object.kind, Some(namespace))?;
            api.delete(&object.name, &DeleteParams::default())
                .await
                .map_err(|e| format!("delete {} {}: {e}", object.kind, object.name))?;
        }
        if let Some(expect) = &step.expect {
            expect::wait_until(&self.stack.kube, primary, expect)
                .await
                .map_err(|e| format!("expect: {e}"))?;
        }
        Ok(())
    }

    async fn put_value(
        &mut self,
        values: &mut Values,
        secret: &str,
        value: &AwsValue,
        stages: &[String],
    ) -> Result<(), String> {
        let mut put = self
            .aws
            .secrets
            .put_secret_value()
            .secret_id(secret)
            .set_version_stages((!stages.is_empty()).then(|| stages.to_vec()));
        put = match self.value(value, values)? {
            Payload::String(s) => put.secret_string(s),
            Payload::Binary(b) => put.secret_binary(Blob::new(b)),
        };
        let out = put
            .send()
            .await
            .map_err(|e| format!("PutSecretValue {secret}: {e:?}"))?;
        values
            .versions
            .entry(secret.to_owned())
            .or_default()
            .push(out.version_id.unwrap_or_default());
        Ok(())
    }

    /// The value to write, remembered for the log check.
    fn value(&mut self, value: &AwsValue, values: &Values) -> Result<Payload, String> {
        if let Some(text) = &value.string {
            let text = values.substitute(text)?;
            self.remember(&text);
            return Ok(Payload::String(text));
        }
        let encoded = value.binary.as_deref().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| format!("binary value is not base64: {e}"))?;
        if let Ok(text) = std::str::from_utf8(&bytes) {
            self.remember(text);
        }
        Ok(Payload::Binary(bytes))
    }

    /// Values of 8 characters or more, and the string leaves of JSON values, must never reach
    /// the log (shorter ones would match ordinary log text by chance).
    fn remember(&mut self, text: &str) {
        const MIN: usize = 8;
        if text.len() >= MIN {
            self.secret_values.push(text.to_owned());
        }
        if let Ok(json) = serde_json::from_str::<Value>(text) {
            let mut stack = vec![json];
            while let Some(value) = stack.pop() {
                match value {
                    Value::String(s) if s.len() >= MIN => self.secret_values.push(s),
                    Value::Array(items) => stack.extend(items),
                    Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
                    _ => {}
                }
            }
        }
    }

    async fn namespace(
        &mut self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let labels = serde_json::to_string(labels).unwrap_or_default();
        self.apply(
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {labels}\n"
            ),
            name,
        )
        .await
    }

    /// Server-side apply of every document, in `namespace` when a namespaced one names none.
    async fn apply(&mut self, yaml: &str, namespace: &str) -> Result<(), String> {
        for document in documents(yaml)? {
            let mut object: DynamicObject =
                serde_json::from_value(document).map_err(|e| format!("manifest document: {e}"))?;
            let types = object.types.clone().unwrap_or_default();
            let kind = types.kind.clone();
            let name = object.name_any();
            // The version the document is written in (v1beta1 manifests stay v1beta1).
            let gvk = GroupVersionKind::try_from(&types)
                .map_err(|e| format!("apiVersion of {kind} {name}: {e}"))?;
            let resource =
                ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()));
            let api: Api<DynamicObject> = if cluster_scoped(&kind) {
                self.cluster_objects.push((kind.clone(), name.clone()));
                Api::all_with(self.stack.kube.clone(), &resource)
            } else {
                let namespace = object.namespace().unwrap_or_else(|| namespace.to_owned());
                object.metadata.namespace = Some(namespace.clone());
                Api::namespaced_with(self.stack.kube.clone(), &namespace, &resource)
            };
            api.patch(
                &name,
                &PatchParams::apply(TEST_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .map_err(|e| format!("apply {kind} {name}: {e}"))?;
        }
        Ok(())
    }

    /// Deletes what a case made, passing or not: its AWS secrets, cluster-scoped objects and
    /// namespaces.
    async fn clean_up(&self, values: &Values) {
        for name in &self.aws_names {
            self.aws.force_delete_secret(name).await;
        }
        let mut objects = self.cluster_objects.clone();
        objects.push(("Namespace".into(), values.namespace.clone()));
        // ExternalSecrets first (a ClusterExternalSecret's go with it), namespaces last.
        objects.sort_by_key(|(kind, _)| kind == "Namespace");
        objects.dedup();
        for (kind, name) in objects {
            if let Ok(api) = dynamic_api(&self.stack.kube, &kind, None) {
                let _ = api.delete(&name, &DeleteParams::background()).await;
            }
        }
    }
}

enum Payload {
    String(String),
    Binary(Vec<u8>),
}

fn primary(manifest: &str, namespace: &str) -> Result<Primary, String> {
    let mut primary = Primary {
        namespace: namespace.to_owned(),
        ..Primary::default()
    };
    for document in documents(manifest)? {
        let name = document["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match document["kind"].as_str() {
            Some("ExternalSecret") if primary.external_secret.is_none() => {
                if let Some(ns) = document["metadata"]["namespace"].as_str() {
                    primary.namespace = ns.to_owned();
                }
                primary.target = document["spec"]["target"]["name"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(&name)
                    .to_owned();
                primary.owner_name = Some(name.clone());
                primary.external_secret = Some(name);
            }
            Some("ClusterExternalSecret") if primary.cluster_external_secret.is_none() => {
                let es_name = document["spec"]["externalSecretName"]
                    .as_str()
                    .unwrap_or(&name)
                    .to_owned();
                if primary.external_secret.is_none() {
                    primary.target = document["spec"]["externalSecretSpec"]["target"]["name"]
                        .as_str()
                        .unwrap_or(&es_name)
                        .to_owned();
                    primary.owner_name = Some(es_name);
                }
                primary.cluster_external_secret = Some(name);
            }
            _ => {}
        }
    }
    Ok(primary)
}

fn cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace" | "ClusterSecretStore" | "ClusterExternalSecret"
    )
}

/// A dynamic API for the kinds cases use.
pub fn dynamic_api(
    client: &Client,
    kind: &str,
    namespace: Option<&str>,
) -> Result<Api<DynamicObject>, String> {
    let (group, version) = match kind {
        "ExternalSecret" | "ClusterExternalSecret" | "SecretStore" | "ClusterSecretStore" => {
            ("external-secrets.io", "v1")
        }
        "Secret" | "ConfigMap" | "Namespace" | "ServiceAccount" => ("", "v1"),
        other => return Err(format!("cases cannot use kind {other:?}")),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()));
    Ok(match namespace {
        Some(namespace) if !cluster_scoped(kind) => {
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
        _ => Api::all_with(client.clone(), &resource),
    })
}
