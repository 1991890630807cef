//! The CloudFormation template `infra/cloudformation/secret-bridge.yaml`: cfn-lint finds nothing
//! in it, and the emulator's CloudFormation deploys it. A deployed stack routes the documented
//! Secrets Manager events of the default bus to its queue, dead-letters what is never
//! acknowledged, and gives the controller an IRSA role for exactly its service account; in
//! fan-out mode the rules target the Lambda instead.
//!
//! moto 5.2.5 skips `AWS::SQS::QueuePolicy` (and enforces no queue policy), ignores a function's
//! `Architectures` and `DeadLetterConfig`, and cannot invoke a Lambda without Docker; cfn-lint
//! covers those parts (see `infra/cloudformation/README.md`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use secret_bridge_tests::aws::{Aws, emulator_call, event_fixture};
use secret_bridge_tests::deploy::cloudformation::{TEMPLATE, with_stack};
use secret_bridge_tests::stack::workspace_root;
use secret_bridge_tests::{Stack, unique};
use serde_json::{Value, json};

#[tokio::test]
async fn template_passes_cfn_lint() {
    let stack = Stack::connect().await;
    let cfn_lint = stack
        .env
        .get("CFN_LINT")
        .expect("the stack's env file names CFN_LINT; restart the stack with `scripts/stack up`");
    let output = tokio::process::Command::new(cfn_lint)
        .arg(workspace_root().join(TEMPLATE))
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {cfn_lint}: {e}"));
    assert!(
        output.status.success(),
        "cfn-lint {TEMPLATE} exited with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn deployed_stack_queues_secrets_manager_events_and_dead_letters_poison() {
    let stack = Stack::connect().await;
    let aws = Aws::new(&stack.aws);
    let cfn = aws_sdk_cloudformation::Client::new(&stack.aws);
    let name = unique("cfn-queue");
    let oidc = format!(
        "oidc.eks.{}.amazonaws.com/id/{}",
        aws.region,
        unique("cluster").to_uppercase()
    );
    let kms_key = format!(
        "arn:aws:kms:{}:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        aws.region
    );
    let parameters = [
        ("OidcProviderUrl", oidc.as_str()),
        ("SecretsKmsKeyArns", kms_key.as_str()),
        ("ServiceAccountNamespace", "cfn-test-ns"),
        ("ServiceAccountName", "cfn-test-sa"),
        ("SecretNamePrefix", "team-a/"),
        ("SecretTagKey", "secret-bridge"),
        ("SecretTagValue", "enabled"),
        ("CloudTrailEvents", "true"),
        ("MaxReceiveCount", "2"),
        ("QueueVisibilityTimeout", "1"),
    ];
    let queue_url = with_stack(&cfn, &name, &parameters, async |outputs| {
        let output = |key: &str| outputs.get(key);
        let queue = output("QueueUrl");
        let dlq = output("DeadLetterQueueUrl");
        assert_eq!(output("QueueArn"), aws.queue_arn(&queue).await);

        let attributes = aws.queue_attributes(&queue).await;
        assert_eq!(attributes["VisibilityTimeout"], "1");
        assert_eq!(attributes["MessageRetentionPeriod"], "345600");
        assert_eq!(attributes["SqsManagedSseEnabled"], "true");
        let redrive: Value =
            serde_json::from_str(&attributes["RedrivePolicy"]).expect("RedrivePolicy is JSON");
        assert_eq!(redrive["deadLetterTargetArn"], output("DeadLetterQueueArn"));
        assert_eq!(
            redrive["maxReceiveCount"].to_string().trim_matches('"'),
            "2"
        );
        let dlq_attributes = aws.queue_attributes(&dlq).await;
        assert_eq!(dlq_attributes["SqsManagedSseEnabled"], "true");
        assert_eq!(dlq_attributes["MessageRetentionPeriod"], "1209600");

        assert_controller_role(
            &aws,
            &output("ControllerRoleArn"),
            &oidc,
            &output("QueueArn"),
            &kms_key,
        )
        .await;
        assert_documented_events_reach(&aws, &queue).await;
        assert_unacknowledged_message_is_dead_lettered(&aws, &queue, &dlq, 2).await;
        queue
    })
    .await;

    assert!(
        aws.sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .send()
            .await
            .is_err(),
        "deleting the stack deletes its queue"
    );
}

#[tokio::test]
async fn fan_out_mode_routes_the_rules_to_the_lambda() {
    let stack = Stack::connect().await;
    let aws = Aws::new(&stack.aws);
    let cfn = aws_sdk_cloudformation::Client::new(&stack.aws);
    let name = unique("cfn-fan-out");
    // moto's Lambda targets are not implemented for PutEvents: keep them off the default bus,
    // which other tests and the demo publish on.
    let bus = unique("cfn-fan-out-bus");
    aws.events
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("CreateEventBus");
    aws.remove_bus_on_drop(&bus);
    let bucket = unique("cfn-lambda-code");
    let key = "secret-bridge-lambda.zip";
    emulator_call(&stack, "s3", "PUT", &format!("/{bucket}"), &[]).await;
    // The code is never run (moto cannot invoke without Docker); the function only needs it to exist.
    emulator_call(
        &stack,
        "s3",
        "PUT",
        &format!("/{bucket}/{key}"),
        &["--data-binary", "placeholder for the fan-out Lambda's zip"],
    )
    .await;
    let other_clusters = [
        format!("arn:aws:sqs:{}:111122223333:cluster-a", aws.region),
        format!("arn:aws:sqs:{}:111122223333:cluster-b", aws.region),
    ];
    let other_clusters_list = other_clusters.join(",");
    let routes = json!([
        {"queueArn": other_clusters[0], "namePrefix": "app/"},
        {"queueArn": other_clusters[1], "tags": {"team": "b"}},
    ])
    .to_string();
    let parameters = [
        ("FanOutLambda", "true"),
        ("SecretNamePrefix", "*"),
        ("LambdaCodeS3Bucket", bucket.as_str()),
        ("LambdaCodeS3Key", key),
        ("LambdaArchitecture", "x86_64"),
        ("FanOutQueueArns", other_clusters_list.as_str()),
        ("FanOutRoutes", routes.as_str()),
        ("EventBusName", bus.as_str()),
        ("CloudTrailEvents", "true"),
        ("LambdaLogRetentionDays", "14"),
    ];
    with_stack(&cfn, &name, &parameters, async |outputs| {
        let output = |key: &str| outputs.get(key);
        assert!(
            !outputs.contains("ControllerRoleArn"),
            "no IRSA role without an OIDC provider"
        );
        let function_arn = output("FanOutFunctionArn");
        let queue_arn = output("QueueArn");
        let dlq_arn = output("DeadLetterQueueArn");

        let rules = aws
            .events
            .list_rules()
            .event_bus_name(&bus)
            .name_prefix(&name)
            .send()
            .await
            .expect("ListRules");
        let rule_arns: BTreeSet<String> = rules
            .rules()
            .iter()
            .filter_map(|rule| rule.arn().map(str::to_owned))
            .collect();
        assert_eq!(
            rule_arns.len(),
            3,
            "native, API call and service event rules"
        );
        for rule in rules.rules() {
            let rule_name = rule.name().expect("rule name");
            let targets = aws
                .events
                .list_targets_by_rule()
                .rule(rule_name)
                .event_bus_name(&bus)
                .send()
                .await
                .expect("ListTargetsByRule");
            let targets: Vec<(&str, Option<&str>)> = targets
                .targets()
                .iter()
                .map(|t| (t.arn(), t.dead_letter_config().and_then(|d| d.arn())))
                .collect();
            assert_eq!(
                targets,
                [(function_arn.as_str(), Some(dlq_arn.as_str()))],
                "rule {rule_name} targets only the Lambda"
            );
        }

        let function_name = function_arn.rsplit(':').next().expect("function name");
        let log_groups: Value = serde_json::from_str(
            &emulator_call(
                &stack,
                "logs",
                "POST",
                "/",
                &[
                    "-H",
                    "X-Amz-Target: Logs_20140328.DescribeLogGroups",
                    "-H",
                    "Content-Type: application/x-amz-json-1.1",
                    "--data-raw",
                    &json!({"logGroupNamePrefix": format!("/aws/lambda/{function_name}")})
                        .to_string(),
                ],
            )
            .await,
        )
        .expect("DescribeLogGroups answers JSON");
        assert_eq!(
            log_groups["logGroups"][0]["retentionInDays"], 14,
            "the function's log group, with its retention: {log_groups}"
        );
        let function: Value = serde_json::from_str(
            &emulator_call(
                &stack,
                "lambda",
                "GET",
                &format!("/2015-03-31/functions/{function_name}"),
                &[],
            )
            .await,
        )
        .expect("GetFunction answers JSON");
        let configuration = &function["Configuration"];
        assert_eq!(configuration["Runtime"], "provided.al2023");
        assert_eq!(configuration["Handler"], "bootstrap");
        assert_eq!(configuration["Role"], output("FanOutRoleArn"));
        assert_eq!(
            configuration["Environment"]["Variables"]["FAN_OUT_QUEUE_ARNS"],
            format!("{queue_arn},{other_clusters_list}")
        );
        assert_eq!(configuration["Environment"]["Variables"]["ROUTES"], routes);

        let policy: Value = serde_json::from_str(
            &emulator_call(
                &stack,
                "lambda",
                "GET",
                &format!("/2015-03-31/functions/{function_name}/policy"),
                &[],
            )
            .await,
        )
        .expect("GetPolicy answers JSON");
        let policy: Value = serde_json::from_str(policy["Policy"].as_str().expect("Policy"))
            .expect("the function policy is JSON");
        let statements = policy["Statement"].as_array().expect("statements");
        let invokers: BTreeSet<String> = statements
            .iter()
            .map(|s| {
                assert_eq!(s["Action"], "lambda:InvokeFunction");
                assert_eq!(s["Principal"]["Service"], "events.amazonaws.com");
                s["Condition"]["ArnLike"]["AWS:SourceArn"]
                    .as_str()
                    .expect("each permission names its rule")
                    .to_owned()
            })
            .collect();
        assert_eq!(
            invokers, rule_arns,
            "EventBridge may invoke it for these rules only"
        );

        let send = aws
            .role_policy(&output("FanOutRoleArn"), "send-to-queues")
            .await;
        let statement = &send["Statement"][0];
        assert_eq!(statement["Action"], "sqs:SendMessage");
        let allowed: BTreeSet<&str> = statement["Resource"]
            .as_array()
            .expect("Resource is a list")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let expected: BTreeSet<&str> = [queue_arn.as_str(), dlq_arn.as_str()]
            .into_iter()
            .chain(other_clusters.iter().map(String::as_str))
            .collect();
        assert_eq!(allowed, expected);

        // Routes may match on tags: the function may describe this account's secrets.
        let account = queue_arn
            .split(':')
            .nth(4)
            .expect("account in the queue ARN");
        let describe = aws
            .role_policy(&output("FanOutRoleArn"), "describe-secrets")
            .await;
        assert_eq!(
            describe["Statement"],
            json!([{
                "Sid": "ReadSecretTags",
                "Effect": "Allow",
                "Action": "secretsmanager:DescribeSecret",
                "Resource": format!("arn:aws:secretsmanager:{}:{account}:secret:*", aws.region),
            }])
        );
    })
    .await;

    aws.events
        .delete_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("DeleteEventBus");
    emulator_call(&stack, "s3", "DELETE", &format!("/{bucket}/{key}"), &[]).await;
    emulator_call(&stack, "s3", "DELETE", &format!("/{bucket}"), &[]).await;
}

/// The IRSA role trusts only the service account's tokens from the cluster's OIDC provider, and
/// grants the least the controller needs.
async fn assert_controller_role(
    aws: &Aws,
    role_arn: &str,
    oidc: &str,
    queue_arn: &str,
    kms_key: &str,
) {
    let account = queue_arn
        .split(':')
        .nth(4)
        .expect("account in the queue ARN");
    let region = &aws.region;
    let trust = aws.role_trust_policy(role_arn).await;
    assert_eq!(
        trust["Statement"],
        json!([{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{account}:oidc-provider/{oidc}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{oidc}:sub"): "system:serviceaccount:cfn-test-ns:cfn-test-sa",
                format!("{oidc}:aud"): "sts.amazonaws.com",
            }},
        }])
    );

    let read = aws.role_policy(role_arn, "read-secrets").await;
    assert_eq!(
        read["Statement"],
        json!([{
            "Sid": "ReadSecretsByPrefixAndTag",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Resource": format!("arn:aws:secretsmanager:{region}:{account}:secret:team-a/*"),
            "Condition": {"StringEquals": {"secretsmanager:ResourceTag/secret-bridge": "enabled"}},
        }])
    );
    let consume = aws.role_policy(role_arn, "list-and-consume-events").await;
    assert_eq!(
        consume["Statement"],
        json!([
            {
                "Sid": "ListAndBatchRead",
                "Effect": "Allow",
                "Action": ["secretsmanager:BatchGetSecretValue", "secretsmanager:ListSecrets"],
                "Resource": "*",
            },
            {
                "Sid": "ConsumeEventQueue",
                "Effect": "Allow",
                "Action": [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ],
                "Resource": queue_arn,
            },
        ])
    );
    let decrypt = aws.role_policy(role_arn, "decrypt-secrets").await;
    assert_eq!(
        decrypt["Statement"],
        json!([{
            "Sid": "DecryptSecretsThroughSecretsManager",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": [kms_key],
            "Condition": {"StringEquals": {
                "kms:ViaService": format!("secretsmanager.{region}.amazonaws.com"),
            }},
        }])
    );
}

/// Publishes on the default bus, as Secrets Manager and CloudTrail would, the native label event,
/// a CloudTrail API call that changes a secret, a RotationSucceeded service event, and a
/// read-only API call. The first three reach the queue, the read does not.
async fn assert_documented_events_reach(aws: &Aws, queue: &str) {
    let base = unique("cfn-secret");
    let label = format!("{base}-label");
    let put = format!("{base}-put");
    let rotated = format!("{base}-rotated");
    let read = format!("{base}-read");

    let mut read_call = event_fixture("cloudtrail-get-secret-value.json");
    read_call["detail"]["requestParameters"]["secretId"] = json!(read);
    let mut put_call = event_fixture("cloudtrail-put-secret-value.json");
    put_call["detail"]["requestParameters"]["secretId"] = json!(put);
    let mut rotation = event_fixture("service-event-rotation-succeeded.json");
    rotation["detail"]["additionalEventData"]["SecretId"] = json!(rotated);
    // The read goes first: when the others have arrived, it would have too.
    for event in [&read_call, &put_call, &rotation] {
        let detail_type = event["detail-type"].as_str().expect("detail-type");
        aws.publish("default", detail_type, &event["detail"], &[])
            .await;
    }
    aws.publish(
        "default",
        "Secret Label Updated",
        &json!({"name": label, "labelUpdated": "AWSCURRENT", "versionId": unique("version")}),
        &[],
    )
    .await;

    let expected = BTreeSet::from([
        ("Secret Label Updated".to_owned(), label),
        ("AWS API Call via CloudTrail".to_owned(), put),
        ("AWS Service Event via CloudTrail".to_owned(), rotated),
    ]);
    let mut arrived = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while arrived != expected {
        assert!(
            Instant::now() < deadline,
            "events did not reach the stack's queue: arrived {arrived:?}, expected {expected:?}"
        );
        // Other tests and the demo publish on the default bus too: keep only this test's events.
        for message in aws.receive_and_delete(queue).await {
            let body: Value = serde_json::from_str(message.body().unwrap_or_default())
                .expect("EventBridge delivers JSON");
            let text = body.to_string();
            if !text.contains(&base) {
                continue;
            }
            assert!(
                !text.contains(&read),
                "a read-only call reached the queue: {body}"
            );
            let detail_type = body["detail-type"].as_str().unwrap_or_default();
            arrived.insert((detail_type.to_owned(), secret_of(&body)));
        }
    }
}

/// The secret an event names: `name` (native), `requestParameters.secretId` (API call) or
/// `additionalEventData.SecretId` (service event).
fn secret_of(event: &Value) -> String {
    let detail = &event["detail"];
    [
        &detail["name"],
        &detail["requestParameters"]["secretId"],
        &detail["additionalEventData"]["SecretId"],
    ]
    .into_iter()
    .find_map(Value::as_str)
    .unwrap_or_default()
    .to_owned()
}

/// A message nobody acknowledges is received `max_receive` times, then SQS moves it to the DLQ.
async fn assert_unacknowledged_message_is_dead_lettered(
    aws: &Aws,
    queue: &str,
    dlq: &str,
    max_receive: usize,
) {
    let poison = format!("not an event {}", unique("poison"));
    aws.sqs
        .send_message()
        .queue_url(queue)
        .message_body(&poison)
        .send()
        .await
        .expect("SendMessage");
    let mut receives = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the message did not reach the DLQ after {receives} receives"
        );
        for message in aws.receive(queue).await {
            if message.body() == Some(poison.as_str()) {
                // Not deleted: the visibility timeout (1 s) hands it out again.
                receives += 1;
            } else {
                aws.delete_message(queue, &message).await;
            }
        }
        let dead = aws.receive_and_delete(dlq).await;
        if dead.iter().any(|m| m.body() == Some(poison.as_str())) {
            break;
        }
    }
    assert_eq!(
        receives, max_receive,
        "SQS hands a message out maxReceiveCount times before dead-lettering it"
    );
}
