//! The Helm chart `infra/helm/secret-bridge` on the local stack: `helm` itself, what a
//! chart renders, a release installed for a test (uninstalled when dropped), and the
//! controller run as a release's pod would run it (there is no kubelet): with the
//! Deployment's environment and a TokenRequest token of its ServiceAccount.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Namespace, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::stack::workspace_root;
use crate::{ControllerProcess, Stack, unique};

/// The chart, relative to the workspace root.
pub const CHART: &str = "infra/helm/secret-bridge";

/// What `helm` printed, and whether it succeeded.
pub struct HelmOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the stack's helm in the workspace root, against the stack's apiserver.
pub async fn helm(stack: &Stack, args: &[&str]) -> HelmOutput {
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

/// Runs helm like [`helm`]; panics with its output unless it succeeds.
pub async fn helm_ok(stack: &Stack, args: &[&str]) -> HelmOutput {
    let output = helm(stack, args).await;
    assert!(
        output.success,
        "helm {} failed:\n{}{}",
        args.join(" "),
        output.stdout,
        output.stderr
    );
    output
}

/// The documents `helm template` renders with `values`.
pub async fn render(stack: &Stack, values: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "release", CHART, "--namespace", "secret-bridge"];
    args.extend_from_slice(values);
    yaml_documents(&helm_ok(stack, &args).await.stdout)
}

/// The documents of a YAML stream, without empty ones.
pub fn yaml_documents(text: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).expect("valid YAML"))
        .filter(|value| !value.is_null())
        .collect()
}

/// The rules of the one ClusterRole, as (API group, resource) → sorted verbs.
pub fn cluster_role_rules(documents: &[Value]) -> BTreeMap<(String, String), String> {
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

/// Expected rules, in the shape of [`cluster_role_rules`].
pub fn rules(expected: &[(&str, &str, &str)]) -> BTreeMap<(String, String), String> {
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
pub fn assert_hardened(container: &Container) {
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
pub fn container_env(container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect()
}

pub async fn api_group_has_version(client: &Client, group: &str, version: &str) -> bool {
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

pub fn assert_forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// A Helm release of the chart, uninstalled when dropped if the test did not get that far.
pub struct Release {
    pub name: String,
    pub namespace: String,
    helm: String,
    kubectl: Option<String>,
    kubeconfig: String,
    uninstalled: bool,
}

impl Release {
    pub async fn install(
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
        helm_ok(stack, &args).await;
        release
    }

    pub fn fullname(&self) -> String {
        format!("{}-secret-bridge", self.name)
    }

    /// The name the test gives its stand-in for the release's pod.
    pub fn pod_name(&self) -> String {
        format!("{}-7d4b9c-x2x4z", self.fullname())
    }

    pub async fn pod_spec(&self, stack: &Stack) -> PodSpec {
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
    pub async fn run_controller(
        &self,
        stack: &Stack,
    ) -> (ControllerProcess, ServiceAccountKubeconfig) {
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
    pub fn assert_never_refused(&self, controller: &ControllerProcess) {
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
    pub async fn uninstall(mut self, stack: &Stack) {
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
pub async fn run_deployment(
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
pub struct ServiceAccountKubeconfig {
    path: PathBuf,
}

impl ServiceAccountKubeconfig {
    pub async fn create(stack: &Stack, namespace: &str, name: &str) -> ServiceAccountKubeconfig {
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
            yaml_serde::to_string(&config)
                .expect("kubeconfig YAML")
                .as_bytes(),
        )
        .expect("write the kubeconfig");
        ServiceAccountKubeconfig { path }
    }

    pub async fn client(&self) -> Client {
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
