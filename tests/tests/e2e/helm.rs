//! The Helm chart `infra/helm/secret-bridge`: `helm lint` finds nothing, the CRDs render only
//! when asked, each mode gets exactly its RBAC rules, and a release installed on the local
//! apiserver is enough to run the controller, in sync mode and in accelerator mode.
//!
//! There is no kubelet, so a release's pod stays Pending. The tests run the controller as a
//! process instead, with the environment of the release's Deployment and a TokenRequest token
//! of its ServiceAccount: whatever the controller needs must be granted by the chart's
//! ClusterRole (an RBAC refusal in its log fails the test), and requests outside the role are
//! refused with 403.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Pod, PodSpec, Secret, ServiceAccount,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use secret_bridge_controller::api::{ClusterExternalSecret, ExternalSecret};
use secret_bridge_controller::events::eso_trigger::FORCE_SYNC_ANNOTATION;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::*;
use secret_bridge_tests::stack::workspace_root;
use secret_bridge_tests::{ControllerProcess, Stack, unique, wait_for};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::fixtures::Tenant;

const CHART: &str = "infra/helm/secret-bridge";

#[tokio::test]
async fn chart_passes_helm_lint() {
    let stack = Stack::connect().await;
    for values in [
        &[][..],
        &[
            "--set",
            "mode=eso-trigger",
            "--set",
            "queueUrl=https://sqs.us-east-1.amazonaws.com/123456789012/q",
        ][..],
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "podDisruptionBudget.enabled=false",
        ][..],
    ] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend_from_slice(values);
        let output = helm(&stack, &args).await;
        assert!(
            output.success,
            "helm {} failed:\n{}{}",
            args.join(" "),
            output.stdout,
            output.stderr
        );
        for problem in ["[WARNING]", "[ERROR]"] {
            assert!(
                !output.stdout.contains(problem),
                "helm {}:\n{}",
                args.join(" "),
                output.stdout
            );
        }
    }
}

#[tokio::test]
async fn chart_renders_the_crds_only_when_asked() {
    let stack = Stack::connect().await;
    let committed: BTreeMap<String, Value> = std::fs::read_dir(workspace_root().join("infra/crds"))
        .expect("infra/crds")
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let crd = yaml_documents(&std::fs::read_to_string(&path).expect("read CRD"))
                .pop()
                .expect("one CRD per file");
            (
                crd["metadata"]["name"].as_str().expect("name").to_owned(),
                crd,
            )
        })
        .collect();
    assert_eq!(committed.len(), 4);

    let rendered = render(&stack, &["--set", "crds.install=true"]).await;
    let crds: BTreeMap<String, Value> = rendered
        .into_iter()
        .filter(|doc| doc["kind"] == "CustomResourceDefinition")
        .map(|crd| {
            (
                crd["metadata"]["name"].as_str().expect("name").to_owned(),
                crd,
            )
        })
        .collect();
    let crds: BTreeMap<String, Value> = crds
        .into_iter()
        .map(|(name, mut crd)| {
            let annotations = crd["metadata"]
                .as_object_mut()
                .and_then(|m| m.remove("annotations"))
                .unwrap_or_default();
            assert_eq!(
                annotations,
                json!({"helm.sh/resource-policy": "keep"}),
                "{name}: kept on helm uninstall by default"
            );
            (name, crd)
        })
        .collect();
    assert_eq!(
        crds, committed,
        "the chart installs the CRDs of infra/crds unchanged"
    );

    let rendered = render(&stack, &["--set", "crds.install=false"]).await;
    assert!(
        rendered
            .iter()
            .all(|doc| doc["kind"] != "CustomResourceDefinition"),
        "crds.install=false renders no CRD"
    );
}

#[tokio::test]
async fn each_mode_gets_exactly_its_rules() {
    let stack = Stack::connect().await;
    let sync = cluster_role_rules(&render(&stack, &[]).await);
    assert_eq!(
        sync,
        rules(&[
            (
                "external-secrets.io",
                "externalsecrets",
                "create,delete,list,patch,watch"
            ),
            ("external-secrets.io", "externalsecrets/status", "patch"),
            (
                "external-secrets.io",
                "externalsecrets/finalizers",
                "update"
            ),
            (
                "external-secrets.io",
                "clusterexternalsecrets",
                "list,watch"
            ),
            (
                "external-secrets.io",
                "clusterexternalsecrets/status",
                "patch"
            ),
            ("external-secrets.io", "secretstores", "get,list,watch"),
            (
                "external-secrets.io",
                "clustersecretstores",
                "get,list,watch"
            ),
            ("external-secrets.io", "secretstores/status", "patch"),
            ("external-secrets.io", "clustersecretstores/status", "patch"),
            ("", "secrets", "create,delete,get,list,patch,watch"),
            ("", "namespaces", "get,list,watch"),
            ("", "configmaps", "get"),
            ("", "serviceaccounts", "get"),
            ("", "serviceaccounts/token", "create"),
            ("events.k8s.io", "events", "create,patch"),
        ])
    );
    let queue = "https://sqs.us-east-1.amazonaws.com/123456789012/events";
    let eso_trigger = cluster_role_rules(
        &render(
            &stack,
            &[
                "--set",
                "mode=eso-trigger",
                "--set",
                &format!("queueUrl={queue}"),
            ],
        )
        .await,
    );
    assert_eq!(
        eso_trigger,
        rules(&[
            ("external-secrets.io", "externalsecrets", "list,patch,watch"),
            ("external-secrets.io", "secretstores", "list,watch"),
            ("external-secrets.io", "clustersecretstores", "list,watch"),
            ("events.k8s.io", "events", "create,patch"),
        ]),
        "accelerator mode never touches Secrets"
    );

    // Settings the controller would refuse at start fail the install instead.
    for (values, message) in [
        (&["--set", "mode=eso-trigger"][..], "needs queueUrl"),
        (&["--set", "logFormat=yaml"][..], "logFormat"),
        (&["--set", "queueURL=typo"][..], "queueURL"),
        (
            &["--set", "podDisruptionBudget.minAvailable=1"][..],
            "exactly one of minAvailable and maxUnavailable",
        ),
    ] {
        let mut args = vec!["template", "release", CHART];
        args.extend_from_slice(values);
        let output = helm(&stack, &args).await;
        assert!(
            !output.success && output.stderr.contains(message),
            "helm {} should fail mentioning {message:?}:\n{}",
            args.join(" "),
            output.stderr
        );
    }
}

#[tokio::test]
async fn installed_release_runs_the_controller_with_only_its_role() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "helm-tenant", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let bus = unique("helm-bus");
    let queue = aws.event_queue(&unique("helm"), &bus, None, 30).await;
    let role_arn = "arn:aws:iam::123456789012:role/secret-bridge-controller";

    let release = Release::install(
        &stack,
        &unique("helm"),
        &unique("helm-release"),
        &[
            ("controllerClass", &tenant.class),
            ("queueUrl", &queue),
            ("serviceAccount.roleArn", role_arn),
            ("aws.region", &aws.region),
        ],
    )
    .await;
    let fullname = release.fullname();

    // What the release created.
    let account = Api::<ServiceAccount>::namespaced(kube.clone(), &release.namespace)
        .get(&fullname)
        .await
        .expect("the release's ServiceAccount");
    assert_eq!(
        account
            .annotations()
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some(role_arn),
        "serviceAccount.roleArn is the IRSA annotation"
    );
    let pod = release.pod_spec(&stack).await;
    assert_eq!(pod.service_account_name.as_deref(), Some(fullname.as_str()));
    let container = &pod.containers[0];
    assert_hardened(container);
    let env = container_env(container);
    assert_eq!(env["CONTROLLER_CLASS"], tenant.class);
    assert_eq!(env["SQS_QUEUE_URL"], queue);
    assert_eq!(env["MODE"], "sync");
    let manifest = helm(
        &stack,
        &[
            "get",
            "manifest",
            &release.name,
            "--namespace",
            &release.namespace,
        ],
    )
    .await;
    let pdb_version = if api_group_has_version(kube, "policy", "v1").await {
        "policy/v1"
    } else {
        "policy/v1beta1"
    };
    assert!(
        yaml_documents(&manifest.stdout)
            .iter()
            .any(|doc| doc["kind"] == "PodDisruptionBudget" && doc["apiVersion"] == pdb_version),
        "the release has a {pdb_version} PodDisruptionBudget, the version this apiserver serves:\n{}",
        manifest.stdout
    );

    let (controller, kubeconfig) = release.run_controller(&stack).await;
    let pod_name = release.pod_name();

    // It syncs, reports status and Events, follows events from the queue and deletes a Secret
    // whose source is gone: every verb of its role is used.
    let name = unique("helm-secret");
    let first = unique("helm-value");
    aws.upsert_secret(&name, &json!({ "password": first }).to_string())
        .await;
    tenant
        .external_secret(
            &stack,
            "app",
            &format!(
                "  refreshInterval: 1h\n  target: {{deletionPolicy: Delete}}\n  dataFrom:\n    - extract: {{key: {name}}}\n"
            ),
        )
        .await;
    wait_for_secret_value(kube, ns, "app", "password", &first, Duration::from_secs(30)).await;
    let (reason, message) = wait_for_ready(kube, ns, "app", "True", Duration::from_secs(10)).await;
    assert_eq!(reason, "SecretSynced", "{message}");
    let event = wait_for(
        "the controller's Created Event on the ExternalSecret (its first write, as ESO)",
        Duration::from_secs(10),
        || async {
            Api::<Event>::namespaced(kube.clone(), ns)
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("Created")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("app")
                })
        },
    )
    .await;
    assert_eq!(event.reporting_controller.as_deref(), Some("secret-bridge"));
    assert_eq!(
        event.reporting_instance.as_deref(),
        Some(pod_name.as_str()),
        "POD_NAME names the reporting instance"
    );

    let second = unique("helm-value");
    let rotated = aws
        .rotate(&name, &json!({ "password": second }).to_string())
        .await;
    aws.publish_label_updated(&bus, &name, &rotated).await;
    wait_for_secret_value(
        kube,
        ns,
        "app",
        "password",
        &second,
        Duration::from_secs(10),
    )
    .await;

    aws.secrets
        .delete_secret()
        .secret_id(&name)
        .send()
        .await
        .expect("DeleteSecret");
    let deleted = json!({
        "eventSource": "secretsmanager.amazonaws.com",
        "eventName": "DeleteSecret",
        "awsRegion": aws.region,
        "requestParameters": {"secretId": name, "recoveryWindowInDays": 7},
        "responseElements": {"arn": rotated.arn, "name": name},
    });
    aws.publish(&bus, "AWS API Call via CloudTrail", &deleted, &[])
        .await;
    wait_for(
        "the Secret to be deleted (deletionPolicy Delete)",
        Duration::from_secs(10),
        || async { secret_data(kube, ns, "app").await.is_none().then_some(()) },
    )
    .await;
    // As ESO, a Secret deleted by deletionPolicy Delete is the expected outcome: Ready=True.
    crate::delivery::wait_for_reason(kube, ns, "app", "True", "SecretDeleted").await;

    // A store missing from the controller's cache is read from the API (`get`).
    for (es, kind) in [
        ("no-store", "SecretStore"),
        ("no-cluster-store", "ClusterSecretStore"),
    ] {
        let store = unique("missing");
        apply_yaml(
            kube,
            &format!(
                "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: {es}\nspec:\n  secretStoreRef: {{name: {store}, kind: {kind}}}\n  dataFrom:\n    - extract: {{key: {name}}}\n"
            ),
            ns,
        )
        .await;
        wait_for(
            &format!("the controller to report that {kind} {store} is missing"),
            Duration::from_secs(10),
            || async {
                let logs = controller.logs();
                logs.lines()
                    .any(|line| line.contains(&format!("{es}.{ns}")) && line.contains(&store))
                    .then_some(())
            },
        )
        .await;
        let (_, message) = wait_for_ready(kube, ns, es, "False", Duration::from_secs(10)).await;
        assert!(message.contains("not found"), "{message}");
        // Every controller of the parallel tests retries it: keep their logs quiet.
        delete_external_secret(kube, ns, es).await;
    }

    // The role grants nothing else.
    let sa_client = kubeconfig.client().await;
    let external_secrets = Api::<ExternalSecret>::namespaced(sa_client.clone(), ns);
    external_secrets
        .list(&ListParams::default())
        .await
        .expect("the ServiceAccount may list ExternalSecrets");
    assert_forbidden(
        "list Pods",
        Api::<Pod>::all(sa_client.clone())
            .list(&ListParams::default())
            .await,
    );
    assert_forbidden(
        "create a ClusterRole",
        Api::<ClusterRole>::all(sa_client.clone())
            .create(
                &PostParams::default(),
                &ClusterRole {
                    metadata: kube::api::ObjectMeta {
                        name: Some(unique("escalation")),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await,
    );
    assert_forbidden(
        "delete a CRD",
        Api::<CustomResourceDefinition>::all(sa_client.clone())
            .delete(
                "externalsecrets.external-secrets.io",
                &DeleteParams::default(),
            )
            .await,
    );
    assert_forbidden(
        "delete a ClusterExternalSecret",
        Api::<ClusterExternalSecret>::all(sa_client.clone())
            .delete("any", &DeleteParams::default())
            .await,
    );
    assert_forbidden(
        "write a ConfigMap (templates are only read)",
        Api::<ConfigMap>::namespaced(sa_client.clone(), ns)
            .create(
                &PostParams::default(),
                &ConfigMap {
                    metadata: kube::api::ObjectMeta {
                        name: Some(unique("cm")),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await,
    );

    release.assert_never_refused(&controller);
    controller.assert_logs_hide(&[&first, &second]);
    drop(controller);

    release.uninstall(&stack).await;
    let _ = Api::<Namespace>::all(kube.clone())
        .delete(ns, &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn accelerator_release_needs_no_access_to_secrets() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "helm-accel", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let bus = unique("helm-accel-bus");
    let queue = aws.event_queue(&unique("helm-accel"), &bus, None, 30).await;
    let release = Release::install(
        &stack,
        &unique("helm-accel"),
        &unique("helm-accel-release"),
        &[("mode", "eso-trigger"), ("queueUrl", &queue)],
    )
    .await;

    let name = unique("helm-accel-secret");
    let written = aws
        .upsert_secret(&name, r#"{"k":"helm-accel-value"}"#)
        .await;
    // `refreshInterval: 0` is the trap: ESO ignores force-sync there, and an Event says so.
    for (es, interval) in [("hourly", "1h"), ("trap", "\"0\"")] {
        tenant
            .external_secret(
                &stack,
                es,
                &format!(
                    "  refreshInterval: {interval}\n  dataFrom:\n    - extract: {{key: {name}}}\n"
                ),
            )
            .await;
    }
    // Started after they exist, so that its first list, which /readyz waits for, holds both.
    let (controller, kubeconfig) = release.run_controller(&stack).await;
    wait_for(
        "the controller to list the ExternalSecrets",
        Duration::from_secs(10),
        || async { (controller.probe_get("/readyz").await.0 == 200).then_some(()) },
    )
    .await;
    aws.publish_label_updated(&bus, &name, &written).await;
    for es in ["hourly", "trap"] {
        wait_for(
            &format!("force-sync on {es}"),
            Duration::from_secs(15),
            || async {
                external_secret(kube, ns, es)
                    .await?
                    .metadata
                    .annotations?
                    .get(FORCE_SYNC_ANNOTATION)
                    .cloned()
            },
        )
        .await;
    }
    wait_for(
        "the ForceSyncIgnored Event on the trap",
        Duration::from_secs(10),
        || async {
            Api::<Event>::namespaced(kube.clone(), ns)
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("ForceSyncIgnored")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("trap")
                })
        },
    )
    .await;

    let sa_client = kubeconfig.client().await;
    assert_forbidden(
        "read a Secret",
        Api::<Secret>::namespaced(sa_client.clone(), ns)
            .get("aws-keys")
            .await,
    );
    assert_forbidden(
        "list Secrets",
        Api::<Secret>::all(sa_client.clone())
            .list_metadata(&ListParams::default())
            .await,
    );
    assert_forbidden(
        "write an ExternalSecret's status",
        Api::<ExternalSecret>::namespaced(sa_client.clone(), ns)
            .patch_status(
                "hourly",
                &PatchParams::apply("secret-bridge").force(),
                &Patch::Apply(json!({
                    "apiVersion": "external-secrets.io/v1",
                    "kind": "ExternalSecret",
                    "status": {"conditions": []},
                })),
            )
            .await,
    );
    release.assert_never_refused(&controller);
    controller.assert_logs_hide(&["helm-accel-value"]);
    drop(controller);

    release.uninstall(&stack).await;
    let _ = Api::<Namespace>::all(kube.clone())
        .delete(ns, &DeleteParams::default())
        .await;
}

/// What `helm` printed, and whether it succeeded.
struct HelmOutput {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs the stack's helm in the workspace root, against the stack's apiserver.
async fn helm(stack: &Stack, args: &[&str]) -> HelmOutput {
    let binary = stack
        .env
        .get("HELM")
        .expect("the stack's env file names HELM; restart the stack with `scripts/stack up`");
    let output = tokio::process::Command::new(binary)
        .args(args)
        .env("KUBECONFIG", &stack.env["KUBECONFIG"])
        .current_dir(workspace_root())
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {binary}: {e}"));
    HelmOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The documents `helm template` renders with `values`.
async fn render(stack: &Stack, values: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "release", CHART, "--namespace", "secret-bridge"];
    args.extend_from_slice(values);
    let output = helm(stack, &args).await;
    assert!(
        output.success,
        "helm {} failed:\n{}",
        args.join(" "),
        output.stderr
    );
    yaml_documents(&output.stdout)
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).expect("valid YAML"))
        .filter(|value| !value.is_null())
        .collect()
}

/// The rules of the one ClusterRole, as (API group, resource) → sorted verbs.
fn cluster_role_rules(documents: &[Value]) -> BTreeMap<(String, String), String> {
    let roles: Vec<&Value> = documents
        .iter()
        .filter(|doc| doc["kind"] == "ClusterRole")
        .collect();
    assert_eq!(roles.len(), 1, "the chart renders one ClusterRole");
    let mut rules = BTreeMap::new();
    for rule in roles[0]["rules"].as_array().expect("rules") {
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {key}: {rule}"))
                .iter()
                .map(|v| v.as_str().expect("a string").to_owned())
                .collect()
        };
        let verbs: BTreeSet<String> = strings("verbs").into_iter().collect();
        assert!(!verbs.contains("*"), "no wildcard verbs: {rule}");
        for group in strings("apiGroups") {
            for resource in strings("resources") {
                assert!(
                    group != "*" && resource != "*",
                    "no wildcard groups or resources: {rule}"
                );
                let previous = rules.insert(
                    (group.clone(), resource),
                    verbs.iter().cloned().collect::<Vec<_>>().join(","),
                );
                assert!(previous.is_none(), "one rule per resource: {rule}");
            }
        }
    }
    rules
}

fn rules(expected: &[(&str, &str, &str)]) -> BTreeMap<(String, String), String> {
    expected
        .iter()
        .map(|(group, resource, verbs)| {
            (
                ((*group).to_owned(), (*resource).to_owned()),
                (*verbs).to_owned(),
            )
        })
        .collect()
}

/// The container runs as the chart promises: non-root, read-only, no privileges, probed.
fn assert_hardened(container: &Container) {
    let security = container
        .security_context
        .as_ref()
        .expect("a container securityContext");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(65532));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.clone())
            .unwrap_or_default(),
        ["ALL"]
    );
    assert_eq!(
        security.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    let probe_path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|g| g.path.clone())
    };
    assert_eq!(
        probe_path(&container.liveness_probe).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        probe_path(&container.readiness_probe).as_deref(),
        Some("/readyz")
    );
    let port = &container.ports.as_ref().expect("ports")[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("metrics"), 8080)
    );
    let pod_name = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "POD_NAME")
        .expect("POD_NAME");
    assert_eq!(
        pod_name
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("metadata.name"),
        "POD_NAME comes from the downward API"
    );
}

/// The container's plain `value` environment variables.
pub(crate) fn container_env(container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect()
}

async fn api_group_has_version(client: &Client, group: &str, version: &str) -> bool {
    client
        .list_api_groups()
        .await
        .expect("API discovery")
        .groups
        .iter()
        .filter(|g| g.name == group)
        .flat_map(|g| &g.versions)
        .any(|v| v.version == version)
}

fn assert_forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// A Helm release of the chart, uninstalled when dropped if the test did not get that far.
struct Release {
    name: String,
    namespace: String,
    helm: String,
    kubectl: Option<String>,
    kubeconfig: String,
    uninstalled: bool,
}

impl Release {
    async fn install(
        stack: &Stack,
        name: &str,
        namespace: &str,
        values: &[(&str, &str)],
    ) -> Release {
        let mut args = vec![
            "install".to_owned(),
            name.to_owned(),
            CHART.to_owned(),
            "--namespace".to_owned(),
            namespace.to_owned(),
            "--create-namespace".to_owned(),
            // The tests install the CRDs (under another field manager), not the release.
            "--set".to_owned(),
            "crds.install=false".to_owned(),
        ];
        for (key, value) in values {
            args.push("--set-string".to_owned());
            args.push(format!("{key}={value}"));
        }
        let release = Release {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            helm: stack.env["HELM"].clone(),
            kubectl: stack.env.get("KUBECTL").cloned(),
            kubeconfig: stack.env["KUBECONFIG"].clone(),
            uninstalled: false,
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = helm(stack, &args).await;
        assert!(
            output.success,
            "helm {} failed:\n{}{}",
            args.join(" "),
            output.stdout,
            output.stderr
        );
        release
    }

    fn fullname(&self) -> String {
        format!("{}-secret-bridge", self.name)
    }

    /// The name the test gives its stand-in for the release's pod.
    fn pod_name(&self) -> String {
        format!("{}-7d4b9c-x2x4z", self.fullname())
    }

    async fn pod_spec(&self, stack: &Stack) -> PodSpec {
        Api::<Deployment>::namespaced(stack.kube.clone(), &self.namespace)
            .get(&self.fullname())
            .await
            .expect("the release's Deployment")
            .spec
            .and_then(|s| s.template.spec)
            .expect("pod template")
    }

    /// Runs the controller as the release's pod would (there is no kubelet): with the
    /// Deployment's environment and a token of the release's ServiceAccount.
    async fn run_controller(&self, stack: &Stack) -> (ControllerProcess, ServiceAccountKubeconfig) {
        run_deployment(
            stack,
            &self.namespace,
            &self.fullname(),
            &self.pod_name(),
            &self.name,
        )
        .await
    }

    /// The apiserver's RBAC refusals name the user; other 403s (for example writes into a
    /// namespace being deleted by another test) do not count.
    fn assert_never_refused(&self, controller: &ControllerProcess) {
        let user = format!(
            "system:serviceaccount:{}:{}",
            self.namespace,
            self.fullname()
        );
        assert!(
            !controller.logs().contains(&user),
            "RBAC refused the controller something it needs; grant it in the chart's ClusterRole (log: {})",
            controller.log_path.display()
        );
    }

    /// `helm uninstall`; the cluster-wide role goes with it. Deletes the namespace too.
    async fn uninstall(mut self, stack: &Stack) {
        let output = helm(
            stack,
            &["uninstall", &self.name, "--namespace", &self.namespace],
        )
        .await;
        assert!(
            output.success,
            "helm uninstall {} failed:\n{}",
            self.name, output.stderr
        );
        self.uninstalled = true;
        let role = Api::<ClusterRole>::all(stack.kube.clone())
            .get_opt(&self.fullname())
            .await
            .expect("read ClusterRole");
        assert!(role.is_none(), "helm uninstall removes the ClusterRole");
        Api::<Namespace>::all(stack.kube.clone())
            .delete(&self.namespace, &DeleteParams::default())
            .await
            .expect("delete the release's namespace");
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.uninstalled {
            return;
        }
        // A failed test must not leave a ClusterRole and its binding behind.
        let _ = std::process::Command::new(&self.helm)
            .args(["uninstall", &self.name, "--namespace", &self.namespace])
            .env("KUBECONFIG", &self.kubeconfig)
            .output();
        if let Some(kubectl) = &self.kubectl {
            let _ = std::process::Command::new(kubectl)
                .args(["delete", "namespace", &self.namespace, "--wait=false"])
                .env("KUBECONFIG", &self.kubeconfig)
                .output();
        }
    }
}

/// Runs the controller as a pod of the Deployment `namespace/deployment` would (there is no
/// kubelet): with the container's environment, `POD_NAME` = `pod_name` and a TokenRequest token
/// of the pod's ServiceAccount. Its log is `target/test-logs/<log_name>.log`.
pub(crate) async fn run_deployment(
    stack: &Stack,
    namespace: &str,
    deployment: &str,
    pod_name: &str,
    log_name: &str,
) -> (ControllerProcess, ServiceAccountKubeconfig) {
    let pod = Api::<Deployment>::namespaced(stack.kube.clone(), namespace)
        .get(deployment)
        .await
        .unwrap_or_else(|e| panic!("Deployment {namespace}/{deployment}: {e}"))
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod template");
    let account = pod
        .service_account_name
        .clone()
        .expect("the pod runs as a ServiceAccount of the release");
    let kubeconfig = ServiceAccountKubeconfig::create(stack, namespace, &account).await;
    let mut env: Vec<(String, String)> = container_env(&pod.containers[0]).into_iter().collect();
    env.push(("KUBECONFIG".into(), kubeconfig.path.display().to_string()));
    // The downward API's value.
    env.push(("POD_NAME".into(), pod_name.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let controller = ControllerProcess::start_with_env(stack, log_name, &[], &env);
    (controller, kubeconfig)
}

/// A kubeconfig file that authenticates as a ServiceAccount with a TokenRequest token;
/// removed when dropped.
pub(crate) struct ServiceAccountKubeconfig {
    path: PathBuf,
}

impl ServiceAccountKubeconfig {
    async fn create(stack: &Stack, namespace: &str, name: &str) -> ServiceAccountKubeconfig {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                // Empty: the apiserver's own audience.
                audiences: Vec::new(),
                expiration_seconds: Some(3600),
                bound_object_ref: None,
            },
            ..Default::default()
        };
        let token = Api::<ServiceAccount>::namespaced(stack.kube.clone(), namespace)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"))
            .status
            .expect("TokenRequest status")
            .token;
        let server = stack
            .env
            .get("KUBE_SERVER")
            .expect("the stack's env file names KUBE_SERVER");
        let ca = stack
            .env
            .get("KUBE_CA_FILE")
            .expect("the stack's env file names KUBE_CA_FILE");
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": ca}}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "local", "user": name, "namespace": namespace}}],
            "current-context": name,
        });
        let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique(name)));
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
        };
        file.write_all(
            serde_yaml::to_string(&config)
                .expect("kubeconfig YAML")
                .as_bytes(),
        )
        .expect("write the kubeconfig");
        ServiceAccountKubeconfig { path }
    }

    async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.path).expect("read the kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("the ServiceAccount's kubeconfig is valid");
        Client::try_from(config).expect("kube client")
    }
}

impl Drop for ServiceAccountKubeconfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
