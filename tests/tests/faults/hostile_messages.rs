//! A corpus of hostile SQS message bodies, generated here (no committed blobs): not JSON,
//! pathological JSON, huge bodies, lookalike ARNs, wrong types in every field, SNS wrappers of
//! garbage, secret-bridge messages with bad versions and fields, unknown detail-types and
//! sources. Many carry a marker string in their fields, which must never be echoed anywhere.

use serde_json::{Value, json};

/// One hostile message and the kind it belongs to (for the per-kind report).
pub struct Hostile {
    pub kind: &'static str,
    pub body: String,
}

/// SQS refuses bodies above 256 KiB; these stay just under.
const BIG: usize = 250_000;

/// The corpus. `marker` is put in fields; `used` is the name of a secret an ExternalSecret
/// reads, for lookalike ARNs that must not be taken for it.
pub fn corpus(marker: &str, used: &str) -> Vec<Hostile> {
    let mut all = Vec::new();
    let mut add = |kind: &'static str, body: String| all.push(Hostile { kind, body });

    // Not JSON, or not an object.
    add("not json", format!("not json {marker}"));
    add("not json", " ".into()); // SQS refuses an empty body; this is the closest.
    add("not json", format!("{{\"detail-type\": \"{marker}"));
    add(
        "not json",
        format!("\u{feff}{}", label_updated(marker, marker)),
    );
    add("not json", format!("{{'source': '{marker}'}}"));
    add("not json", "[".repeat(10_000));
    add("not json", "{\"a\":".repeat(10_000));
    add("not json", format!("{marker} {}", "x".repeat(BIG)));
    add("not json", r#"{"detail-type": 1e999999}"#.into());
    for scalar in ["null", "true", "42", "[]", "[{}]"] {
        add("not an object", scalar.into());
    }
    add(
        "not an object",
        json!(format!("{marker}{}", "y".repeat(BIG))).to_string(),
    );
    add(
        "deep json",
        format!("{}{}", "[".repeat(100), "]".repeat(100)),
    );
    add("deep json", deep_detail(1_000));

    // EventBridge envelopes with a wrong type in every field.
    for field in [
        "detail-type",
        "source",
        "detail",
        "resources",
        "time",
        "region",
        "account",
    ] {
        for wrong in [
            json!(42),
            json!([marker]),
            json!({"x": marker}),
            json!(true),
        ] {
            let mut event = label_updated_value(marker, marker);
            event[field] = wrong;
            add("wrong type", event.to_string());
        }
    }
    for field in ["name", "versionId", "labelUpdated"] {
        for wrong in [json!(7), json!([marker]), json!({"x": marker})] {
            let mut event = label_updated_value(marker, marker);
            event["detail"][field] = wrong;
            add("wrong type in detail", event.to_string());
        }
    }
    let mut event = label_updated_value(marker, marker);
    event["resources"] = json!([1, marker, null]);
    add("wrong type", event.to_string());
    let mut event = label_updated_value(marker, marker);
    event["time"] = json!(marker);
    add("wrong type", event.to_string());

    // Unknown detail-types and sources (well-formed otherwise).
    for detail_type in [marker, "Secret Label Updated ", "secret label updated", ""] {
        let mut event = label_updated_value(marker, marker);
        event["detail-type"] = json!(detail_type);
        add("unknown detail-type", event.to_string());
    }
    for source in [
        marker,
        "aws.ssm",
        "aws.secretsmanagerx",
        "AWS.SECRETSMANAGER",
    ] {
        let mut event = label_updated_value(marker, marker);
        event["source"] = json!(source);
        add("unknown source", event.to_string());
    }
    let cloudtrail = |name: Value, secret_id: Value| {
        json!({
            "version": "0", "id": marker, "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.secretsmanager", "account": "123456789012", "region": "us-east-1",
            "detail": {"eventSource": "secretsmanager.amazonaws.com", "eventName": name,
                       "requestParameters": {"secretId": secret_id}},
        })
        .to_string()
    };
    add("cloudtrail", cloudtrail(json!(marker), json!(marker)));
    add(
        "cloudtrail",
        cloudtrail(json!("PutSecretValue"), json!({"x": marker})),
    );
    add(
        "cloudtrail",
        cloudtrail(json!("PutSecretValue"), json!(null)),
    );
    add(
        "cloudtrail",
        cloudtrail(json!(["PutSecretValue"]), json!(marker)),
    );

    // Events for secrets nobody reads: thousands of ARNs, and lookalikes of a used one.
    let arns: Vec<String> = (0..2_000)
        .map(|i| {
            format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{marker}-{i}-AbCdEf")
        })
        .collect();
    let mut event = label_updated_value(marker, marker);
    event["resources"] = json!(arns);
    add("thousands of ARNs", event.to_string());
    for arn in [
        format!("arn:aws:ssm:us-east-1:123456789012:parameter/{used}"),
        format!("arn:aws-cn:secretsmanager:us-east-1:123456789012:secret:{used}-AbCdEf"),
        format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{used}x-AbCdEf"),
        format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{used}-AbCdE"),
        format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:{used}-AbCdEf"),
        format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{used}-AbCdEf/{marker}"),
        format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{marker}:{used}"),
        format!("{used}\u{200b}arn:aws:secretsmanager"),
    ] {
        let mut event = label_updated_value(marker, &arn);
        event["detail"]["name"] = json!(format!("{marker}-lookalike"));
        add("lookalike ARN", event.to_string());
    }

    // SNS wrappers of garbage.
    let sns = |message: Value| {
        json!({"Type": "Notification", "MessageId": marker, "Message": message}).to_string()
    };
    add("sns", sns(json!(format!("garbage {marker}"))));
    add("sns", sns(json!({"detail-type": marker})));
    add("sns", sns(json!(42)));
    add("sns", sns(json!("[".repeat(10_000))));
    add("sns", sns(json!(sns(json!(label_updated(marker, marker))))));
    add("sns", sns(json!(label_updated(marker, marker))));

    // secret-bridge's own normalized messages with bad versions and fields.
    let normalized = |version: Value| json!({"secretBridge": version, "kind": "SecretLabelUpdated", "name": marker, "arn": marker});
    for version in [
        json!(0),
        json!(2),
        json!("1"),
        json!(-1),
        json!(1.5),
        json!(1e100),
        json!(null),
        json!([1]),
    ] {
        add("normalized: bad version", normalized(version).to_string());
    }
    for (field, wrong) in [
        ("name", json!("")),
        ("name", json!(42)),
        ("kind", json!({"x": marker})),
        ("versionId", json!([marker])),
        ("eventTime", json!(marker)),
        ("arn", json!(7)),
    ] {
        let mut message = normalized(json!(1));
        message[field] = wrong;
        add("normalized: bad field", message.to_string());
    }
    let mut message = normalized(json!(1));
    message.as_object_mut().unwrap().remove("name");
    add("normalized: bad field", message.to_string());
    add(
        "normalized: unused secret",
        normalized(json!(1)).to_string(),
    );
    all
}

/// A well-formed `Secret Label Updated` event for secret `name` with resource `arn`.
fn label_updated_value(name: &str, arn: &str) -> Value {
    json!({
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "Secret Label Updated", "source": "aws.secretsmanager",
        "account": "123456789012", "time": "2024-02-06T16:43:48Z", "region": "us-east-1",
        "resources": [arn],
        "detail": {"name": name, "labelUpdated": "AWSCURRENT", "versionId": "v1"},
    })
}

fn label_updated(name: &str, arn: &str) -> String {
    label_updated_value(name, arn).to_string()
}

/// A label-updated event whose `detail` nests `depth` objects deep.
fn deep_detail(depth: usize) -> String {
    let event = label_updated("x", "y");
    let nested = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    event.replacen(
        "\"detail\":{",
        &format!("\"detail\":{{\"deep\":{nested},"),
        1,
    )
}
