//! The CloudFormation template `infra/cloudformation/secret-bridge.yaml`: cfn-lint finds nothing
//! in it, and the emulator's CloudFormation deploys it. A deployed stack routes the documented
//! Secrets Manager events of the default bus to its queue, dead-letters what is never
//! acknowledged, and gives the controller an IRSA role for exactly its service account; in
//! fan-out mode the rules target the Lambda instead.
//!
//! moto 5.2.5 skips `AWS::SQS::QueuePolicy` (and enforces no queue policy), ignores a function's
//! `Architectures` and `DeadLetterConfig`, and cannot invoke a Lambda without Docker; cfn-lint
//! covers those parts (see `infra/cloudformation/README.md`).

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::error::DisplayErrorContext;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::deploy_steps::DeploySteps;
use secret_bridge_tests::kube_helpers::wait_for_secret_value;
use secret_bridge_tests::stack::workspace_root;
use secret_bridge_tests::{Stack, unique, wait_for};
use serde_json::{Value, json};

const TEMPLATE: &str = "infra/cloudformation/secret-bridge.yaml";

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
        let output = |key: &str| -> String {
            outputs
                .get(key)
                .unwrap_or_else(|| panic!("stack {name} has no output {key}: {outputs:?}"))
                .clone()
        };
        let queue = output("QueueUrl");
        let dlq = output("DeadLetterQueueUrl");
        assert_eq!(output("QueueArn"), aws.queue_arn(&queue).await);

        let attributes = queue_attributes(&aws, &queue).await;
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
        let dlq_attributes = queue_attributes(&aws, &dlq).await;
        assert_eq!(dlq_attributes["SqsManagedSseEnabled"], "true");
        assert_eq!(dlq_attributes["MessageRetentionPeriod"], "1209600");

        assert_controller_role(
            &stack,
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
        ("LambdaCodeS3Bucket", bucket.as_str()),
        ("LambdaCodeS3Key", key),
        ("LambdaArchitecture", "x86_64"),
        ("FanOutQueueArns", other_clusters_list.as_str()),
        ("FanOutRoutes", routes.as_str()),
        ("EventBusName", bus.as_str()),
        ("CloudTrailEvents", "true"),
    ];
    with_stack(&cfn, &name, &parameters, async |outputs| {
        let output = |key: &str| -> String {
            outputs
                .get(key)
                .unwrap_or_else(|| panic!("stack {name} has no output {key}: {outputs:?}"))
                .clone()
        };
        assert!(
            !outputs.contains_key("ControllerRoleArn"),
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

        let send = role_policy(&stack, &output("FanOutRoleArn"), "send-to-queues").await;
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
        let describe = role_policy(&stack, &output("FanOutRoleArn"), "describe-secrets").await;
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

/// Deploys the template as stack `name`, runs `test` with its outputs, and deletes the stack
/// afterwards, also when `test` panics.
async fn with_stack<T>(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    parameters: &[(&str, &str)],
    test: impl AsyncFnOnce(HashMap<String, String>) -> T,
) -> T {
    let outputs = deploy(cfn, name, parameters).await;
    let result = AssertUnwindSafe(test(outputs)).catch_unwind().await;
    cfn.delete_stack()
        .stack_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteStack {name}: {}", DisplayErrorContext(e)));
    wait_for(
        &format!("stack {name} to be deleted"),
        Duration::from_secs(60),
        || async {
            match cfn.describe_stacks().stack_name(name).send().await {
                Err(_) => Some(()),
                Ok(out) => out
                    .stacks()
                    .iter()
                    .all(|s| s.stack_status() == Some(&StackStatus::DeleteComplete))
                    .then_some(()),
            }
        },
    )
    .await;
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// CreateStack, then DescribeStacks until CREATE_COMPLETE; returns the outputs by key.
async fn deploy(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    parameters: &[(&str, &str)],
) -> HashMap<String, String> {
    let template =
        std::fs::read_to_string(workspace_root().join(TEMPLATE)).expect("read the template");
    cfn.create_stack()
        .stack_name(name)
        .template_body(template)
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(key, value)| {
                    Parameter::builder()
                        .parameter_key(*key)
                        .parameter_value(*value)
                        .build()
                })
                .collect(),
        ))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStack {name}: {}", DisplayErrorContext(e)));
    let created = wait_for(
        &format!("stack {name} to be CREATE_COMPLETE"),
        Duration::from_secs(60),
        || async {
            let out = cfn
                .describe_stacks()
                .stack_name(name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("DescribeStacks {name}: {}", DisplayErrorContext(e)));
            let described = out.stacks().first()?.clone();
            match described.stack_status() {
                Some(StackStatus::CreateComplete) => Some(described),
                Some(StackStatus::CreateInProgress) | None => None,
                Some(status) => panic!(
                    "stack {name} is {status}: {}",
                    described.stack_status_reason().unwrap_or("no reason given")
                ),
            }
        },
    )
    .await;
    created
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect()
}

async fn queue_attributes(aws: &Aws, url: &str) -> HashMap<String, String> {
    aws.sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key.as_str().to_owned(), value))
        .collect()
}

/// The IRSA role trusts only the service account's tokens from the cluster's OIDC provider, and
/// grants the least the controller needs.
async fn assert_controller_role(
    stack: &Stack,
    role_arn: &str,
    oidc: &str,
    queue_arn: &str,
    kms_key: &str,
) {
    let account = queue_arn
        .split(':')
        .nth(4)
        .expect("account in the queue ARN");
    let region = &stack.env["AWS_REGION"];
    let role_name = role_arn.rsplit('/').next().expect("role name");
    let role = iam_query(stack, "GetRole", &[("RoleName", role_name)]).await;
    let trust: Value = serde_json::from_str(&percent_decode(xml_element(
        &role,
        "AssumeRolePolicyDocument",
    )))
    .expect("the trust policy is JSON");
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

    let read = role_policy(stack, role_arn, "read-secrets").await;
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
    let consume = role_policy(stack, role_arn, "list-and-consume-events").await;
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
    let decrypt = role_policy(stack, role_arn, "decrypt-secrets").await;
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

    let mut read_call = fixture("cloudtrail-get-secret-value.json");
    read_call["detail"]["requestParameters"]["secretId"] = json!(read);
    let mut put_call = fixture("cloudtrail-put-secret-value.json");
    put_call["detail"]["requestParameters"]["secretId"] = json!(put);
    let mut rotation = fixture("service-event-rotation-succeeded.json");
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
        for message in receive_and_delete(aws, queue).await {
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
        let messages = aws
            .sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage")
            .messages
            .unwrap_or_default();
        for message in messages {
            if message.body() == Some(poison.as_str()) {
                // Not deleted: the visibility timeout (1 s) hands it out again.
                receives += 1;
            } else {
                delete(aws, queue, &message).await;
            }
        }
        let dead = receive_and_delete(aws, dlq).await;
        if dead.iter().any(|m| m.body() == Some(poison.as_str())) {
            break;
        }
    }
    assert_eq!(
        receives, max_receive,
        "SQS hands a message out maxReceiveCount times before dead-lettering it"
    );
}

async fn receive_and_delete(aws: &Aws, queue: &str) -> Vec<Message> {
    let messages = aws
        .sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("ReceiveMessage")
        .messages
        .unwrap_or_default();
    for message in &messages {
        delete(aws, queue, message).await;
    }
    messages
}

async fn delete(aws: &Aws, queue: &str, message: &Message) {
    aws.sqs
        .delete_message()
        .queue_url(queue)
        .receipt_handle(message.receipt_handle().expect("receipt handle"))
        .send()
        .await
        .expect("DeleteMessage");
}

fn fixture(name: &str) -> Value {
    let path = workspace_root().join("tests/fixtures/events").join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// An inline policy of a role, as JSON.
async fn role_policy(stack: &Stack, role_arn: &str, policy: &str) -> Value {
    let role_name = role_arn.rsplit('/').next().expect("role name");
    let answer = iam_query(
        stack,
        "GetRolePolicy",
        &[("RoleName", role_name), ("PolicyName", policy)],
    )
    .await;
    let mut document = percent_decode(xml_element(&answer, "PolicyDocument"));
    if document.starts_with("{'") {
        // moto 5.2.5 answers a policy that CloudFormation handed it as an object in Python's
        // repr. Ours hold no quote characters, so swapping the quotes gives the JSON.
        document = document.replace('\'', "\"");
    }
    serde_json::from_str(&document)
        .unwrap_or_else(|e| panic!("policy {policy} of {role_name} is not JSON: {e}: {document}"))
}

/// An IAM query-protocol call (the test crate has no IAM client).
async fn iam_query(stack: &Stack, action: &str, parameters: &[(&str, &str)]) -> String {
    let mut args = vec![
        "--data-urlencode".to_owned(),
        format!("Action={action}"),
        "--data-urlencode".to_owned(),
        "Version=2010-05-08".to_owned(),
    ];
    for (key, value) in parameters {
        args.push("--data-urlencode".to_owned());
        args.push(format!("{key}={value}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    emulator_call(stack, "iam", "POST", "/", &args).await
}

/// A raw call to the emulator with curl, for the services the test crate has no SDK client for
/// (IAM, Lambda, S3). moto picks the service from the credential scope of the Authorization
/// header and does not verify signatures.
async fn emulator_call(
    stack: &Stack,
    service: &str,
    method: &str,
    path: &str,
    args: &[&str],
) -> String {
    let authorization = format!(
        "Authorization: AWS4-HMAC-SHA256 Credential={}/20250101/{}/{service}/aws4_request, SignedHeaders=host, Signature=0",
        stack.env["AWS_ACCESS_KEY_ID"], stack.env["AWS_REGION"]
    );
    let url = format!("{}{path}", stack.env["AWS_ENDPOINT_URL"]);
    let output = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "-X",
            method,
            "-H",
            &authorization,
        ])
        .args(args)
        .arg(&url)
        .output()
        .await
        .expect("run curl");
    let body = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{method} {url} ({service}) failed: {}{body}",
        String::from_utf8_lossy(&output.stderr)
    );
    body
}

/// The text of the first `<tag>` element of an XML answer.
fn xml_element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..]
        .find(&format!("</{tag}>"))
        .unwrap_or_else(|| panic!("no </{tag}> in {xml}"));
    &xml[start..start + end]
}

/// IAM answers policy documents URL-encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).expect("a policy document is UTF-8")
}

/// The README's "Deploying on AWS and EKS": every command of it, run unchanged against the
/// emulator and the local apiserver (see `secret_bridge_tests::deploy_steps`). Then the checks
/// that the two halves fit: the stack's role trusts the release's ServiceAccount, the chart has
/// the stack's queue and role, and the controller run as the release's pod syncs the example's
/// ExternalSecret and follows a rotation by the stack's rule and queue.
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
    let role_name = role_arn.rsplit('/').next().expect("role name");
    let role = iam_query(&stack, "GetRole", &[("RoleName", role_name)]).await;
    let trust: Value = serde_json::from_str(&percent_decode(xml_element(
        &role,
        "AssumeRolePolicyDocument",
    )))
    .expect("the trust policy is JSON");
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
    let env = crate::helm::container_env(&pod.containers[0]);
    assert_eq!(env["SQS_QUEUE_URL"], steps.var("QUEUE_URL"));
    assert_eq!(env["CONTROLLER_CLASS"], class);

    let (controller, _kubeconfig) = crate::helm::run_deployment(
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
