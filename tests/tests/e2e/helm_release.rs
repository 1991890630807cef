//! A release of the Helm chart installed on the local apiserver is enough to run the
//! controller, in sync mode and in accelerator mode.
//!
//! There is no kubelet, so a release's pod stays Pending. The tests run the controller as a
//! process instead, with the environment of the release's Deployment and a TokenRequest token
//! of its ServiceAccount: whatever the controller needs must be granted by the chart's
//! ClusterRole (an RBAC refusal in its log fails the test), and requests outside the role are
//! refused with 403.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use secret_bridge_controller::api::{ClusterExternalSecret, ExternalSecret};
use secret_bridge_controller::events::eso_trigger::FORCE_SYNC_ANNOTATION;
use secret_bridge_controller::rollout::RESTARTED_FROM_ANNOTATION;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::deploy::helm::{
    Release, api_group_has_version, assert_forbidden, assert_hardened, container_env, helm,
    yaml_documents,
};
use secret_bridge_tests::kube_helpers::{apply_value, delete_external_secret, external_secret};
use secret_bridge_tests::manifest::{self, Manifest};
use secret_bridge_tests::wait::{
    wait_for_event, wait_for_ready, wait_for_reason, wait_for_secret_gone,
};
use secret_bridge_tests::{Stack, Tenant, unique, wait_for};
use serde_json::json;

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
    assert_eq!(env["NAMESPACED_STORE_AMBIENT_CREDENTIALS"], "false");
    assert_eq!(env["RESTART_WORKLOADS"], "true");
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
        .external_secret("app")
        .refresh_interval("1h")
        .target(json!({"deletionPolicy": "Delete"}))
        .extract(&name)
        .apply(kube, ns)
        .await;
    tenant
        .wait_for_value("app", "password", &first, Duration::from_secs(30))
        .await;
    let (reason, message) = wait_for_ready(kube, ns, "app", "True", Duration::from_secs(10)).await;
    assert_eq!(reason, "SecretSynced", "{message}");
    // The controller's first write, as ESO.
    let event = wait_for_event(kube, ns, "app", "Created", Duration::from_secs(10)).await;
    assert_eq!(event.reporting_controller.as_deref(), Some("secret-bridge"));
    assert_eq!(
        event.reporting_instance.as_deref(),
        Some(pod_name.as_str()),
        "POD_NAME names the reporting instance"
    );

    // A Deployment reading the Secret, opted in to restarts with Reloader's annotation.
    apply_value(
        kube,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "reader", "annotations": {"reloader.stakater.com/auto": "true"}},
            "spec": {"selector": {"matchLabels": {"app": "reader"}}, "template": {
                "metadata": {"labels": {"app": "reader"}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1",
                    "envFrom": [{"secretRef": {"name": "app"}}]}]}}}}),
        ns,
    )
    .await;

    let second = unique("helm-value");
    let rotated = aws
        .rotate(&name, &json!({ "password": second }).to_string())
        .await;
    aws.publish_label_updated(&bus, &name, &rotated).await;
    tenant
        .wait_for_value("app", "password", &second, Duration::from_secs(10))
        .await;
    // The role lets the controller watch and restart it.
    wait_for(
        "the Deployment's restart",
        Duration::from_secs(10),
        || async {
            let reader = Api::<Deployment>::namespaced(kube.clone(), ns)
                .get("reader")
                .await
                .ok()?;
            let annotations = reader.spec?.template.metadata?.annotations?;
            annotations.get(RESTARTED_FROM_ANNOTATION).map(drop)
        },
    )
    .await;

    aws.delete_secret_announced(&bus, &name, &rotated.arn).await;
    wait_for_secret_gone(
        kube,
        ns,
        "app",
        "deletionPolicy Delete",
        Duration::from_secs(10),
    )
    .await;
    // As ESO, a Secret deleted by deletionPolicy Delete is the expected outcome: Ready=True.
    wait_for_reason(kube, ns, "app", "True", "SecretDeleted").await;

    // A store missing from the controller's cache is read from the API (`get`).
    for (es, kind) in [
        ("no-store", "SecretStore"),
        ("no-cluster-store", "ClusterSecretStore"),
    ] {
        let store = unique("missing");
        manifest::ExternalSecret::new(es)
            .store_ref(kind, &store)
            .extract(&name)
            .apply(kube, ns)
            .await;
        wait_for(
            &format!("the controller to report that {kind} {store} is missing"),
            Duration::from_secs(10),
            || async {
                let logs = controller.logs();
                // The chart's JSON logs name the object as ESO's do; text logs as kube does.
                let json = format!(r#""ExternalSecret":{{"name":"{es}","namespace":"{ns}"}}"#);
                logs.lines()
                    .any(|line| {
                        (line.contains(&format!("{es}.{ns}")) || line.contains(&json))
                            && line.contains(&store)
                    })
                    .then_some(())
            },
        )
        .await;
        // With a class, a missing store proves nothing is ours: no status is written.
        let untouched = external_secret(kube, ns, es).await.expect("ExternalSecret");
        assert!(
            untouched.ready_condition().is_none(),
            "{es}: {:?}",
            untouched.status
        );
        delete_external_secret(kube, ns, es).await;
    }

    // The chart's default refuses to lend the controller's own AWS identity to a namespaced
    // store without `auth`.
    tenant.apply(&tenant.secret_store("ambient")).await;
    tenant
        .external_secret("ambient")
        .secret_store("ambient")
        .extract(&name)
        .apply(kube, ns)
        .await;
    let (_, message) = wait_for_ready(kube, ns, "ambient", "False", Duration::from_secs(10)).await;
    assert!(
        message.contains("does not lend its own AWS identity to namespaced SecretStores"),
        "{message}"
    );
    delete_external_secret(kube, ns, "ambient").await;

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
    for (es, interval) in [("hourly", "1h"), ("trap", "0")] {
        tenant
            .external_secret(es)
            .refresh_interval(interval)
            .extract(&name)
            .apply(kube, ns)
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
    wait_for_event(
        kube,
        ns,
        "trap",
        "ForceSyncIgnored",
        Duration::from_secs(10),
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
