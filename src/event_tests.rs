use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../tests/fixtures/events/", $name))
    };
}

fn change(body: &str) -> SecretChange {
    match parse(body).expect("fixture parses") {
        Parsed::Change(change) => change,
        other => panic!("expected a change, got {other:?}"),
    }
}

fn irrelevant(body: &str) -> String {
    match parse(body).expect("fixture parses") {
        Parsed::Irrelevant { reason } => reason,
        other => panic!("expected an irrelevant event, got {other:?}"),
    }
}

#[test]
fn native_label_updated_to_awscurrent() {
    let change = change(fixture!("label-updated-current.json"));
    assert_eq!(change.kind, ChangeKind::LabelUpdated);
    assert_eq!(
        change.secret_ids,
        [
            "mySecret",
            "arn:aws:secretsmanager:us-west-2:012345678901:secret:mySecret-a1b2c3"
        ]
    );
    assert_eq!(change.region.as_deref(), Some("us-west-2"));
    assert_eq!(change.account.as_deref(), Some("012345678901"));
    assert_eq!(
        change.version_id.as_deref(),
        Some("a1b2c3d4-5678-90ab-cdef-EXAMPLE11111")
    );
    assert_eq!(
        change.time.unwrap().to_rfc3339(),
        "2024-02-06T16:43:48+00:00"
    );
}

#[test]
fn other_labels_are_irrelevant() {
    let reason = irrelevant(fixture!("label-updated-custom.json"));
    assert!(reason.contains("a label other than AWSCURRENT"), "{reason}");
    assert!(
        !reason.contains("blue"),
        "a message's own strings are not repeated: {reason}"
    );
}

#[test]
fn cloudtrail_put_secret_value() {
    let change = change(fixture!("cloudtrail-put-secret-value.json"));
    assert_eq!(change.kind, ChangeKind::ApiCall("PutSecretValue".into()));
    assert_eq!(change.kind.name(), "PutSecretValue");
    assert_eq!(
        change.secret_ids,
        [
            "mySecret",
            "arn:aws:secretsmanager:us-west-2:012345678901:secret:mySecret-a1b2c3"
        ]
    );
    assert_eq!(
        change.version_id.as_deref(),
        Some("a1b2c3d4-5678-90ab-cdef-EXAMPLE22222")
    );
}

#[test]
fn cloudtrail_update_secret_version_stage_names_the_moved_version() {
    let change = change(fixture!("cloudtrail-update-secret-version-stage.json"));
    assert_eq!(
        change.kind,
        ChangeKind::ApiCall("UpdateSecretVersionStage".into())
    );
    assert!(change.secret_ids.contains(&"mySecret".to_owned()));
    assert_eq!(
        change.version_id.as_deref(),
        Some("a1b2c3d4-5678-90ab-cdef-EXAMPLE22222")
    );
}

#[test]
fn cloudtrail_older_arn_spelling() {
    let change = change(fixture!("cloudtrail-update-secret-old-arn-spelling.json"));
    assert_eq!(change.kind, ChangeKind::ApiCall("UpdateSecret".into()));
    assert!(change.secret_ids.contains(
        &"arn:aws:secretsmanager:eu-central-1:012345678901:secret:prod/db-Xy12Ab".to_owned()
    ));
    assert_eq!(change.region.as_deref(), Some("eu-central-1"));
}

#[test]
fn cloudtrail_create_secret_uses_the_name_parameter() {
    let change = change(fixture!("cloudtrail-create-secret.json"));
    assert_eq!(change.secret_ids[0], "new/secret");
}

#[test]
fn read_only_and_failed_calls_are_irrelevant() {
    assert!(irrelevant(fixture!("cloudtrail-get-secret-value.json")).contains("changes no secret"));
    assert!(irrelevant(fixture!("cloudtrail-failed-put.json")).contains("a failed API call"));
}

#[test]
fn service_event_rotation_succeeded() {
    let change = change(fixture!("service-event-rotation-succeeded.json"));
    assert_eq!(
        change.kind,
        ChangeKind::ServiceEvent("RotationSucceeded".into())
    );
    assert_eq!(
        change.secret_ids,
        ["arn:aws:secretsmanager:us-west-2:012345678901:secret:mySecret-a1b2c3"]
    );
    assert!(
        irrelevant(fixture!("service-event-rotation-failed.json")).contains("changes no secret")
    );
}

#[test]
fn sns_wrapped_event() {
    let wrapped = change(fixture!("sns-wrapped-label-updated.json"));
    assert_eq!(wrapped, change(fixture!("label-updated-current.json")));
}

#[test]
fn malformed_messages_are_errors_that_say_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        (fixture!("malformed-not-json.txt"), "not JSON"),
        (fixture!("malformed-array.json"), "not an object"),
        (fixture!("malformed-detail-not-object.json"), "`detail`"),
        (fixture!("malformed-name-wrong-type.json"), "`detail.name`"),
        (fixture!("malformed-missing-secret-id.json"), "secretId"),
        (fixture!("malformed-bad-time.json"), "`time`"),
        (
            fixture!("unknown-detail-type.json"),
            "a Secrets Manager detail-type other than",
        ),
        (
            fixture!("unknown-source.json"),
            "another source than aws.secretsmanager",
        ),
        (
            fixture!("unknown-no-detail-type.json"),
            "not an EventBridge event",
        ),
        ("", "not JSON"),
        (r#"{"Type":"Notification","Message":"oops"}"#, "not JSON"),
        (r#"{"Type":"Notification","Message":7}"#, "`Message`"),
    ];
    for (body, expected) in cases {
        let error = parse(body).expect_err(body).to_string();
        assert!(
            error.contains(expected),
            "{error:?} should mention {expected:?}"
        );
    }
}

#[test]
fn a_huge_message_is_refused_without_echoing_it() {
    let body = format!("{{\"detail-type\":\"{}\"", "x".repeat(256 * 1024));
    let error = parse(&body).unwrap_err().to_string();
    assert!(error.len() < 200, "the error must not echo the body");
}

#[test]
fn every_api_call_that_changes_a_secret_is_a_change() {
    let cases: &[(&str, &str)] = &[
        (fixture!("cloudtrail-delete-secret.json"), "DeleteSecret"),
        (fixture!("cloudtrail-restore-secret.json"), "RestoreSecret"),
        (fixture!("cloudtrail-rotate-secret.json"), "RotateSecret"),
        (fixture!("cloudtrail-tag-resource.json"), "TagResource"),
        (fixture!("cloudtrail-untag-resource.json"), "UntagResource"),
    ];
    for (body, name) in cases {
        let change = change(body);
        assert_eq!(change.kind, ChangeKind::ApiCall((*name).into()));
        assert!(
            change
                .secret_ids
                .iter()
                .any(|id| id.ends_with("prod/db-Xy12Ab")),
            "{name}"
        );
        assert!(change.secret_ids.contains(&"prod/db".to_owned()), "{name}");
    }
}

#[test]
fn partial_arns_and_sns_wrapped_cloudtrail() {
    let change_ = change(fixture!("cloudtrail-partial-arn.json"));
    assert_eq!(
        change_.secret_ids,
        ["arn:aws:secretsmanager:us-east-1:012345678901:secret:prod/db"]
    );
    assert_eq!(
        change(fixture!("sns-wrapped-cloudtrail-put.json")),
        change(fixture!("cloudtrail-put-secret-value.json"))
    );
}

#[test]
fn normalized_messages_from_the_lambda() {
    let change = change(fixture!("normalized-label-updated.json"));
    assert_eq!(change.kind, ChangeKind::LabelUpdated);
    assert_eq!(change.secret_ids[0], "prod/db");
    assert_eq!(change.version_id.as_deref(), Some("v2"));
    let cases: &[(&str, &str)] = &[
        (
            fixture!("malformed-normalized-future-version.json"),
            "version Some(2)",
        ),
        (fixture!("malformed-normalized-empty-name.json"), "`name`"),
        (
            fixture!("malformed-resources-wrong-type.json"),
            "`resources`",
        ),
        (
            fixture!("malformed-event-name-missing.json"),
            "`detail.eventName`",
        ),
    ];
    for (body, expected) in cases {
        let error = parse(body).expect_err(body).to_string();
        assert!(
            error.contains(expected),
            "{error:?} should mention {expected:?}"
        );
    }
}

#[test]
fn metric_labels_are_bounded_whatever_the_message_says() {
    assert_eq!(ChangeKind::LabelUpdated.label(), "SecretLabelUpdated");
    assert_eq!(
        ChangeKind::ApiCall("PutSecretValue".into()).label(),
        "PutSecretValue"
    );
    assert_eq!(
        ChangeKind::ServiceEvent("RotationSucceeded".into()).label(),
        "RotationSucceeded"
    );
    assert_eq!(ChangeKind::ApiCall("x".repeat(10_000)).label(), "Other");
    assert_eq!(
        ChangeKind::ServiceEvent("RotationMarker-7f3a".into()).label(),
        "Other"
    );
}
