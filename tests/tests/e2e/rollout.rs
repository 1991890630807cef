//! Restarting workloads after a rotation (`--restart-workloads`): a rotation in AWS and its
//! event end in a new ReplicaSet made by the kube-controller-manager's deployment controller,
//! for the workloads that opted in with Reloader's annotations or are named by the
//! ExternalSecret — and in nothing else: not on the first sync, not for a workload without
//! annotations, not for a change of metadata only.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, PodTemplateSpec, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use secret_bridge_controller::rollout::RESTARTED_FROM_ANNOTATION;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::apply_value;
use secret_bridge_tests::manifest::Manifest;
use secret_bridge_tests::wait::{wait_for_event, wait_for_event_noting, wait_until};
use secret_bridge_tests::{Stack, Tenant, unique, wait_for};
use serde_json::{Value, json};

const DATA_HASH: &str = "reconcile.external-secrets.io/data-hash";
/// Generous: the local stack is shared with other tests (and thousands of ExternalSecrets).
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_rotation_restarts_the_workloads_that_opted_in_and_nothing_else() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "rollout", "us-east-1").await;
    let ns = tenant.namespace.clone();
    let app = unique("rollout-app");
    let db = unique("rollout-db");
    let queue_name = unique("rollout");
    let bus = unique("rollout-bus");
    let _cleanup = Cleanup {
        namespace: ns.clone(),
        queue: (queue_name.clone(), bus.clone()),
    };
    aws.upsert_secret(&app, r#"{"password":"rollout-v1"}"#)
        .await;
    aws.upsert_secret(&db, r#"{"token":"rollout-db-v1"}"#).await;
    let queue = aws.event_queue(&queue_name, &bus, None, 30).await;

    // Workloads, each reading Secrets a different way.
    let env_from = |secret: &str| json!({"secretRef": {"name": secret}});
    let workloads = [
        // Reloader's auto: reads both Secrets one event changes: restarted once.
        workload(
            "Deployment",
            "api",
            json!({"reloader.stakater.com/auto": "true"}),
            json!({"envFrom": [env_from("app-secret"), env_from("app-copy")]}),
            json!([]),
        ),
        // Named by the ExternalSecret's own annotation; no Reloader annotation.
        workload("Deployment", "worker", json!({}), json!({}), json!([])),
        // Reads nothing through secret-bridge's annotations: must stay as it is.
        workload(
            "Deployment",
            "untouched",
            json!({}),
            json!({"envFrom": [env_from("app-secret")]}),
            json!([]),
        ),
        // Reloader's named list (a Secret it does not read), and auto on the one it reads.
        workload(
            "StatefulSet",
            "db",
            json!({
                "secret.reloader.stakater.com/reload": "app-secret",
                "reloader.stakater.com/auto": "true",
            }),
            json!({"env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "db-secret", "key": "token"}}}]}),
            json!([]),
        ),
        // Reloader's secret auto, through a projected volume.
        workload(
            "DaemonSet",
            "agent",
            json!({"secret.reloader.stakater.com/auto": "true"}),
            json!({}),
            json!([{"name": "creds", "projected": {"sources": [{"secret": {"name": "app-secret"}}]}}]),
        ),
    ];
    for manifest in workloads {
        apply_value(kube, manifest, &ns).await;
    }
    // The deployment controller made the first ReplicaSets: a later template change is new.
    for name in ["api", "worker", "untouched"] {
        wait_for(&format!("the first ReplicaSet of {name}"), WAIT, || async {
            (replica_sets(kube, &ns, name).await.len() == 1).then_some(())
        })
        .await;
    }

    for (name, key, template) in [
        (
            "app-secret",
            &app,
            json!({"metadata": {"labels": {"tier": "a"}}}),
        ),
        ("app-copy", &app, json!({})),
        ("db-secret", &db, json!({})),
    ] {
        let mut es = tenant
            .external_secret(name)
            .refresh_interval("1h")
            .extract(key);
        if name == "app-secret" {
            es = es
                .target(json!({"template": template}))
                .annotations(json!({"secret-bridge.io/restart": "deployment/worker"}));
        }
        es.apply(kube, &ns).await;
    }
    let controller = tenant.start_controller(
        &stack,
        &[
            "--queue-url",
            &queue,
            "--restart-workloads=true",
            "--restart-min-interval=0s",
        ],
    );
    for name in ["app-secret", "app-copy"] {
        tenant
            .wait_for_value(name, "password", "rollout-v1", WAIT)
            .await;
    }
    tenant
        .wait_for_value("db-secret", "token", "rollout-db-v1", WAIT)
        .await;

    // The rotation, and its event.
    let rotated_at = Instant::now();
    let written = aws.rotate(&app, r#"{"password":"rollout-v2"}"#).await;
    aws.publish_label_updated(&bus, &app, &written).await;
    let new_replica_set = wait_for("a new ReplicaSet of api", WAIT, || async {
        replica_sets(kube, &ns, "api")
            .await
            .into_iter()
            .find(|rs| rs_annotation(rs).is_some())
    })
    .await;
    let took = rotated_at.elapsed();
    println!("rotation in AWS -> new ReplicaSet of the Deployment: {took:?}");
    let app_hash = data_hash(kube, &ns, "app-secret").await;
    let copy_hash = data_hash(kube, &ns, "app-copy").await;
    assert_eq!(
        rs_annotation(&new_replica_set),
        Some(format!("app-copy={copy_hash},app-secret={app_hash}")),
        "the new ReplicaSet carries both Secrets' new data hashes"
    );
    tenant
        .wait_for_value("app-secret", "password", "rollout-v2", WAIT)
        .await;

    // Every workload that opted in gets the annotation with the new hash.
    let expected = format!("app-secret={app_hash}");
    wait_for("the StatefulSet's restart", WAIT, || async {
        let sts = Api::<StatefulSet>::namespaced(kube.clone(), &ns)
            .get("db")
            .await
            .ok()?;
        (annotation(&sts.spec?.template)? == expected).then_some(())
    })
    .await;
    wait_for("the DaemonSet's restart", WAIT, || async {
        let ds = Api::<DaemonSet>::namespaced(kube.clone(), &ns)
            .get("agent")
            .await
            .ok()?;
        (annotation(&ds.spec?.template)? == expected).then_some(())
    })
    .await;
    wait_for("the named Deployment's restart", WAIT, || async {
        let worker = deployment(kube, &ns, "worker").await;
        (annotation(&worker.spec?.template)? == expected).then_some(())
    })
    .await;
    let event = wait_for_event(kube, &ns, "api", "Restarted", WAIT).await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains(&app_hash) && note.contains("Secret app-secret"),
        "{note}"
    );
    wait_for_event_noting(
        kube,
        &ns,
        "app-secret",
        "WorkloadRestarted",
        "restarted deployment/api",
        WAIT,
    )
    .await;

    // Once per change: the first sync restarted nothing, and both Secrets made one restart.
    assert_eq!(replica_sets(kube, &ns, "api").await.len(), 2);
    let untouched = deployment(kube, &ns, "untouched").await;
    assert_eq!(
        untouched.metadata.generation,
        Some(1),
        "no annotation, no restart"
    );
    assert_eq!(annotation(&untouched.spec.unwrap().template), None);

    // Metadata only: the Secret's label changes, its data does not: nothing restarts.
    let api_generation = deployment(kube, &ns, "api").await.metadata.generation;
    tenant
        .external_secret("app-secret")
        .refresh_interval("1h")
        .extract(&app)
        .target(json!({"template": {"metadata": {"labels": {"tier": "b"}}}}))
        .annotations(json!({"secret-bridge.io/restart": "deployment/worker"}))
        .apply(kube, &ns)
        .await;
    wait_until("the Secret's new label", WAIT, || async {
        let secret = Api::<Secret>::namespaced(kube.clone(), &ns)
            .get("app-secret")
            .await;
        secret.is_ok_and(|s| s.labels().get("tier").map(String::as_str) == Some("b"))
    })
    .await;
    // A data change after it, restarting the StatefulSet: once it is seen, the restarter has
    // handled everything reported before it (one queue, in order, no minimum interval).
    let written = aws.rotate(&db, r#"{"token":"rollout-db-v2"}"#).await;
    aws.publish_label_updated(&bus, &db, &written).await;
    tenant
        .wait_for_value("db-secret", "token", "rollout-db-v2", WAIT)
        .await;
    let db_hash = data_hash(kube, &ns, "db-secret").await;
    wait_for("the StatefulSet's restart for db-secret", WAIT, || async {
        let sts = Api::<StatefulSet>::namespaced(kube.clone(), &ns)
            .get("db")
            .await
            .ok()?;
        (annotation(&sts.spec?.template)? == format!("db-secret={db_hash}")).then_some(())
    })
    .await;
    assert_eq!(
        deployment(kube, &ns, "api").await.metadata.generation,
        api_generation,
        "a metadata-only change restarts nothing"
    );
    assert_eq!(replica_sets(kube, &ns, "api").await.len(), 2);

    let metrics = controller.metrics().await;
    assert_eq!(
        metrics.value(r#"secret_bridge_workload_restarts_total{kind="Deployment"}"#),
        2.0,
        "api and worker, once each"
    );
    assert_eq!(
        metrics.value(r#"secret_bridge_workload_restarts_total{kind="StatefulSet"}"#),
        2.0
    );
    assert!(metrics.value("secret_bridge_rollout_lag_seconds_count") >= 1.0);
    controller.assert_logs_hide(&["rollout-v1", "rollout-v2", "rollout-db-v1", "rollout-db-v2"]);
}

/// A workload of `kind` whose one container has `env` (fields of a container) and whose pod
/// has `volumes`.
fn workload(kind: &str, name: &str, annotations: Value, env: Value, volumes: Value) -> Value {
    let mut container = json!({"name": "app", "image": "registry.invalid/app:1"});
    container
        .as_object_mut()
        .unwrap()
        .extend(env.as_object().unwrap().clone());
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [container], "volumes": volumes},
        },
    });
    if kind == "StatefulSet" {
        spec["serviceName"] = json!(name);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    })
}

fn annotation(template: &PodTemplateSpec) -> Option<String> {
    template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(RESTARTED_FROM_ANNOTATION)
        .cloned()
}

fn rs_annotation(replica_set: &ReplicaSet) -> Option<String> {
    annotation(replica_set.spec.as_ref()?.template.as_ref()?)
}

async fn deployment(kube: &Client, ns: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(kube.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get Deployment {name}: {e}"))
}

async fn replica_sets(kube: &Client, ns: &str, app: &str) -> Vec<ReplicaSet> {
    Api::<ReplicaSet>::namespaced(kube.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|list| list.items)
        .unwrap_or_default()
}

async fn data_hash(kube: &Client, ns: &str, name: &str) -> String {
    let secret = Api::<Secret>::namespaced(kube.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get Secret {name}: {e}"));
    secret.annotations()[DATA_HASH].clone()
}

/// Deletes the test's namespace (with its workloads) and its rule, bus and queue, also when
/// the test fails: on its own thread and runtime, since the test's runtime may be unwinding.
struct Cleanup {
    namespace: String,
    queue: (String, String),
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let namespace = self.namespace.clone();
        let (name, bus) = self.queue.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async move {
                let stack = Stack::connect().await;
                let aws = Aws::new(&stack.aws);
                if let Ok(url) = aws.sqs.get_queue_url().queue_name(&name).send().await {
                    aws.remove_event_queue(&name, &bus, url.queue_url().unwrap_or_default())
                        .await;
                }
                let _ = Api::<Namespace>::all(stack.kube.clone())
                    .delete(&namespace, &DeleteParams::default())
                    .await;
            });
        });
        let _ = cleanup.join();
    }
}
