//! The README's "Deploying on AWS and EKS": every command of it, run unchanged against the
//! emulator and the local apiserver (see `secret_bridge_tests::deploy::steps`). Then the checks
//! that the two halves fit: the stack's role trusts the release's ServiceAccount, the chart has
//! the stack's queue and role, and the controller run as the release's pod syncs the example's
//! ExternalSecret and follows a rotation by the stack's rule and queue.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::cleanup::Leftovers;
use secret_bridge_tests::deploy::helm::{container_env, run_deployment};
use secret_bridge_tests::deploy::steps::DeploySteps;
use secret_bridge_tests::wait::wait_for_secret_value;
use secret_bridge_tests::{Stack, unique};
use serde_json::json;

#[tokio::test]
async fn readme_deploy_steps_deploy_both_halves() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let started = Instant::now();
    let cluster = unique("readme-eks");
    let name = unique("readme-deploy");
    let prefix = format!("{}/", unique("readme-prefix"));
    let namespace = unique("readme-sb");
    let app_namespace = unique("readme-app");
    let service_account = unique("readme-sa");
    let class = unique("readme-class");
    let store = unique("readme-store");
    // The remove step deletes these; a failed run must not leave them.
    let leftovers = Leftovers::default();
    leftovers.cloudformation_stack(&aws.region, &name);
    for ns in [&namespace, &app_namespace] {
        leftovers.namespace(ns);
    }
    let mut steps = DeploySteps::load(
        &stack,
        "README.md",
        "settings",
        &[
            ("AWS_REGION", &aws.region),
            ("CLUSTER", &cluster),
            ("STACK", &name),
            ("NAMESPACE", &namespace),
            ("RELEASE", &name),
            ("SERVICE_ACCOUNT", &service_account),
            ("CONTROLLER_CLASS", &class),
            ("SECRET_PREFIX", &prefix),
            ("APP_NAMESPACE", &app_namespace),
            ("STORE", &store),
            ("IMAGE", "secret-bridge-controller"),
            ("TAG", "e2e"),
        ],
    )
    .await;
    // What the reader already has: an EKS cluster (in the emulator, for its OIDC issuer) and
    // the secret.
    steps
        .shell(
            r#"aws eks create-cluster --name "$CLUSTER" --role-arn arn:aws:iam::123456789012:role/eks \
                 --resources-vpc-config subnetIds=subnet-1 >/dev/null"#,
        )
        .await;
    let secret = format!("{prefix}app");
    let first = unique("readme-v1");
    aws.upsert_secret(&secret, &json!({ "password": first }).to_string())
        .await;

    steps.run_through("helm-install").await;
    eprintln!(
        "README: both halves deployed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let oidc = steps.var("OIDC").to_owned();
    assert!(
        oidc.starts_with("oidc.eks.") && !oidc.starts_with("https://"),
        "{oidc}"
    );
    let role_arn = steps.var("ROLE_ARN").to_owned();
    let trust = aws.role_trust_policy(&role_arn).await;
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"][format!("{oidc}:sub")],
        format!("system:serviceaccount:{namespace}:{service_account}"),
        "the role trusts the release's ServiceAccount"
    );
    let account = Api::<ServiceAccount>::namespaced(kube.clone(), &namespace)
        .get(&service_account)
        .await
        .expect("the release's ServiceAccount");
    assert_eq!(
        account.annotations().get("eks.amazonaws.com/role-arn"),
        Some(&role_arn)
    );
    let deployment = format!("{name}-secret-bridge");
    let pod = Api::<Deployment>::namespaced(kube.clone(), &namespace)
        .get(&deployment)
        .await
        .expect("the release's Deployment")
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod template");
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some(service_account.as_str())
    );
    let env = container_env(&pod.containers[0]);
    assert_eq!(env["SQS_QUEUE_URL"], steps.var("QUEUE_URL"));
    assert_eq!(env["CONTROLLER_CLASS"], class);

    let (controller, _kubeconfig) = run_deployment(
        &stack,
        &namespace,
        &deployment,
        &format!("{deployment}-5f7b9d-q8x2m"),
        &name,
    )
    .await;
    steps.run_through("check").await;
    wait_for_secret_value(
        kube,
        &app_namespace,
        "app-secret",
        "password",
        &first,
        Duration::from_secs(10),
    )
    .await;
    // A rotation: Secrets Manager's event on the default bus, the stack's rule, its queue.
    let second = unique("readme-v2");
    let rotated = aws
        .rotate(&secret, &json!({ "password": second }).to_string())
        .await;
    let sent = Instant::now();
    aws.publish_label_updated("default", &secret, &rotated)
        .await;
    wait_for_secret_value(
        kube,
        &app_namespace,
        "app-secret",
        "password",
        &second,
        Duration::from_secs(10),
    )
    .await;
    eprintln!(
        "README: rotation reached the Secret {} ms after the event",
        sent.elapsed().as_millis()
    );
    assert!(
        !controller.logs().contains(&format!(
            "system:serviceaccount:{namespace}:{service_account}"
        )),
        "RBAC refused the controller something ({})",
        controller.log_path.display()
    );
    controller.assert_logs_hide(&[&first, &second]);
    drop(controller);

    steps.run_through("remove").await;
    steps.finish(&["settings", "image", "rollout"]);
    let queue = steps.var("QUEUE_URL").to_owned();
    assert!(
        aws.sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .send()
            .await
            .is_err(),
        "the remove step deleted the stack's queue"
    );
    steps
        .shell(r#"aws eks delete-cluster --name "$CLUSTER" >/dev/null"#)
        .await;
    let _ = aws
        .secrets
        .delete_secret()
        .secret_id(&secret)
        .force_delete_without_recovery(true)
        .send()
        .await;
    for ns in [&namespace, &app_namespace] {
        let _ = Api::<Namespace>::all(kube.clone())
            .delete(ns, &DeleteParams::default())
            .await;
    }
    eprintln!(
        "README deploy steps: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}
