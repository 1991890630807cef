//! The Helm chart `infra/helm/secret-bridge`: `helm lint` finds nothing, the CRDs render only
//! when asked, each mode gets exactly its RBAC rules, and settings the controller would refuse
//! fail the install.

use std::collections::BTreeMap;

use secret_bridge_tests::Stack;
use secret_bridge_tests::deploy::helm::{
    CHART, cluster_role_rules, helm, helm_ok, render, rules, yaml_documents,
};
use secret_bridge_tests::stack::workspace_root;
use serde_json::{Value, json};

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
        let output = helm_ok(&stack, &args).await;
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
            ("apps", "deployments", "list,patch,watch"),
            ("apps", "statefulsets", "list,patch,watch"),
            ("apps", "daemonsets", "list,patch,watch"),
            ("events.k8s.io", "events", "create,patch"),
        ])
    );
    // Restarting workloads (on by default) is the only reason to touch them.
    let without_restarts =
        cluster_role_rules(&render(&stack, &["--set", "restartWorkloads.enabled=false"]).await);
    let mut expected = sync.clone();
    expected.retain(|(group, _), _| group != "apps");
    assert_eq!(without_restarts, expected);
    // Minting ServiceAccount tokens (IRSA with `auth.jwt`) is granted only when asked:
    // cluster-wide, or in named namespaces for named ServiceAccounts.
    let with_tokens = cluster_role_rules(
        &render(&stack, &["--set", "rbac.serviceAccountTokens.enabled=true"]).await,
    );
    let mut expected = sync.clone();
    expected.extend(rules(&[
        ("", "serviceaccounts", "get"),
        ("", "serviceaccounts/token", "create"),
    ]));
    assert_eq!(with_tokens, expected);
    let scoped = render(
        &stack,
        &[
            "--set",
            "rbac.serviceAccountTokens.enabled=true",
            "--set",
            "rbac.serviceAccountTokens.namespaces={team-a,team-b}",
            "--set",
            "rbac.serviceAccountTokens.serviceAccountNames={reader}",
        ],
    )
    .await;
    assert_eq!(cluster_role_rules(&scoped), sync, "nothing cluster-wide");
    let tokens = |doc: &&Value| {
        doc["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("-tokens"))
    };
    let roles: Vec<&Value> = scoped
        .iter()
        .filter(|doc| doc["kind"] == "Role")
        .filter(tokens)
        .collect();
    let namespaces: Vec<&str> = roles
        .iter()
        .map(|role| role["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["team-a", "team-b"]);
    for role in &roles {
        for rule in role["rules"].as_array().unwrap() {
            assert_eq!(rule["resourceNames"], json!(["reader"]), "{rule}");
        }
    }
    assert_eq!(
        scoped
            .iter()
            .filter(|doc| doc["kind"] == "RoleBinding")
            .filter(tokens)
            .count(),
        2
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
        (
            &["--set", "leaderElection.enabled=false"][..],
            "replicaCount above 1 needs leaderElection.enabled",
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
async fn replicas_elect_a_leader_with_a_lease_of_their_own() {
    let stack = Stack::connect().await;
    let documents = render(&stack, &[]).await;
    let deployment = documents
        .iter()
        .find(|doc| doc["kind"] == "Deployment")
        .expect("a Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2, "two replicas by default");
    let env: BTreeMap<&str, &str> = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    for (name, value) in [
        ("LEADER_ELECT", "true"),
        ("LEADER_ELECT_RESOURCE_NAME", "release-secret-bridge"),
        ("LEADER_ELECT_RESOURCE_NAMESPACE", "secret-bridge"),
        ("LEADER_ELECT_LEASE_DURATION", "15s"),
        ("LEADER_ELECT_RENEW_DEADLINE", "10s"),
        ("LEADER_ELECT_RETRY_PERIOD", "2s"),
    ] {
        assert_eq!(env.get(name).copied(), Some(value), "{name}");
    }
    assert!(
        documents
            .iter()
            .any(|doc| doc["kind"] == "PodDisruptionBudget"),
        "replicas come with a PodDisruptionBudget"
    );
    let lease_roles: Vec<&Value> = documents
        .iter()
        .filter(|doc| doc["kind"] == "Role" || doc["kind"] == "RoleBinding")
        .collect();
    assert_eq!(lease_roles.len(), 2, "a Role and its binding for the Lease");
    for doc in &lease_roles {
        assert_eq!(doc["metadata"]["namespace"], "secret-bridge", "{doc}");
    }
    let role = lease_roles
        .iter()
        .find(|doc| doc["kind"] == "Role")
        .expect("the Lease Role");
    assert_eq!(
        role["rules"],
        json!([{
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "watch", "create", "update"],
        }]),
        "only Leases, only in the release's namespace"
    );

    // One replica without election: no Lease, no Role.
    let single = render(
        &stack,
        &[
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "replicaCount=1",
        ],
    )
    .await;
    assert!(single.iter().all(|doc| doc["kind"] != "Role"));
    let deployment = single
        .iter()
        .find(|doc| doc["kind"] == "Deployment")
        .expect("a Deployment");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(
        env.contains(r#""name":"LEADER_ELECT","value":"false""#),
        "{env}"
    );
}

#[test]
fn chart_app_version_is_the_controller_version() {
    let chart = std::fs::read_to_string(workspace_root().join(CHART).join("Chart.yaml"))
        .expect("Chart.yaml");
    let chart: Value = yaml_serde::from_str(&chart).expect("Chart.yaml is YAML");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(secret_bridge_controller::VERSION.split(' ').next().unwrap()),
        "Chart.yaml appVersion is the controller's version (the image tag scripts/image builds)"
    );
}
