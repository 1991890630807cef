//! The AWS side of the tests, on the emulator: secrets, queues, rules and the events that real
//! AWS would publish (moto does not emit Secrets Manager events; the tests play that part with
//! the documented shapes).

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::{PutEventsRequestEntry, Target};
use aws_sdk_iam::error::DisplayErrorContext;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use serde_json::{Value, json};

use crate::Stack;
use crate::cleanup::Leftovers;
use crate::stack::workspace_root;

/// Clients for one region of the emulator. The secrets, queues and buses it creates are removed
/// when it is dropped (see [`crate::cleanup`]), unless it was made [`Aws::untracked`].
pub struct Aws {
    pub secrets: aws_sdk_secretsmanager::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub iam: aws_sdk_iam::Client,
    pub region: String,
    pub(crate) leftovers: Option<Leftovers>,
}

/// A secret's current version, as Secrets Manager reports it.
pub struct Written {
    pub arn: String,
    pub version_id: String,
}

impl Aws {
    /// Clients that remove what they create when dropped: hold it for the whole test.
    pub fn new(config: &SdkConfig) -> Aws {
        Aws {
            leftovers: Some(Leftovers::default()),
            ..Aws::untracked(config)
        }
    }

    /// Clients that leave what they create, for callers that remove it themselves (the bench,
    /// the demo) or that outlive one test.
    pub fn untracked(config: &SdkConfig) -> Aws {
        Aws {
            secrets: aws_sdk_secretsmanager::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            leftovers: None,
        }
    }

    /// Creates the secret (removed on drop), or puts a new current value when it exists (left
    /// to whoever created it).
    pub async fn upsert_secret(&self, name: &str, value: &str) -> Written {
        self.upsert(name, value, true).await
    }

    /// Like [`Aws::upsert_secret`], but never removed: for fixed names that the demo and every
    /// run share (removing one would break a run going on beside it).
    pub async fn upsert_kept_secret(&self, name: &str, value: &str) -> Written {
        self.upsert(name, value, false).await
    }

    async fn upsert(&self, name: &str, value: &str, remove_on_drop: bool) -> Written {
        match self.create_secret(name, value).await {
            Ok(out) => {
                if remove_on_drop {
                    self.record(|leftovers, region| leftovers.secret(region, name));
                }
                Written {
                    arn: out.arn.unwrap(),
                    version_id: out.version_id.unwrap(),
                }
            }
            Err(e) if e.code() == Some("ResourceExistsException") => {
                let out = self
                    .secrets
                    .put_secret_value()
                    .secret_id(name)
                    .secret_string(value)
                    .send()
                    .await
                    .expect("PutSecretValue");
                Written {
                    arn: out.arn.unwrap(),
                    version_id: out.version_id.unwrap(),
                }
            }
            Err(e) => panic!("CreateSecret {name}: {e:?}"),
        }
    }

    /// CreateSecret. Under load the emulator sometimes answers 500 with an HTML page (a race
    /// in moto's threaded server), which the SDK cannot classify as retryable: try again.
    async fn create_secret(
        &self,
        name: &str,
        value: &str,
    ) -> Result<
        aws_sdk_secretsmanager::operation::create_secret::CreateSecretOutput,
        aws_sdk_secretsmanager::error::SdkError<
            aws_sdk_secretsmanager::operation::create_secret::CreateSecretError,
        >,
    > {
        let mut attempt = 0;
        loop {
            let result = self
                .secrets
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await;
            match result {
                Err(aws_sdk_secretsmanager::error::SdkError::ServiceError(e))
                    if e.raw().status().is_server_error() && attempt < 5 =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// A rotation's two steps: the new value as AWSPENDING, then AWSCURRENT moved onto it.
    pub async fn rotate(&self, name: &str, value: &str) -> Written {
        let current = self.current_version(name).await;
        let pending = self
            .secrets
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .version_stages("AWSPENDING")
            .send()
            .await
            .expect("PutSecretValue AWSPENDING");
        let version_id = pending.version_id.unwrap();
        self.secrets
            .update_secret_version_stage()
            .secret_id(name)
            .version_stage("AWSCURRENT")
            .move_to_version_id(&version_id)
            .remove_from_version_id(current)
            .send()
            .await
            .expect("UpdateSecretVersionStage");
        Written {
            arn: pending.arn.unwrap(),
            version_id,
        }
    }

    pub async fn current_version(&self, name: &str) -> String {
        self.secrets
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .expect("GetSecretValue")
            .version_id
            .unwrap()
    }

    /// A queue (optionally with a DLQ after `max_receive` receives) that `bus` delivers
    /// Secrets Manager events to. Returns the queue URL. The queue, its rule and the bus are
    /// removed on drop (recorded first, so that a half-made one goes too).
    pub async fn event_queue(
        &self,
        name: &str,
        bus: &str,
        dlq: Option<(&str, u32)>,
        visibility_s: u32,
    ) -> String {
        self.record(|leftovers, region| leftovers.event_queue(region, name, bus));
        let mut request = self.sqs.create_queue().queue_name(name).attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_s.to_string(),
        );
        if let Some((dlq_url, max_receive)) = dlq {
            let dlq_arn = self.queue_arn(dlq_url).await;
            request = request.attributes(
                QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive}).to_string(),
            );
        }
        let url = request
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .unwrap();
        if bus != "default" {
            self.events
                .create_event_bus()
                .name(bus)
                .send()
                .await
                .expect("CreateEventBus");
        }
        let rule = format!("{name}-rule");
        self.events
            .put_rule()
            .name(&rule)
            .event_bus_name(bus)
            .event_pattern(json!({"source": ["aws.secretsmanager"]}).to_string())
            .send()
            .await
            .expect("PutRule");
        self.events
            .put_targets()
            .rule(&rule)
            .event_bus_name(bus)
            .targets(
                Target::builder()
                    .id("queue")
                    .arn(self.queue_arn(&url).await)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("PutTargets");
        url
    }

    /// Deletes what [`Aws::event_queue`] made: its rule (a forgotten rule receives every later
    /// event), the bus unless it is `default`, and the queue.
    pub async fn remove_event_queue(&self, name: &str, bus: &str, url: &str) {
        let rule = format!("{name}-rule");
        let _ = self
            .events
            .remove_targets()
            .rule(&rule)
            .event_bus_name(bus)
            .ids("queue")
            .send()
            .await;
        let _ = self
            .events
            .delete_rule()
            .name(&rule)
            .event_bus_name(bus)
            .send()
            .await;
        if bus != "default" {
            let _ = self.events.delete_event_bus().name(bus).send().await;
        }
        let _ = self.sqs.delete_queue().queue_url(url).send().await;
    }

    /// [`Aws::remove_event_queue`] by the queue's name: the rule and bus go even when the
    /// queue is already gone.
    pub async fn remove_event_queue_named(&self, name: &str, bus: &str) {
        let url = self
            .sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .ok()
            .and_then(|found| found.queue_url)
            .unwrap_or_default();
        self.remove_event_queue(name, bus, &url).await;
    }

    /// Deletes a secret at once (no recovery window); a secret already gone is fine.
    pub async fn force_delete_secret(&self, name: &str) {
        let _ = self
            .secrets
            .delete_secret()
            .secret_id(name)
            .force_delete_without_recovery(true)
            .send()
            .await;
    }

    /// A queue without a rule (removed on drop). Returns its URL.
    pub async fn plain_queue(&self, name: &str) -> String {
        let url = self
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .unwrap();
        self.remove_queue_on_drop(&url);
        url
    }

    pub async fn queue_arn(&self, url: &str) -> String {
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .unwrap()
            .remove(&QueueAttributeName::QueueArn)
            .unwrap()
    }

    /// Visible plus in-flight messages.
    pub async fn queue_depth(&self, url: &str) -> u64 {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .unwrap_or_default();
        attributes
            .values()
            .map(|v| v.parse::<u64>().unwrap_or(0))
            .sum()
    }

    /// Every attribute of the queue, by name.
    pub async fn queue_attributes(&self, url: &str) -> HashMap<String, String> {
        self.sqs
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

    /// Up to 10 messages, received within a second, without deleting them.
    pub async fn receive(&self, queue: &str) -> Vec<Message> {
        self.sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage")
            .messages
            .unwrap_or_default()
    }

    /// Up to 10 messages, received within a second and deleted.
    pub async fn receive_and_delete(&self, queue: &str) -> Vec<Message> {
        let messages = self.receive(queue).await;
        for message in &messages {
            self.delete_message(queue, message).await;
        }
        messages
    }

    pub async fn delete_message(&self, queue: &str, message: &Message) {
        self.sqs
            .delete_message()
            .queue_url(queue)
            .receipt_handle(message.receipt_handle().expect("receipt handle"))
            .send()
            .await
            .expect("DeleteMessage");
    }

    /// The trust policy of the role `role_arn`, as JSON.
    pub async fn role_trust_policy(&self, role_arn: &str) -> Value {
        let role_name = role_name(role_arn);
        let role = self
            .iam
            .get_role()
            .role_name(role_name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetRole {role_name}: {}", DisplayErrorContext(e)))
            .role
            .expect("GetRole answers a role");
        let document = role
            .assume_role_policy_document
            .unwrap_or_else(|| panic!("role {role_name} has no trust policy"));
        policy_json(&format!("the trust policy of {role_name}"), &document)
    }

    /// The inline policy `policy` of the role `role_arn`, as JSON.
    pub async fn role_policy(&self, role_arn: &str, policy: &str) -> Value {
        let role_name = role_name(role_arn);
        let answer = self
            .iam
            .get_role_policy()
            .role_name(role_name)
            .policy_name(policy)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "GetRolePolicy {role_name} {policy}: {}",
                    DisplayErrorContext(e)
                )
            });
        policy_json(
            &format!("policy {policy} of {role_name}"),
            &answer.policy_document,
        )
    }

    /// Publishes a CloudTrail `AWS API Call via CloudTrail` event for the Secrets Manager call
    /// `event_name`, as CloudTrail would (the Secrets Manager parts of its shape).
    pub async fn publish_api_call(
        &self,
        bus: &str,
        event_name: &str,
        request: Value,
        response: Value,
    ) {
        let detail = json!({
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": event_name,
            "awsRegion": self.region,
            "requestParameters": request,
            "responseElements": response,
        });
        self.publish(bus, "AWS API Call via CloudTrail", &detail, &[])
            .await;
    }

    /// Deletes the secret (with the default recovery window) and publishes CloudTrail's
    /// `DeleteSecret` event for it on `bus`.
    pub async fn delete_secret_announced(&self, bus: &str, name: &str, arn: &str) {
        self.secrets
            .delete_secret()
            .secret_id(name)
            .send()
            .await
            .expect("DeleteSecret");
        self.publish_api_call(
            bus,
            "DeleteSecret",
            json!({"secretId": name, "recoveryWindowInDays": 7}),
            json!({"arn": arn, "name": name}),
        )
        .await;
    }

    /// Publishes the native `Secret Label Updated` event for AWSCURRENT, as Secrets Manager does.
    pub async fn publish_label_updated(&self, bus: &str, name: &str, written: &Written) {
        let detail =
            json!({"name": name, "labelUpdated": "AWSCURRENT", "versionId": written.version_id});
        self.publish(
            bus,
            "Secret Label Updated",
            &detail,
            &[written.arn.as_str()],
        )
        .await;
    }

    pub async fn publish(
        &self,
        bus: &str,
        detail_type: &str,
        detail: &serde_json::Value,
        resources: &[&str],
    ) {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(bus)
            .source("aws.secretsmanager")
            .detail_type(detail_type)
            .detail(detail.to_string())
            .set_resources(Some(resources.iter().map(|r| (*r).to_owned()).collect()))
            .build();
        let out = self
            .events
            .put_events()
            .entries(entry)
            .send()
            .await
            .expect("PutEvents");
        assert_eq!(
            out.failed_entry_count, 0,
            "PutEvents failed: {:?}",
            out.entries
        );
    }
}

fn role_name(role_arn: &str) -> &str {
    role_arn.rsplit('/').next().expect("role name")
}

/// IAM answers policy documents URL-encoded. moto 5.2.5 answers a policy that CloudFormation
/// handed it as an object in Python's repr; ours hold no quote characters, so swapping the
/// quotes gives the JSON.
fn policy_json(what: &str, encoded: &str) -> Value {
    let mut document = percent_decode(encoded);
    if document.starts_with("{'") {
        document = document.replace('\'', "\"");
    }
    serde_json::from_str(&document)
        .unwrap_or_else(|e| panic!("{what} is not JSON: {e}: {document}"))
}

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

/// An event of `tests/fixtures/events/` (real AWS shapes), as JSON.
pub fn event_fixture(name: &str) -> Value {
    let path = workspace_root().join("tests/fixtures/events").join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A raw call to the emulator with curl, for the services the test crate has no SDK client for
/// (Lambda, S3). moto picks the service from the credential scope of the Authorization header
/// and does not verify signatures.
pub async fn emulator_call(
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
