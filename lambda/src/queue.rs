//! Delivery to the cluster queues: messages grouped per queue, at most ten per
//! `SendMessageBatch` call, calls running concurrently, failures traced back to their records.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use futures::StreamExt;

use crate::aws::AwsError;
use crate::routing::Destination;

/// The most entries one `SendMessageBatch` call takes.
pub const MAX_BATCH: usize = 10;

/// `SendMessageBatch` calls in flight at once.
const CONCURRENT_CALLS: usize = 16;

/// SQS limits message group and deduplication ids to 128 characters.
const MAX_FIFO_ID: usize = 128;

/// One entry of a `SendMessageBatch` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Unique within the call.
    pub id: String,
    pub body: String,
    /// FIFO queues only: the secret's name, so each secret's events stay in order.
    pub group_id: Option<String>,
    /// FIFO queues only: the source event's id, so a retried invocation is not delivered twice.
    pub deduplication_id: Option<String>,
}

/// An entry that SQS refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFailure {
    pub id: String,
    pub code: String,
    pub message: String,
}

/// Sends messages to SQS queues.
pub trait QueueSender: Send + Sync {
    /// One `SendMessageBatch` call with at most [`MAX_BATCH`] messages. `Ok` lists the entries
    /// that were not sent; `Err` means the whole call failed.
    fn send_batch(
        &self,
        destination: &Destination,
        messages: Vec<OutgoingMessage>,
    ) -> impl Future<Output = Result<Vec<EntryFailure>, AwsError>> + Send;
}

/// A normalized message for one queue, on behalf of one record of the invocation.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// The record's position in the invocation.
    pub record: usize,
    pub destination: &'a Destination,
    pub body: &'a str,
    /// The secret's name (the FIFO message group).
    pub secret_name: &'a str,
    /// The source event's id: the SQS message id or the EventBridge event id.
    pub source_id: &'a str,
}

/// What happened to an invocation's deliveries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Messages SQS accepted.
    pub sent: usize,
    /// For each record with a failed delivery: queue and reason of each failure.
    pub failures: BTreeMap<usize, Vec<String>>,
}

/// Sends every delivery. A record appears at most once per destination.
pub async fn deliver<S: QueueSender>(sender: &S, deliveries: &[Delivery<'_>]) -> DeliveryReport {
    let mut per_queue: BTreeMap<&Destination, Vec<&Delivery<'_>>> = BTreeMap::new();
    for delivery in deliveries {
        per_queue
            .entry(delivery.destination)
            .or_default()
            .push(delivery);
    }
    let calls: Vec<(&Destination, &[&Delivery<'_>])> = per_queue
        .iter()
        .flat_map(|(destination, group)| group.chunks(MAX_BATCH).map(|chunk| (*destination, chunk)))
        .collect();
    let results: Vec<_> = futures::stream::iter(calls)
        .map(|(destination, chunk)| async move {
            let messages = chunk
                .iter()
                .map(|delivery| outgoing(delivery, destination.is_fifo()))
                .collect();
            (
                destination,
                chunk,
                sender.send_batch(destination, messages).await,
            )
        })
        .buffer_unordered(CONCURRENT_CALLS)
        .collect()
        .await;

    let mut report = DeliveryReport::default();
    for (destination, chunk, result) in results {
        let queue = destination.queue_name();
        match result {
            Ok(failed) => {
                let failed: HashMap<&str, &EntryFailure> =
                    failed.iter().map(|f| (f.id.as_str(), f)).collect();
                for delivery in chunk {
                    match failed.get(delivery.record.to_string().as_str()) {
                        None => report.sent += 1,
                        Some(failure) => {
                            report
                                .failures
                                .entry(delivery.record)
                                .or_default()
                                .push(format!(
                                    "queue {queue}: {}: {}",
                                    failure.code, failure.message
                                ))
                        }
                    }
                }
            }
            Err(error) => {
                for delivery in chunk {
                    report
                        .failures
                        .entry(delivery.record)
                        .or_default()
                        .push(format!("queue {queue}: {error}"));
                }
            }
        }
    }
    report
}

fn outgoing(delivery: &Delivery<'_>, fifo: bool) -> OutgoingMessage {
    let fifo_id = |text: &str| -> String {
        text.chars()
            .filter(|c| c.is_ascii_graphic())
            .take(MAX_FIFO_ID)
            .collect()
    };
    OutgoingMessage {
        id: delivery.record.to_string(),
        body: delivery.body.to_owned(),
        group_id: fifo.then(|| fifo_id(delivery.secret_name)),
        deduplication_id: fifo.then(|| fifo_id(delivery.source_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records every call; refuses entries and whole calls as told.
    #[derive(Default)]
    struct FakeSender {
        calls: Mutex<Vec<(String, Vec<OutgoingMessage>)>>,
        refuse_entry: Option<String>,
        refuse_queue: Option<String>,
    }

    impl QueueSender for FakeSender {
        async fn send_batch(
            &self,
            destination: &Destination,
            messages: Vec<OutgoingMessage>,
        ) -> Result<Vec<EntryFailure>, AwsError> {
            assert!(messages.len() <= MAX_BATCH);
            self.calls
                .lock()
                .unwrap()
                .push((destination.url.clone(), messages.clone()));
            if self.refuse_queue.as_deref() == Some(destination.url.as_str()) {
                return Err(AwsError {
                    operation: "SendMessageBatch",
                    target: destination.url.clone(),
                    code: "AccessDenied".into(),
                    message: "not allowed".into(),
                });
            }
            Ok(messages
                .iter()
                .filter(|m| self.refuse_entry.as_deref() == Some(m.id.as_str()))
                .map(|m| EntryFailure {
                    id: m.id.clone(),
                    code: "InternalError".into(),
                    message: "try again".into(),
                })
                .collect())
        }
    }

    fn queue(name: &str) -> Destination {
        Destination::from_url(&format!("https://sqs.us-east-1.amazonaws.com/1/{name}")).unwrap()
    }

    #[tokio::test]
    async fn groups_per_queue_ten_per_call() {
        let (a, b) = (queue("a"), queue("b"));
        let deliveries: Vec<Delivery<'_>> = (0..23)
            .map(|record| Delivery {
                record,
                destination: if record % 2 == 0 { &a } else { &b },
                body: "{}",
                secret_name: "s",
                source_id: "id",
            })
            .collect();
        let sender = FakeSender::default();
        let report = deliver(&sender, &deliveries).await;
        assert_eq!(
            report,
            DeliveryReport {
                sent: 23,
                failures: BTreeMap::new()
            }
        );
        let calls = sender.calls.lock().unwrap();
        let mut sizes: Vec<(String, usize)> = calls
            .iter()
            .map(|(url, messages)| (url.rsplit('/').next().unwrap().to_owned(), messages.len()))
            .collect();
        sizes.sort();
        let expected = [("a", 2), ("a", 10), ("b", 1), ("b", 10)];
        assert_eq!(
            sizes,
            expected.map(|(q, n)| (q.to_owned(), n)).to_vec(),
            "12 messages for a and 11 for b, in calls of at most ten"
        );
        assert!(
            calls
                .iter()
                .all(|(_, m)| m.iter().all(|m| m.group_id.is_none()))
        );
    }

    #[tokio::test]
    async fn failures_are_traced_to_their_records() {
        let (a, b) = (queue("a"), queue("b"));
        let deliveries = [
            Delivery {
                record: 0,
                destination: &a,
                body: "{}",
                secret_name: "s",
                source_id: "0",
            },
            Delivery {
                record: 1,
                destination: &a,
                body: "{}",
                secret_name: "s",
                source_id: "1",
            },
            Delivery {
                record: 1,
                destination: &b,
                body: "{}",
                secret_name: "s",
                source_id: "1",
            },
            Delivery {
                record: 2,
                destination: &b,
                body: "{}",
                secret_name: "s",
                source_id: "2",
            },
        ];
        let sender = FakeSender {
            refuse_entry: Some("0".into()),
            refuse_queue: Some(b.url.clone()),
            ..FakeSender::default()
        };
        let report = deliver(&sender, &deliveries).await;
        assert_eq!(report.sent, 1, "only record 1 to queue a went through");
        assert_eq!(
            report.failures.keys().copied().collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(report.failures[&0][0].contains("queue a: InternalError: try again"));
        assert!(report.failures[&2][0].contains("queue b: SendMessageBatch"));
        assert!(report.failures[&2][0].contains("AccessDenied"));
    }

    #[tokio::test]
    async fn fifo_queues_get_a_group_and_a_deduplication_id() {
        let fifo = queue("c.fifo");
        let long_name = "n".repeat(300);
        let deliveries = [Delivery {
            record: 0,
            destination: &fifo,
            body: "{}",
            secret_name: &long_name,
            source_id: "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        }];
        let sender = FakeSender::default();
        deliver(&sender, &deliveries).await;
        let calls = sender.calls.lock().unwrap();
        let message = &calls[0].1[0];
        assert_eq!(message.group_id.as_deref().map(str::len), Some(128));
        assert_eq!(
            message.deduplication_id.as_deref(),
            Some("6a7e8feb-b491-4cf7-a9f1-bf3703467718")
        );
    }
}
