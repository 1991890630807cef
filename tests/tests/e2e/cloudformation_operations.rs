//! The operational parts of the CloudFormation template, deployed on the emulator: the
//! `Tags` parameter reaches the queues, rules and role; `QueueKmsKey: create` encrypts both
//! queues with the stack's own key and lets the controller decrypt; the alarms' stack
//! deploys. moto 5.2.5 creates no `AWS::CloudWatch::Alarm` from a template (it skips
//! the type, as it skips `AWS::SQS::QueuePolicy`), so the alarms themselves are checked by
//! cfn-lint and by reading the template (`template_alarms_watch_both_queues`).

use std::collections::BTreeMap;

use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::deploy::cloudformation::{TEMPLATE, with_stack};
use secret_bridge_tests::stack::workspace_root;
use secret_bridge_tests::{Stack, unique};

#[tokio::test]
async fn tags_and_a_customer_managed_queue_key_deploy() {
    let stack = Stack::connect().await;
    let aws = Aws::new(&stack.aws);
    let cfn = aws_sdk_cloudformation::Client::new(&stack.aws);
    let name = unique("cfn-ops");
    let oidc = format!(
        "oidc.eks.{}.amazonaws.com/id/{}",
        aws.region,
        unique("cluster").to_uppercase()
    );
    let topic = format!(
        "arn:aws:sns:{}:123456789012:secret-bridge-alerts",
        aws.region
    );
    let parameters = [
        ("OidcProviderUrl", oidc.as_str()),
        ("SecretNamePrefix", "team-a/"),
        ("QueueKmsKey", "create"),
        ("AlarmTopicArn", topic.as_str()),
        ("DeadLetterAlarmThreshold", "2"),
        ("Tags", "team=platform,cost-center=42"),
    ];
    with_stack(&cfn, &name, &parameters, async |outputs| {
        let expected_tags = BTreeMap::from([
            ("cost-center".to_owned(), "42".to_owned()),
            ("team".to_owned(), "platform".to_owned()),
        ]);
        let key = outputs.get("QueueKeyArn");
        for queue in [outputs.get("QueueUrl"), outputs.get("DeadLetterQueueUrl")] {
            let attributes = aws.queue_attributes(&queue).await;
            assert_eq!(attributes["KmsMasterKeyId"], key, "{queue}");
            let tags: BTreeMap<String, String> = aws
                .sqs
                .list_queue_tags()
                .queue_url(&queue)
                .send()
                .await
                .expect("ListQueueTags")
                .tags
                .unwrap_or_default()
                .into_iter()
                .collect();
            assert_eq!(tags, expected_tags, "{queue}");
        }

        let role = outputs.get("ControllerRoleArn");
        let decrypt = aws.role_policy(&role, "decrypt-event-queue").await;
        assert_eq!(decrypt["Statement"][0]["Action"], "kms:Decrypt");
        assert_eq!(decrypt["Statement"][0]["Resource"], key.as_str());
        let role_tags: BTreeMap<String, String> = aws
            .iam
            .list_role_tags()
            .role_name(role.rsplit('/').next().expect("role name"))
            .send()
            .await
            .expect("ListRoleTags")
            .tags()
            .iter()
            .map(|tag| (tag.key().to_owned(), tag.value().to_owned()))
            .collect();
        assert_eq!(role_tags, expected_tags);

        let rules = aws
            .events
            .list_rules()
            .name_prefix(&name)
            .send()
            .await
            .expect("ListRules");
        let rule = rules.rules().first().expect("the native event rule");
        let rule_tags: BTreeMap<String, String> = aws
            .events
            .list_tags_for_resource()
            .resource_arn(rule.arn().expect("rule ARN"))
            .send()
            .await
            .expect("ListTagsForResource")
            .tags()
            .iter()
            .map(|tag| (tag.key().to_owned(), tag.value().to_owned()))
            .collect();
        assert_eq!(rule_tags, expected_tags);
    })
    .await;
}

#[test]
fn template_alarms_watch_both_queues() {
    let text = std::fs::read_to_string(workspace_root().join(TEMPLATE)).expect("read template");
    // The short-form functions (!Ref, !GetAtt…) are YAML tags: read as `{"!Ref": …}`.
    let template: yaml_serde::Value = yaml_serde::from_str(&text).expect("the template is YAML");
    let template = serde_json::to_value(template).expect("the template as JSON");
    let resources = &template["Resources"];
    let alarm = |name: &str, queue: &str, metric: &str, threshold: &str| {
        let properties = &resources[name]["Properties"];
        assert_eq!(resources[name]["Type"], "AWS::CloudWatch::Alarm", "{name}");
        assert_eq!(properties["Namespace"], "AWS/SQS", "{name}");
        assert_eq!(properties["MetricName"], metric, "{name}");
        assert_eq!(properties["Dimensions"][0]["Name"], "QueueName", "{name}");
        let dimension = serde_json::to_string(&properties["Dimensions"][0]["Value"]).unwrap();
        assert!(
            dimension.contains(&format!("{queue}.QueueName")),
            "{name}: {dimension}"
        );
        let value = serde_json::to_string(&properties["Threshold"]).unwrap();
        assert!(value.contains(threshold), "{name}: {value}");
        for actions in ["AlarmActions", "OKActions"] {
            let actions = serde_json::to_string(&properties[actions]).unwrap();
            assert!(actions.contains("AlarmTopicArn"), "{name}: {actions}");
        }
    };
    alarm(
        "DeadLetterQueueAlarm",
        "DeadLetterQueue",
        "ApproximateNumberOfMessagesVisible",
        "DeadLetterAlarmThreshold",
    );
    alarm(
        "QueueAgeAlarm",
        "Queue",
        "ApproximateAgeOfOldestMessage",
        "OldestMessageAlarmSeconds",
    );
    let key = &resources["QueueKey"]["Properties"];
    assert_eq!(key["EnableKeyRotation"], true);
    let policy = serde_json::to_string(&key["KeyPolicy"]).unwrap();
    assert!(policy.contains("events.amazonaws.com"), "{policy}");
}
