//! The AWS SDK behind [`QueueSender`] (SQS `SendMessageBatch`) and [`TagLookup`] (Secrets
//! Manager `DescribeSecret`).
//!
//! Endpoints and credentials come from the SDK's standard configuration (the function's role
//! in Lambda; `AWS_ENDPOINT_URL` reaches an emulator). Queues and secrets in another region than
//! the function's are reached with a client for that region.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;

use aws_config::{Region, SdkConfig};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::queue::{EntryFailure, OutgoingMessage, QueueSender};
use crate::routing::{Destination, Router};
use crate::tags::{SecretRef, SecretTags, TagLookup};

/// An AWS call that failed: the service's error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} {target}: {code}: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    /// The queue URL or secret the call was about.
    pub target: String,
    pub code: String,
    pub message: String,
}

impl AwsError {
    fn from_sdk<E, R>(operation: &'static str, target: &str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let (code, message) = secret_bridge::aws::error_parts(&error);
        AwsError {
            operation,
            target: target.to_owned(),
            code,
            message,
        }
    }
}

/// `SendMessageBatch` through one SQS client per region the routes name.
pub struct SqsSender {
    default: aws_sdk_sqs::Client,
    regional: HashMap<String, aws_sdk_sqs::Client>,
}

impl SqsSender {
    /// Builds every client the routes need once, at cold start.
    pub fn new(config: &SdkConfig, router: &Router) -> Self {
        let own_region = config.region().map(Region::as_ref);
        let regional = router
            .routes()
            .iter()
            .filter_map(|route| route.destination.region.as_deref())
            .filter(|region| Some(*region) != own_region)
            .map(|region| {
                let regional = aws_sdk_sqs::config::Builder::from(config)
                    .region(Region::new(region.to_owned()))
                    .build();
                (region.to_owned(), aws_sdk_sqs::Client::from_conf(regional))
            })
            .collect();
        SqsSender {
            default: aws_sdk_sqs::Client::new(config),
            regional,
        }
    }

    fn client(&self, destination: &Destination) -> &aws_sdk_sqs::Client {
        destination
            .region
            .as_deref()
            .and_then(|region| self.regional.get(region))
            .unwrap_or(&self.default)
    }
}

impl QueueSender for SqsSender {
    async fn send_batch(
        &self,
        destination: &Destination,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<EntryFailure>, AwsError> {
        let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
        let entries = messages
            .into_iter()
            .map(|message| {
                SendMessageBatchRequestEntry::builder()
                    .id(message.id)
                    .message_body(message.body)
                    .set_message_group_id(message.group_id)
                    .set_message_deduplication_id(message.deduplication_id)
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        let output = self
            .client(destination)
            .send_message_batch()
            .queue_url(&destination.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("SendMessageBatch", &destination.url, e))?;
        let mut failures: Vec<EntryFailure> = output
            .failed()
            .iter()
            .map(|entry| EntryFailure {
                id: entry.id().to_owned(),
                code: entry.code().to_owned(),
                message: entry.message().unwrap_or_default().to_owned(),
            })
            .collect();
        // An entry SQS reports neither as sent nor as failed was not sent.
        for id in ids {
            let reported = output.successful().iter().any(|entry| entry.id() == id)
                || failures.iter().any(|failure| failure.id == id);
            if !reported {
                failures.push(EntryFailure {
                    id,
                    code: "NotReported".into(),
                    message: "SQS reported the entry neither as sent nor as failed".into(),
                });
            }
        }
        Ok(failures)
    }
}

/// `DescribeSecret` for tag routes, with a client per secret region (created on first use).
pub struct SecretsManagerTags {
    config: SdkConfig,
    clients: Mutex<HashMap<Option<String>, aws_sdk_secretsmanager::Client>>,
}

impl SecretsManagerTags {
    pub fn new(config: SdkConfig) -> Self {
        SecretsManagerTags {
            config,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, region: Option<&str>) -> aws_sdk_secretsmanager::Client {
        let own_region = self.config.region().map(Region::as_ref);
        let region = region.filter(|r| Some(*r) != own_region).map(str::to_owned);
        self.clients
            .lock()
            .expect("client cache lock")
            .entry(region.clone())
            .or_insert_with(|| {
                let mut builder = aws_sdk_secretsmanager::config::Builder::from(&self.config);
                if let Some(region) = region {
                    builder = builder.region(Region::new(region));
                }
                aws_sdk_secretsmanager::Client::from_conf(builder.build())
            })
            .clone()
    }
}

impl TagLookup for SecretsManagerTags {
    async fn tags(&self, secret: SecretRef<'_>) -> Result<SecretTags, AwsError> {
        let result = self
            .client(secret.region)
            .describe_secret()
            .secret_id(secret.id)
            .send()
            .await;
        match result {
            Ok(output) => Ok(SecretTags::Known(
                output
                    .tags()
                    .iter()
                    .filter_map(|tag| Some((tag.key()?.to_owned(), tag.value()?.to_owned())))
                    .collect::<BTreeMap<_, _>>(),
            )),
            Err(error) => {
                let error = AwsError::from_sdk("DescribeSecret", secret.id, error);
                if error.code == "ResourceNotFoundException" {
                    Ok(SecretTags::Gone)
                } else {
                    Err(error)
                }
            }
        }
    }
}
