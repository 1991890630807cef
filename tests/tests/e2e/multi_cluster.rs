//! `infra/examples/multi-cluster/`: one account, two clusters, the fan-out Lambda routing by
//! prefix. The test runs the example README's deploy steps unchanged (see
//! `secret_bridge_tests::deploy::steps`), then proves the routing end to end: a rotation of
//! `team-a/app` refreshes cluster A's Secret and sends nothing to cluster B's queue, and the
//! other way round.
//!
//! Both "clusters" live on the one local kube-apiserver: two namespaces, two releases, two
//! controller processes with distinct `--controller-class` and `--queue-url`. moto cannot
//! invoke a Lambda, so the test runs the `bootstrap` of the zip the steps uploaded, with the
//! environment the routing stack gave the function, against a small Lambda Runtime API.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use secret_bridge_tests::aws::{Aws, Written};
use secret_bridge_tests::deploy::helm::{ServiceAccountKubeconfig, run_deployment};
use secret_bridge_tests::deploy::lambda::LambdaProcess;
use secret_bridge_tests::deploy::steps::DeploySteps;
use secret_bridge_tests::kube_helpers::delete_external_secret;
use secret_bridge_tests::metrics::{SQS_DELETED, SQS_RECEIVED};
use secret_bridge_tests::wait::wait_for_secret_value;
use secret_bridge_tests::{ControllerProcess, Stack, unique, wait_for};
use serde_json::{Value, json};

const GUIDE: &str = "infra/examples/multi-cluster/README.md";
const FUNCTION: &str = "secret-bridge-fan-out-fan-out";
const STACKS: [&str; 3] = [
    "secret-bridge-fan-out",
    "secret-bridge-cluster-a",
    "secret-bridge-cluster-b",
];

/// One simulated cluster of the example.
struct Cluster {
    letter: &'static str,
    namespace: String,
    secret: String,
    controller: ControllerProcess,
    /// The ServiceAccount's kubeconfig, which the controller reads: kept while it runs.
    _kubeconfig: ServiceAccountKubeconfig,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_routes_each_teams_rotations_to_its_cluster_only() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let started = std::time::Instant::now();

    let cluster_a = unique("mc-cluster-a");
    let cluster_b = unique("mc-cluster-b");
    let bucket = unique("mc-lambda-code");
    let bus = unique("mc-bus");
    aws.remove_bus_on_drop(&bus);
    let context = kube_context(&stack).await;
    let mut steps = DeploySteps::load(
        &stack,
        GUIDE,
        "settings",
        &[
            ("AWS_REGION", &aws.region),
            ("CLUSTER_A", &cluster_a),
            ("CLUSTER_B", &cluster_b),
            ("CONTEXT_A", &context),
            ("CONTEXT_B", &context),
            ("CODE_BUCKET", &bucket),
            // moto cannot deliver to a Lambda target: keep the rules off the default bus, on
            // which other tests publish.
            ("EVENT_BUS", &bus),
            ("LAMBDA_ARCH", "x86_64"),
            ("IMAGE", "secret-bridge-controller"),
            ("TAG", "e2e"),
        ],
    )
    .await;

    // What the reader already has: two EKS clusters, a code bucket, the bus, the two secrets.
    // A previous run that died may have left the example's fixed names behind.
    steps
        .shell(&format!(
            r#"
for c in secret-bridge-cluster-a secret-bridge-cluster-b; do
  helm uninstall "$c" --namespace secret-bridge >/dev/null 2>&1 || true
done
for s in {stacks}; do
  if aws cloudformation describe-stacks --stack-name "$s" >/dev/null 2>&1; then
    aws cloudformation delete-stack --stack-name "$s"
    aws cloudformation wait stack-delete-complete --stack-name "$s"
  fi
done
for c in "$CLUSTER_A" "$CLUSTER_B"; do
  aws eks create-cluster --name "$c" --role-arn arn:aws:iam::123456789012:role/eks \
    --resources-vpc-config subnetIds=subnet-1 >/dev/null
done
aws s3 mb "s3://$CODE_BUCKET" >/dev/null
aws events create-event-bus --name "$EVENT_BUS" >/dev/null
"#,
            stacks = STACKS.join(" ")
        ))
        .await;
    for namespace in ["team-a", "team-b", "secret-bridge"] {
        delete_external_secret(kube, namespace, "app").await;
        wait_for(
            &format!("a previous run's namespace {namespace} to be gone"),
            Duration::from_secs(60),
            || async {
                let ns = Api::<Namespace>::all(kube.clone())
                    .get_opt(namespace)
                    .await
                    .ok()?;
                ns.is_none_or(|n| n.metadata.deletion_timestamp.is_none())
                    .then_some(())
            },
        )
        .await;
    }
    let mut values = HashMap::new();
    for letter in ["a", "b"] {
        let value = unique(&format!("mc-{letter}-v1"));
        aws.upsert_secret(
            &format!("team-{letter}/app"),
            &json!({ "password": value }).to_string(),
        )
        .await;
        values.insert(letter, value);
    }

    steps.run_through("helm-cluster-b").await;
    eprintln!(
        "deployed both halves in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The charts got each cluster's stack outputs.
    for letter in ["a", "b"] {
        let upper = letter.to_uppercase();
        let account = Api::<ServiceAccount>::namespaced(kube.clone(), "secret-bridge")
            .get(&format!("secret-bridge-cluster-{letter}"))
            .await
            .expect("the release's ServiceAccount");
        assert_eq!(
            account.annotations().get("eks.amazonaws.com/role-arn"),
            Some(&steps.var(&format!("ROLE_ARN_{upper}")).to_owned()),
            "cluster {upper}'s ServiceAccount has its stack's role"
        );
    }

    // The routing stack's function: its environment and its code, as deployed.
    let function = steps
        .shell(&format!(
            "aws lambda get-function-configuration --function-name {FUNCTION} --output json"
        ))
        .await;
    let function: Value = serde_json::from_str(&function).expect("GetFunctionConfiguration JSON");
    let function_env: BTreeMap<String, String> =
        serde_json::from_value(function["Environment"]["Variables"].clone())
            .expect("the function's environment");
    let routes: Value = serde_json::from_str(&function_env["ROUTES"]).expect("ROUTES is JSON");
    assert_eq!(
        routes,
        json!([
            {"queueArn": steps.var("QUEUE_ARN_A"), "namePrefix": "team-a/"},
            {"queueArn": steps.var("QUEUE_ARN_B"), "namePrefix": "team-b/"},
        ])
    );
    let code_dir = std::env::temp_dir().join(unique("mc-lambda"));
    steps
        .shell(&format!(
            "aws s3 cp \"s3://$CODE_BUCKET/$CODE_KEY\" '{dir}/code.zip' >/dev/null && \
             python3 -m zipfile -e '{dir}/code.zip' '{dir}' && chmod 0755 '{dir}/bootstrap'",
            dir = code_dir.display()
        ))
        .await;

    // Each cluster's controller, as its release's pod would run it.
    let mut clusters = Vec::new();
    for letter in ["a", "b"] {
        let release = format!("secret-bridge-cluster-{letter}");
        let (controller, kubeconfig) = run_deployment(
            &stack,
            "secret-bridge",
            &release,
            &format!("{release}-6c9d8b-k2j4q"),
            &unique(&format!("multi-cluster-{letter}")),
        )
        .await;
        clusters.push(Cluster {
            letter,
            namespace: format!("team-{letter}"),
            secret: format!("team-{letter}/app"),
            controller,
            _kubeconfig: kubeconfig,
        });
    }
    steps.run_through("check").await;
    for cluster in &clusters {
        let first = &values[cluster.letter];
        wait_for_secret_value(
            kube,
            &cluster.namespace,
            "app",
            "password",
            first,
            Duration::from_secs(10),
        )
        .await;
    }

    let lambda =
        LambdaProcess::start(&stack, FUNCTION, &code_dir.join("bootstrap"), &function_env).await;
    for (rotated, other) in [(0, 1), (1, 0)] {
        let (rotated, other) = (&clusters[rotated], &clusters[other]);
        let received_before = other.controller.metrics().await.value(SQS_RECEIVED);
        let deleted_before = rotated.controller.metrics().await.value(SQS_DELETED);
        let value = unique(&format!("mc-{}-v2", rotated.letter));
        let written = aws
            .rotate(&rotated.secret, &json!({ "password": value }).to_string())
            .await;
        let sent = std::time::Instant::now();
        let answer = lambda
            .invoke(&label_updated(&aws.region, &rotated.secret, &written))
            .await;
        assert_eq!(
            answer["delivered"], 1,
            "the Lambda delivers {} to one queue: {answer}",
            rotated.secret
        );
        wait_for_secret_value(
            kube,
            &rotated.namespace,
            "app",
            "password",
            &value,
            Duration::from_secs(10),
        )
        .await;
        eprintln!(
            "{} rotated: cluster {}'s Secret refreshed {} ms after the invocation",
            rotated.secret,
            rotated.letter.to_uppercase(),
            sent.elapsed().as_millis()
        );
        // The rotated cluster's controller has processed the message to its end (deleted it).
        // The Lambda answered only after sending, so a message for the other cluster would be
        // in its queue by now: still there (visible or in flight), or, if already consumed,
        // counted as received before it was deleted. So the queue is read first, the counter
        // second.
        rotated
            .controller
            .wait_for_metric(SQS_DELETED, deleted_before + 1.0, Duration::from_secs(10))
            .await;
        let other_queue = steps.var(&format!("QUEUE_URL_{}", other.letter.to_uppercase()));
        assert_eq!(aws.queue_depth(other_queue).await, 0);
        assert_eq!(
            other.controller.metrics().await.value(SQS_RECEIVED),
            received_before,
            "cluster {}'s controller received a message for {}",
            other.letter.to_uppercase(),
            rotated.secret
        );
        wait_for_secret_value(
            kube,
            &other.namespace,
            "app",
            "password",
            &values[other.letter],
            Duration::from_secs(1),
        )
        .await;
        values.insert(rotated.letter, value);
    }
    let logs = lambda.stop().await;
    assert!(
        logs.lines()
            .filter(|l| l.contains("event delivered"))
            .count()
            == 2,
        "one delivery per rotation:\n{logs}"
    );

    for cluster in &clusters {
        assert!(
            !cluster.controller.logs().contains(&format!(
                "system:serviceaccount:secret-bridge:secret-bridge-cluster-{}",
                cluster.letter
            )),
            "RBAC refused cluster {}'s controller something ({})",
            cluster.letter,
            cluster.controller.log_path.display()
        );
        let secrets: Vec<&str> = values.values().map(String::as_str).collect();
        cluster.controller.assert_logs_hide(&secrets);
    }
    drop(clusters);

    steps.run_through("remove").await;
    steps.finish(&["settings", "image", "rollout"]);
    steps
        .shell(
            r#"
for c in "$CLUSTER_A" "$CLUSTER_B"; do aws eks delete-cluster --name "$c" >/dev/null; done
aws s3 rm "s3://$CODE_BUCKET" --recursive >/dev/null
aws s3 rb "s3://$CODE_BUCKET" >/dev/null
aws events delete-event-bus --name "$EVENT_BUS"
"#,
        )
        .await;
    let _ = std::fs::remove_dir_all(&code_dir);
    let _ = Api::<Namespace>::all(kube.clone())
        .delete("secret-bridge", &DeleteParams::default())
        .await;
    eprintln!(
        "multi-cluster example: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}

/// The local kubeconfig's current context (both "clusters" are this apiserver).
async fn kube_context(stack: &Stack) -> String {
    let output = tokio::process::Command::new(&stack.env["KUBECTL"])
        .args(["config", "current-context"])
        .env("KUBECONFIG", &stack.env["KUBECONFIG"])
        .output()
        .await
        .expect("run kubectl");
    assert!(output.status.success(), "kubectl config current-context");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The `Secret Label Updated` event Secrets Manager publishes when AWSCURRENT moves.
fn label_updated(region: &str, name: &str, written: &Written) -> Value {
    let account = written.arn.split(':').nth(4).unwrap_or("123456789012");
    json!({
        "version": "0",
        "id": unique("mc-event"),
        "detail-type": "Secret Label Updated",
        "source": "aws.secretsmanager",
        "account": account,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": region,
        "resources": [written.arn],
        "detail": {"name": name, "labelUpdated": "AWSCURRENT", "versionId": written.version_id},
    })
}
