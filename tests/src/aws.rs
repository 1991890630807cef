//! The AWS side of the tests, on the emulator: secrets, queues, rules and the events that real
//! AWS would publish (moto does not emit Secrets Manager events; the tests play that part with
//! the documented shapes).

use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::{PutEventsRequestEntry, Target};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

pub struct Aws {
    pub secrets: aws_sdk_secretsmanager::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub region: String,
}

/// A secret's current version, as Secrets Manager reports it.
pub struct Written {
    pub arn: String,
    pub version_id: String,
}

impl Aws {
    pub fn new(config: &SdkConfig) -> Aws {
        Aws {
            secrets: aws_sdk_secretsmanager::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
        }
    }

    /// Creates the secret, or puts a new current value when it exists.
    pub async fn upsert_secret(&self, name: &str, value: &str) -> Written {
        match self
            .secrets
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
        {
            Ok(out) => Written {
                arn: out.arn.unwrap(),
                version_id: out.version_id.unwrap(),
            },
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
    /// Secrets Manager events to. Returns the queue URL.
    pub async fn event_queue(
        &self,
        name: &str,
        bus: &str,
        dlq: Option<(&str, u32)>,
        visibility_s: u32,
    ) -> String {
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

    pub async fn plain_queue(&self, name: &str) -> String {
        self.sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .unwrap()
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
