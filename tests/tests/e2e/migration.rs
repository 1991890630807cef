//! The steps of `docs/migrating-from-eso.md` that secret-bridge owns, on the real apiserver:
//! a Secret that ESO wrote (its field manager, owner reference, `created-by` label and
//! `data-hash`) is left alone while its store belongs to ESO's class, taken over without a
//! single write when the store names our class, then followed by events; and on the way back
//! (the store handed back to ESO's class) it is left alone again, intact.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use secret_bridge_controller::FIELD_MANAGER;
use secret_bridge_controller::api::ExternalSecret;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::conformance::eso;
use secret_bridge_tests::kube_helpers::external_secret;
use secret_bridge_tests::manifest::{Manifest, Store};
use secret_bridge_tests::{Stack, Tenant, unique, wait_for};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);
/// ESO's field manager.
const ESO_MANAGER: &str = "external-secrets";

#[tokio::test]
async fn a_secret_written_by_eso_is_taken_over_without_a_write_and_handed_back_intact() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    let tenant = Tenant::new(&stack, "migrate", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let eso_class = format!("eso-{ns}");
    let secret = unique("migrate");
    aws.upsert_secret(&secret, r#"{"user":"app","password":"migrated-pw-1"}"#)
        .await;
    let bus = unique("migrate-bus");
    let queue = aws.event_queue(&unique("migrate"), &bus, None, 30).await;

    // ESO running: its store (ESO's class) and an ExternalSecret it synced an hour and a half
    // ago (so the next sync is due), with the Secret and status ESO wrote.
    let store = Store::secret_store("shared").static_keys();
    store.clone().controller(&eso_class).apply(kube, ns).await;
    tenant
        .apply(
            &tenant
                .external_secret("app")
                .secret_store("shared")
                .refresh_interval("1h")
                .extract(&secret),
        )
        .await;
    let es = external_secret(kube, ns, "app")
        .await
        .expect("ExternalSecret");
    let written_by_eso = write_as_eso(&stack, &es).await;
    let es = external_secret(kube, ns, "app")
        .await
        .expect("ExternalSecret");

    // secret-bridge with its own class beside ESO: nothing of ESO's class is touched.
    let controller = tenant.start_controller(&stack, &["--queue-url", &queue]);
    tenant
        .apply(
            &tenant
                .external_secret("marker")
                .refresh_interval("1h")
                .extract(&secret),
        )
        .await;
    tenant
        .wait_for_value("marker", "password", "migrated-pw-1", TIMEOUT)
        .await;
    assert_untouched(&stack, ns, &written_by_eso, &es).await;

    // The takeover: the store names our class. Its ExternalSecret is synced at once (status
    // refreshed), and its Secret, already what we would write, is not written.
    store
        .clone()
        .controller(&tenant.class)
        .apply(kube, ns)
        .await;
    wait_for(
        "our sync of the taken-over ExternalSecret",
        TIMEOUT,
        || async {
            let now = external_secret(kube, ns, "app").await?;
            let status = now.status.clone()?;
            let previous = es.status.as_ref()?.refresh_time.clone();
            (status.refresh_time != previous && now.ready_condition()?.status == "True")
                .then_some(())
        },
    )
    .await;
    let after = the_secret(&stack, ns).await;
    assert_eq!(
        after.resource_version(),
        written_by_eso.resource_version(),
        "taking over ESO's Secret wrote nothing to it"
    );
    assert!(
        !managers(&after).contains(&FIELD_MANAGER.to_owned()),
        "no field of the Secret is ours yet: {:?}",
        managers(&after)
    );

    // Ours now: a rotation by event reaches it.
    let rotated = aws
        .rotate(&secret, r#"{"user":"app","password":"migrated-pw-2"}"#)
        .await;
    aws.publish_label_updated(&bus, &secret, &rotated).await;
    tenant
        .wait_for_value("app", "password", "migrated-pw-2", TIMEOUT)
        .await;
    // The status write follows the Secret's: wait for it, so that it is not taken for a
    // write after the hand-back.
    wait_for(
        "the status of our sync of the rotation",
        TIMEOUT,
        || async {
            let status = external_secret(kube, ns, "app").await?.status?;
            (status.synced_versions.get(&secret) == Some(&rotated.version_id)).then_some(())
        },
    )
    .await;

    // The way back: the store names ESO's class again. A later change is not ours to apply:
    // the marker (ours) follows it, the Secret handed back stays as it was, and exists.
    store.clone().controller(&eso_class).apply(kube, ns).await;
    // Observably in the controller's cache before the next rotation: a change to the
    // ExternalSecret is reconciled and skipped as another class's.
    let skipped = || {
        controller
            .logs()
            .lines()
            .filter(|l| l.contains(&format!("/app.{ns}")) && l.contains("another controller class"))
            .count()
    };
    let before = skipped();
    let nudges = std::sync::atomic::AtomicU32::new(0);
    wait_for("the hand-back seen by the controller", TIMEOUT, || async {
        if skipped() > before {
            return Some(());
        }
        // Each change is one more reconcile, until one runs on the updated cache (a change
        // every half second: the probe runs every 50 ms).
        let nudge = nudges.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !nudge.is_multiple_of(10) {
            return None;
        }
        Api::<ExternalSecret>::namespaced(kube.clone(), ns)
            .patch(
                "app",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"migration": nudge.to_string()}}}),
                ),
            )
            .await
            .ok()?;
        None
    })
    .await;
    let handed_back = the_secret(&stack, ns).await;
    let es_back = external_secret(kube, ns, "app")
        .await
        .expect("ExternalSecret");
    let rotated = aws
        .rotate(&secret, r#"{"user":"app","password":"migrated-pw-3"}"#)
        .await;
    aws.publish_label_updated(&bus, &secret, &rotated).await;
    tenant
        .wait_for_value("marker", "password", "migrated-pw-3", TIMEOUT)
        .await;
    assert_untouched(&stack, ns, &handed_back, &es_back).await;
    assert_eq!(
        eso::data_hash(&data(&handed_back)),
        handed_back.annotations()[eso::DATA_HASH_ANNOTATION],
        "the Secret handed back carries ESO's data-hash of its data, so ESO rewrites nothing"
    );
    controller.assert_logs_hide(&["migrated-pw-1", "migrated-pw-2", "migrated-pw-3"]);
}

/// Writes the Secret and the status that ESO would have written for `es`.
async fn write_as_eso(stack: &Stack, es: &ExternalSecret) -> Secret {
    let ns = es.namespace().expect("namespace");
    let values: BTreeMap<String, Vec<u8>> = [
        ("user".to_owned(), b"app".to_vec()),
        ("password".to_owned(), b"migrated-pw-1".to_vec()),
    ]
    .into();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("app".into()),
            namespace: Some(ns.clone()),
            labels: Some(
                [
                    (eso::MANAGED_LABEL.to_owned(), "true".to_owned()),
                    (eso::OWNER_LABEL.to_owned(), eso::owner_label(&ns, "app")),
                ]
                .into(),
            ),
            annotations: Some(
                [(
                    eso::DATA_HASH_ANNOTATION.to_owned(),
                    eso::data_hash(&values),
                )]
                .into(),
            ),
            owner_references: Some(vec![OwnerReference {
                api_version: "external-secrets.io/v1".into(),
                kind: "ExternalSecret".into(),
                name: "app".into(),
                uid: es.uid().expect("uid"),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            values
                .into_iter()
                .map(|(k, v)| (k, ByteString(v)))
                .collect(),
        ),
        ..Default::default()
    };
    let created = Api::<Secret>::namespaced(stack.kube.clone(), &ns)
        .create(
            &PostParams {
                field_manager: Some(ESO_MANAGER.into()),
                ..Default::default()
            },
            &secret,
        )
        .await
        .expect("write the Secret as ESO");
    let synced = chrono::Utc::now() - chrono::Duration::minutes(90);
    let status = json!({"status": {
        "refreshTime": synced.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "syncedResourceVersion": eso::resource_version(
            es.metadata.generation.expect("generation"),
            es.labels(),
            es.annotations(),
        ),
        "binding": {"name": "app"},
        "conditions": [{
            "type": "Ready",
            "status": "True",
            "reason": "SecretSynced",
            "message": "secret synced",
            "lastTransitionTime": synced.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }],
    }});
    Api::<ExternalSecret>::namespaced(stack.kube.clone(), &ns)
        .patch_status(
            "app",
            &PatchParams {
                field_manager: Some(ESO_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(&status),
        )
        .await
        .expect("write the status as ESO");
    created
}

async fn the_secret(stack: &Stack, ns: &str) -> Secret {
    Api::<Secret>::namespaced(stack.kube.clone(), ns)
        .get("app")
        .await
        .expect("the Secret app exists")
}

fn data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

fn managers(secret: &Secret) -> Vec<String> {
    secret
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect()
}

/// The Secret and the ExternalSecret's status are as they were.
async fn assert_untouched(
    stack: &Stack,
    ns: &str,
    secret_before: &Secret,
    es_before: &ExternalSecret,
) {
    let now = the_secret(stack, ns).await;
    assert_eq!(
        now.resource_version(),
        secret_before.resource_version(),
        "the Secret of another controller's store is not written"
    );
    let es_now = external_secret(&stack.kube, ns, "app")
        .await
        .expect("ExternalSecret");
    let refresh = |es: &ExternalSecret| es.status.as_ref().and_then(|s| s.refresh_time.clone());
    assert_eq!(
        refresh(&es_now),
        refresh(es_before),
        "the ExternalSecret of another controller's store gets no status from us"
    );
}
