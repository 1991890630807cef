//! The fan-out Lambda: reads Secrets Manager events (from an EventBridge rule, or from an SQS
//! queue that such a rule feeds), normalizes each with the core crate and sends the normalized
//! message to every cluster queue whose route matches the secret.
//!
//! - [`config`]: the routes, read from the environment at cold start.
//! - [`routing`]: routes and the rules that match a secret to them.
//! - [`tags`]: the secret's tags, for routes that match by tag ([`tags::TagLookup`]).
//! - [`queue`]: delivery with `SendMessageBatch` ([`queue::QueueSender`]).
//! - [`handler`]: one invocation, from trigger detection to the response.
//! - [`aws`]: the AWS SDK behind the two traits.

pub mod aws;
pub mod config;
pub mod handler;
pub mod queue;
pub mod routing;
pub mod tags;

use secret_bridge::event::EventError;

/// Why the function cannot start, or why an event (or a record of a batch) failed. Messages name
/// the record, the secret and the AWS error code; never a message body or a secret value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration in the environment is missing or invalid (at cold start).
    #[error("{variable}: {message}")]
    Config {
        variable: &'static str,
        message: String,
    },
    /// The invocation payload is neither an SQS event nor an EventBridge event.
    #[error("unsupported payload: {0}")]
    Payload(String),
    /// An SQS record has no body.
    #[error("record {record}: the SQS message has no body")]
    EmptyRecord { record: String },
    /// The event is not one the core crate understands.
    #[error("record {record}: {source}")]
    Unreadable {
        record: String,
        #[source]
        source: EventError,
    },
    /// The secret's tags could not be read, so tag routes could not be decided.
    #[error("record {record}: {source}")]
    Tags {
        record: String,
        #[source]
        source: aws::AwsError,
    },
    /// At least one of the record's deliveries failed.
    #[error("record {record}: delivery failed for {}", failures.join("; "))]
    Delivery {
        record: String,
        failures: Vec<String>,
    },
    /// A failed SQS record without a `messageId` cannot be reported as a batch item failure.
    #[error("a failed SQS record has no messageId, so the whole batch must be retried")]
    MissingMessageId,
}

impl Error {
    /// A stable name for the Lambda error type (`errorType` in the invocation's error).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config { .. } => "SecretBridge.Config",
            Error::Payload(_) => "SecretBridge.UnsupportedPayload",
            Error::EmptyRecord { .. } | Error::Unreadable { .. } => "SecretBridge.UnreadableEvent",
            Error::Tags { .. } => "SecretBridge.TagLookupFailed",
            Error::Delivery { .. } => "SecretBridge.DeliveryFailed",
            Error::MissingMessageId => "SecretBridge.MissingMessageId",
        }
    }
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(error: Error) -> Self {
        lambda_runtime::Diagnostic {
            error_type: error.kind().to_owned(),
            error_message: error.to_string(),
        }
    }
}
