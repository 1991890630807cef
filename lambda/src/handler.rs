//! One invocation: which trigger sent it, each event normalized and routed, every delivery sent,
//! and the response that tells Lambda what to retry.
//!
//! - EventBridge rule: the payload is one event. Any failure fails the invocation, so
//!   EventBridge's asynchronous invocation retries it and finally sends it to the function's
//!   dead-letter queue.
//! - SQS queue: the payload is a batch of records whose bodies are events. Failed records are
//!   returned as batch item failures (`ReportBatchItemFailures`); the others are deleted.
//!
//! Irrelevant events (a label other than `AWSCURRENT`, a failed API call) and events no route
//! matches are dropped. Unreadable events fail, so they end in a dead-letter queue.

use std::collections::BTreeSet;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use secret_bridge::event::{self, EventError, Parsed};
use secret_bridge::normalized::NormalizedMessage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::Error;
use crate::queue::{Delivery, QueueSender, deliver};
use crate::routing::{Destination, Router, routing_name};
use crate::tags::{InvocationTags, TagLookup};

/// Records routed at once (each may wait for `DescribeSecret`).
const CONCURRENT_ROUTING: usize = 16;

/// How the function was invoked.
#[derive(Debug)]
pub enum Trigger {
    Sqs(SqsEvent),
    EventBridge(EventBridgeInvocation),
}

/// An event delivered by an EventBridge rule.
#[derive(Debug)]
pub struct EventBridgeInvocation {
    pub id: Option<String>,
    pub detail_type: Option<String>,
    /// The event as JSON, for the core parser.
    pub body: String,
}

impl Trigger {
    /// An SQS event has `Records` from `aws:sqs`; anything else is taken for an EventBridge
    /// event (and fails as unreadable when it is not one).
    pub fn detect(payload: Value) -> Result<Trigger, Error> {
        if let Some(records) = payload.get("Records") {
            let mut sources = records.as_array().into_iter().flatten().map(|record| {
                ["eventSource", "EventSource"]
                    .iter()
                    .find_map(|key| record.get(key)?.as_str())
                    .unwrap_or("an unknown source")
            });
            if let Some(source) = sources.find(|source| *source != "aws:sqs") {
                return Err(Error::Payload(format!(
                    "records from {source}; the function reads SQS records and EventBridge events"
                )));
            }
            let event: SqsEvent = serde_json::from_value(payload)
                .map_err(|e| Error::Payload(format!("`Records` that are not SQS records: {e}")))?;
            return Ok(Trigger::Sqs(event));
        }
        // The typed header only names the event in logs; the core parser judges the event, so
        // a malformed one fails with the reason the controller would give (and still by its id).
        let (id, detail_type) = match EventBridgeEvent::<Value>::deserialize(&payload) {
            Ok(header) => (header.id, Some(header.detail_type)),
            Err(_) => (
                payload.get("id").and_then(Value::as_str).map(str::to_owned),
                None,
            ),
        };
        Ok(Trigger::EventBridge(EventBridgeInvocation {
            id,
            detail_type,
            body: payload.to_string(),
        }))
    }
}

/// What the function returns.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// For SQS triggers: the records to retry.
    Sqs(SqsBatchResponse),
    /// For EventBridge triggers (which ignore it): what was done, for logs and tests.
    EventBridge(Summary),
}

#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub event_id: Option<String>,
    /// Queues the event was sent to.
    pub delivered: usize,
}

/// The function: routes, a queue sender and a tag lookup.
pub struct FanOut<S, T> {
    router: Router,
    sender: S,
    tags: T,
}

/// One event of the invocation: an SQS record, or the EventBridge payload itself.
struct Input<'a> {
    /// The SQS message id or the EventBridge event id: in logs, errors and FIFO deduplication.
    id: &'a str,
    body: Option<&'a str>,
}

/// An event that goes somewhere.
struct Routed<'r> {
    message: NormalizedMessage,
    body: String,
    destinations: BTreeSet<&'r Destination>,
}

impl<S: QueueSender, T: TagLookup> FanOut<S, T> {
    pub fn new(router: Router, sender: S, tags: T) -> Self {
        FanOut {
            router,
            sender,
            tags,
        }
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Handles one invocation. `request_id` stands in for a missing EventBridge event id.
    pub async fn handle(&self, payload: Value, request_id: &str) -> Result<Response, Error> {
        match Trigger::detect(payload)? {
            Trigger::Sqs(event) => self.handle_sqs(event).await.map(Response::Sqs),
            Trigger::EventBridge(event) => self
                .handle_eventbridge(event, request_id)
                .await
                .map(Response::EventBridge),
        }
    }

    /// A batch from SQS: every record that failed is reported, the rest are done.
    pub async fn handle_sqs(&self, event: SqsEvent) -> Result<SqsBatchResponse, Error> {
        let inputs: Vec<Input<'_>> = event
            .records
            .iter()
            .map(|record| Input {
                id: record.message_id.as_deref().unwrap_or("(no messageId)"),
                body: record.body.as_deref(),
            })
            .collect();
        let outcomes = self.process(&inputs).await;
        let mut response = SqsBatchResponse::default();
        for (record, outcome) in event.records.iter().zip(outcomes) {
            if let Err(error) = outcome {
                warn!(error = %error, kind = error.kind(), "record failed; SQS will deliver it again");
                match &record.message_id {
                    Some(id) => response.add_failure(id.clone()),
                    None => return Err(Error::MissingMessageId),
                }
            }
        }
        info!(
            records = inputs.len(),
            failed = response.batch_item_failures.len(),
            "SQS batch handled"
        );
        Ok(response)
    }

    /// One event from an EventBridge rule: any failure fails the invocation.
    pub async fn handle_eventbridge(
        &self,
        event: EventBridgeInvocation,
        request_id: &str,
    ) -> Result<Summary, Error> {
        let input = Input {
            id: event.id.as_deref().unwrap_or(request_id),
            body: Some(&event.body),
        };
        debug!(
            event_id = input.id,
            detail_type = event.detail_type.as_deref().unwrap_or("(none)"),
            "EventBridge event"
        );
        let outcome = self
            .process(std::slice::from_ref(&input))
            .await
            .pop()
            .expect("one outcome per input");
        match outcome {
            Ok(delivered) => Ok(Summary {
                event_id: event.id,
                delivered,
            }),
            Err(error) => {
                warn!(error = %error, kind = error.kind(), "event failed; the invocation fails");
                Err(error)
            }
        }
    }

    /// Routes and delivers every input; for each, the number of queues it reached or why it
    /// failed.
    async fn process(&self, inputs: &[Input<'_>]) -> Vec<Result<usize, Error>> {
        let tags = InvocationTags::new(&self.tags);
        let routed: Vec<Result<Option<Routed<'_>>, Error>> = futures::stream::iter(inputs)
            .map(|input| self.route(input, &tags))
            .buffered(CONCURRENT_ROUTING)
            .collect()
            .await;
        let deliveries: Vec<Delivery<'_>> = routed
            .iter()
            .zip(inputs)
            .enumerate()
            .filter_map(|(record, (routed, input))| {
                let routed = routed.as_ref().ok()?.as_ref()?;
                Some(routed.destinations.iter().map(move |destination| Delivery {
                    record,
                    destination,
                    body: &routed.body,
                    secret_name: routing_name(&routed.message),
                    source_id: input.id,
                }))
            })
            .flatten()
            .collect();
        let mut report = deliver(&self.sender, &deliveries).await;
        routed
            .into_iter()
            .zip(inputs)
            .enumerate()
            .map(|(record, (routed, input))| {
                let Some(routed) = routed? else {
                    return Ok(0);
                };
                if let Some(failures) = report.failures.remove(&record) {
                    return Err(Error::Delivery {
                        record: input.id.to_owned(),
                        failures,
                    });
                }
                let queues: Vec<&str> =
                    routed.destinations.iter().map(|d| d.queue_name()).collect();
                info!(
                    record = input.id,
                    kind = %routed.message.kind,
                    secret = %routed.message.name,
                    queues = ?queues,
                    "event delivered"
                );
                Ok(queues.len())
            })
            .collect()
    }

    /// Reads, normalizes and routes one event. `None`: nothing to deliver.
    async fn route<L: TagLookup>(
        &self,
        input: &Input<'_>,
        tags: &L,
    ) -> Result<Option<Routed<'_>>, Error> {
        let record = input.id;
        let body = input.body.ok_or_else(|| Error::EmptyRecord {
            record: record.to_owned(),
        })?;
        let change = match event::parse(body) {
            Ok(Parsed::Change(change)) => change,
            Ok(Parsed::Irrelevant { reason }) => {
                debug!(record, reason = %reason, "irrelevant event dropped");
                return Ok(None);
            }
            Err(source) => {
                return Err(Error::Unreadable {
                    record: record.to_owned(),
                    source,
                });
            }
        };
        let message = NormalizedMessage::from_change(&change).ok_or_else(|| Error::Unreadable {
            record: record.to_owned(),
            source: EventError::UnknownShape("the event names no secret"),
        })?;
        let destinations = self
            .router
            .destinations(&message, tags)
            .await
            .map_err(|source| Error::Tags {
                record: record.to_owned(),
                source,
            })?;
        if destinations.is_empty() {
            debug!(record, kind = %message.kind, secret = %message.name, "no route matches; dropped");
            return Ok(None);
        }
        let body = message.to_json();
        Ok(Some(Routed {
            message,
            body,
            destinations,
        }))
    }
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod tests;
