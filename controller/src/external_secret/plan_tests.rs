use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::*;
use crate::Error;

const UID: &str = "es-uid";

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "external-secrets.io/v1".into(),
        kind: "ExternalSecret".into(),
        name: "app".into(),
        uid: UID.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn inputs(creation: CreationPolicy, existing: Option<&Secret>) -> WriteInputs<'_> {
    WriteInputs {
        namespace: "ns",
        name: "app-secret",
        owner_name: "app",
        owner: owner(),
        creation,
        immutable: false,
        existing,
    }
}

fn desired(pairs: &[(&str, &str)]) -> Desired {
    Desired {
        data: data(pairs),
        ..Default::default()
    }
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// The Secret as the apiserver holds it after `plan` was applied.
fn applied(plan: WritePlan) -> Secret {
    match plan {
        WritePlan::Apply { secret, .. } => *secret,
        WritePlan::UpToDate => panic!("expected a write"),
    }
}

fn with_data(mut secret: Secret, pairs: &[(&str, &str)]) -> Secret {
    secret.data = Some(
        data(pairs)
            .into_iter()
            .map(|(k, v)| (k, ByteString(v)))
            .collect(),
    );
    secret
}

#[test]
fn a_new_owner_secret_is_created_owned_labelled_and_hashed() {
    let plan = plan_write(
        inputs(CreationPolicy::Owner, None),
        desired(&[("password", "v1")]),
    )
    .unwrap();
    let WritePlan::Apply {
        secret,
        created,
        data_changed,
        prune_foreign,
    } = plan
    else {
        panic!("expected a write");
    };
    assert!(created && data_changed && prune_foreign);
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(secret.metadata.owner_references, Some(vec![owner()]));
    let labels = secret.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[MANAGED_LABEL], "true");
    assert_eq!(
        labels[target::OWNER_LABEL],
        target::owner_label_value("ns", "app")
    );
    let annotations = secret.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations[target::DATA_HASH_ANNOTATION],
        target::data_hash(&data(&[("password", "v1")]))
    );
    assert_eq!(secret.immutable, None);
}

#[test]
fn an_identical_secret_is_not_written_again_and_a_changed_one_is() {
    let first =
        applied(plan_write(inputs(CreationPolicy::Owner, None), desired(&[("k", "v1")])).unwrap());
    let same = plan_write(
        inputs(CreationPolicy::Owner, Some(&first)),
        desired(&[("k", "v1")]),
    )
    .unwrap();
    assert_eq!(same, WritePlan::UpToDate);
    let changed = plan_write(
        inputs(CreationPolicy::Owner, Some(&first)),
        desired(&[("k", "v2")]),
    )
    .unwrap();
    assert!(matches!(
        changed,
        WritePlan::Apply {
            created: false,
            data_changed: true,
            ..
        }
    ));
    // Only metadata differs (a label from the template): written, data unchanged.
    let mut relabelled = desired(&[("k", "v1")]);
    relabelled.labels.insert("team".into(), "a".into());
    let plan = plan_write(inputs(CreationPolicy::Owner, Some(&first)), relabelled).unwrap();
    assert!(matches!(
        plan,
        WritePlan::Apply {
            data_changed: false,
            ..
        }
    ));
}

#[test]
fn orphan_secrets_have_no_owner() {
    let secret =
        applied(plan_write(inputs(CreationPolicy::Orphan, None), desired(&[("k", "v")])).unwrap());
    assert_eq!(secret.metadata.owner_references, None);
    assert!(
        !secret
            .metadata
            .labels
            .unwrap()
            .contains_key(target::OWNER_LABEL)
    );
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
}

#[test]
fn merge_keeps_the_keys_of_others_and_hashes_the_whole_data() {
    let existing = with_data(
        Secret {
            metadata: ObjectMeta {
                name: Some("app-secret".into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            ..Default::default()
        },
        &[("tls.crt", "cert")],
    );
    let plan = plan_write(
        inputs(CreationPolicy::Merge, Some(&existing)),
        desired(&[("k", "v")]),
    )
    .unwrap();
    let secret = applied(plan);
    // Only our keys are applied; the type is left to whoever set it.
    assert_eq!(secret.data.as_ref().unwrap().len(), 1);
    assert_eq!(secret.type_, None);
    assert_eq!(
        secret.metadata.annotations.unwrap()[target::DATA_HASH_ANNOTATION],
        target::data_hash(&data(&[("k", "v"), ("tls.crt", "cert")]))
    );
    // An apply never removes what others wrote under Merge.
    let WritePlan::Apply { .. } = plan_write(
        inputs(CreationPolicy::CreateOrMerge, None),
        desired(&[("k", "v")]),
    )
    .unwrap() else {
        panic!("CreateOrMerge creates a missing Secret");
    };
}

#[test]
fn the_template_type_wins_and_the_existing_type_is_kept_otherwise() {
    let mut tls = desired(&[("tls.crt", "c")]);
    tls.type_ = Some("kubernetes.io/tls".into());
    let secret = applied(plan_write(inputs(CreationPolicy::Owner, None), tls).unwrap());
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let mut existing = secret.clone();
    existing.metadata.annotations = None;
    let kept = applied(
        plan_write(
            inputs(CreationPolicy::Owner, Some(&existing)),
            desired(&[("tls.crt", "d")]),
        )
        .unwrap(),
    );
    assert_eq!(kept.type_.as_deref(), Some("kubernetes.io/tls"));
}

#[test]
fn an_immutable_secret_is_never_changed() {
    let mut existing =
        applied(plan_write(inputs(CreationPolicy::Owner, None), desired(&[("k", "v1")])).unwrap());
    existing.immutable = Some(true);
    let error = plan_write(
        inputs(CreationPolicy::Owner, Some(&existing)),
        desired(&[("k", "v2")]),
    )
    .unwrap_err();
    assert!(matches!(error, Error::Conflict(_)), "{error}");
    assert!(error.to_string().contains("target is immutable"));
    let same = plan_write(
        inputs(CreationPolicy::Owner, Some(&existing)),
        desired(&[("k", "v1")]),
    )
    .unwrap();
    assert_eq!(same, WritePlan::UpToDate);
}

#[test]
fn target_immutable_writes_a_missing_secret_once_and_then_keeps_its_data() {
    let mut immutable = inputs(CreationPolicy::Owner, None);
    immutable.immutable = true;
    let secret = applied(plan_write(immutable, desired(&[("k", "v1")])).unwrap());
    assert_eq!(secret.immutable, Some(true));
    let mut again = inputs(CreationPolicy::Owner, Some(&secret));
    again.immutable = true;
    // A new value in AWS is not applied: the existing data is what we would write.
    assert_eq!(
        plan_write(again, desired(&[("k", "v2")])).unwrap(),
        WritePlan::UpToDate
    );
}

#[test]
fn secrets_of_others_are_not_taken() {
    let mut other_es =
        applied(plan_write(inputs(CreationPolicy::Owner, None), desired(&[("k", "v")])).unwrap());
    other_es.metadata.owner_references = Some(vec![OwnerReference {
        name: "other".into(),
        uid: "other-uid".into(),
        ..owner()
    }]);
    let error = plan_write(
        inputs(CreationPolicy::Orphan, Some(&other_es)),
        desired(&[("k", "v")]),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("owned by another ExternalSecret"),
        "{error}"
    );

    let mut deployment = other_es.clone();
    deployment.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: "web".into(),
        uid: "d".into(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    let error = plan_write(
        inputs(CreationPolicy::Owner, Some(&deployment)),
        desired(&[("k", "v")]),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("failed to take ownership"),
        "{error}"
    );
    // Orphan may write into a Secret something else controls, as ESO.
    assert!(
        plan_write(
            inputs(CreationPolicy::Orphan, Some(&deployment)),
            desired(&[("k", "v")])
        )
        .is_ok()
    );
}

#[test]
fn taking_over_an_unowned_secret_adds_the_owner() {
    let mut unowned =
        applied(plan_write(inputs(CreationPolicy::Orphan, None), desired(&[("k", "v")])).unwrap());
    unowned.metadata.annotations = Some(
        [(
            target::DATA_HASH_ANNOTATION.to_owned(),
            target::data_hash(&data(&[("k", "v")])),
        )]
        .into(),
    );
    let plan = plan_write(
        inputs(CreationPolicy::Owner, Some(&unowned)),
        desired(&[("k", "v")]),
    )
    .unwrap();
    assert_eq!(applied(plan).metadata.owner_references, Some(vec![owner()]));
}
