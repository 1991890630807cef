//! The SQS consumer: long-polls the queue, turns each message into refreshes of the
//! ExternalSecrets that read the secret it names, and deletes a message only once all of
//! those refreshes succeeded. A message it cannot read, or whose refresh failed, stays in the
//! queue: SQS delivers it again after its visibility timeout, and to the DLQ after the queue's
//! `maxReceiveCount`.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use backon::{BackoffBuilder, ExponentialBuilder};
use std::pin::Pin;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kube::runtime::reflector::ObjectRef;
use secret_bridge::event::{self, Parsed, SecretChange};
use tracing::{debug, info, warn};

use crate::cache::Caches;
use crate::events::eso_trigger::EsoTrigger;
use crate::events::matching::matching;
use crate::events::triggers::Triggers;
use crate::telemetry::aws_calls::PROVIDER_SQS;
use crate::telemetry::health::Health;
use crate::telemetry::metrics::{EventLabels, Metrics};

const WAIT_TIME_SECONDS: i32 = 20;
const MAX_MESSAGES: i32 = 10;
/// Messages handled at once; receiving pauses beyond.
const MAX_IN_FLIGHT: usize = 100;

pub struct Consumer {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub caches: Caches,
    pub refresher: Refresher,
    /// How long to wait for the reconciles of one message before leaving it for a retry.
    pub reconcile_timeout: Duration,
    pub metrics: Arc<Metrics>,
    pub health: Health,
    /// Reconciles that run at once (`--concurrency`): an event's time budget scales with it.
    pub concurrency: usize,
}

/// How an event's ExternalSecrets are refreshed.
pub enum Refresher {
    /// Reconcile them through our controller and wait for the result (the default mode).
    Reconcile(Arc<Triggers>),
    /// Set ESO's `force-sync` annotation on them (accelerator mode).
    EsoForceSync(Arc<EsoTrigger>),
}

/// A receive in progress.
type Receiving = Pin<Box<dyn Future<Output = Result<Vec<Message>, String>> + Send>>;

/// What the consumer knows of its queue.
struct QueueSettings {
    visibility: Duration,
    max_receive: Option<u32>,
}

/// What to do with a message.
#[derive(Debug, PartialEq, Eq)]
enum Disposition {
    Delete,
    Keep,
}

impl Consumer {
    /// Runs until `shutdown` resolves. Survives any SQS error or bad message.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        // Until every cache is listed, an event could match nothing (or a store's `prefix` be
        // unknown) and be deleted by mistake.
        tokio::select! {
            _ = &mut shutdown => return,
            () = self.caches.ready() => {}
        }
        let settings = self.settings().await;
        info!(
            queue = %self.queue_url,
            visibility_timeout_s = settings.visibility.as_secs(),
            max_receive_count = ?settings.max_receive,
            "consuming events"
        );
        // Each message finishes on its own: a message whose secret thousands of
        // ExternalSecrets read does not hold back the others of its batch, and receiving goes
        // on while messages are in flight (up to MAX_IN_FLIGHT).
        let heartbeat = self
            .health
            .register("sqs-consumer", self.max_silence(&settings));
        let mut backoff = Self::error_backoff();
        let mut in_flight = FuturesUnordered::new();
        // Kept across loop turns: cancelling a receive that SQS already answered would hide
        // its messages until their visibility timeout.
        let this = Arc::new(self);
        let settings = Arc::new(settings);
        let mut receiving: Option<Receiving> = None;
        loop {
            heartbeat.beat();
            if receiving.is_none() && in_flight.len() < MAX_IN_FLIGHT {
                let consumer = this.clone();
                receiving = Some(Box::pin(async move { consumer.receive().await }));
            }
            let received = tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = in_flight.next(), if !in_flight.is_empty() => continue,
                received = async { receiving.as_mut().expect("receiving").await }, if receiving.is_some() => received,
            };
            receiving = None;
            match received {
                Ok(messages) => {
                    backoff = Self::error_backoff();
                    for message in messages {
                        in_flight.push(tokio::spawn(
                            this.clone().process(message, settings.clone()),
                        ));
                    }
                }
                Err(error) => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                    warn!(queue = %this.queue_url, %error, retry_in_ms = delay.as_millis() as u64, "receiving from SQS failed");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        // Messages still in flight are not deleted: SQS delivers them again.
        for task in in_flight.iter() {
            task.abort();
        }
        heartbeat.stop();
        info!("consumer stopped");
    }

    fn error_backoff() -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build()
    }

    async fn receive(&self) -> Result<Vec<Message>, String> {
        let result = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .wait_time_seconds(WAIT_TIME_SECONDS)
            .max_number_of_messages(MAX_MESSAGES)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await;
        self.sqs_call("ReceiveMessage", result.is_ok());
        result
            .map(|output| output.messages.unwrap_or_default())
            .map_err(|e| DisplayErrorContext(e).to_string())
    }

    /// Counts an SQS call (AWS bills per call).
    fn sqs_call(&self, operation: &'static str, succeeded: bool) {
        self.metrics
            .aws_calls
            .record(PROVIDER_SQS, operation, succeeded);
    }

    /// The queue's visibility timeout and `maxReceiveCount`, read once at start.
    async fn settings(&self) -> QueueSettings {
        let fallback = QueueSettings {
            visibility: Duration::from_secs(30),
            max_receive: None,
        };
        let attributes = match self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .inspect(|_| self.sqs_call("GetQueueAttributes", true))
            .inspect_err(|_| self.sqs_call("GetQueueAttributes", false))
        {
            Ok(output) => output.attributes.unwrap_or_default(),
            Err(error) => {
                warn!(error = %DisplayErrorContext(error), "cannot read the queue's attributes; assuming a 30 s visibility timeout");
                return fallback;
            }
        };
        let visibility = attributes
            .get(&QueueAttributeName::VisibilityTimeout)
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(fallback.visibility);
        let max_receive = attributes
            .get(&QueueAttributeName::RedrivePolicy)
            .and_then(|policy| serde_json::from_str::<serde_json::Value>(policy).ok())
            .and_then(|policy| {
                let count = &policy["maxReceiveCount"];
                count.as_u64().or_else(|| count.as_str()?.parse().ok())
            })
            .map(|count| count as u32);
        QueueSettings {
            visibility,
            max_receive,
        }
    }

    /// The longest a healthy loop goes without a turn: one long poll, its retry backoff,
    /// and a margin.
    fn max_silence(&self, _settings: &QueueSettings) -> Duration {
        Duration::from_secs(WAIT_TIME_SECONDS as u64)
            + Duration::from_secs(30)
            + Duration::from_secs(60)
    }

    /// Handles one message, then deletes it or leaves it for a retry.
    async fn process(self: Arc<Self>, message: Message, settings: Arc<QueueSettings>) {
        let disposition = self.handle_extending(&message, &settings).await;
        match disposition {
            Disposition::Delete => self.delete(&message).await,
            Disposition::Keep => {
                let last_try = settings
                    .max_receive
                    .is_some_and(|max| receive_count(&message) >= max);
                if last_try {
                    self.metrics.message("dead_lettered");
                    warn!(
                        message_id = message.message_id.as_deref().unwrap_or("?"),
                        "message reached the queue's maxReceiveCount; SQS moves it to the dead-letter queue"
                    );
                }
                self.back_off(&message).await;
            }
        }
    }

    async fn delete(&self, message: &Message) {
        let Some(receipt) = message.receipt_handle.as_deref() else {
            return;
        };
        let result = self
            .sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await;
        self.sqs_call("DeleteMessage", result.is_ok());
        if let Err(error) = result {
            warn!(error = %DisplayErrorContext(error), "deleting a processed message failed; it will be processed again");
        }
    }

    /// A kept message comes back after an exponential delay in its receive count (2 s, 4 s,
    /// 8 s… up to 15 min) rather than the queue's fixed visibility timeout.
    async fn back_off(&self, message: &Message) {
        let Some(receipt) = message.receipt_handle.as_deref() else {
            return;
        };
        let result = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(retry_delay_seconds(receive_count(message)))
            .send()
            .await;
        self.sqs_call("ChangeMessageVisibility", result.is_ok());
        if let Err(error) = result {
            warn!(error = %DisplayErrorContext(error), "could not delay the retry of a kept message; it returns after the queue's visibility timeout");
        }
    }

    /// Handles a message, extending its visibility while the work outlasts a third of it, so
    /// that slow reconciles never let SQS hand the message to another consumer meanwhile.
    async fn handle_extending(&self, message: &Message, settings: &QueueSettings) -> Disposition {
        let work = self.handle(message);
        let heartbeat = async {
            // A third of the visibility timeout: two extensions may fail or run late before
            // SQS would hand the message to someone else.
            let third = (settings.visibility / 3).max(Duration::from_millis(300));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + third, third);
            loop {
                tick.tick().await;
                let Some(receipt) = message.receipt_handle.as_deref() else {
                    continue;
                };
                let result = self
                    .sqs
                    .change_message_visibility()
                    .queue_url(&self.queue_url)
                    .receipt_handle(receipt)
                    .visibility_timeout(settings.visibility.as_secs().max(1) as i32)
                    .send()
                    .await;
                self.sqs_call("ChangeMessageVisibility", result.is_ok());
                match result {
                    Ok(_) => {
                        debug!(message_id = ?message.message_id, "extended the message's visibility")
                    }
                    Err(error) => {
                        warn!(error = %DisplayErrorContext(error), "could not extend a message's visibility")
                    }
                }
            }
        };
        tokio::select! {
            disposition = work => disposition,
            never = heartbeat => never,
        }
    }

    async fn handle(&self, message: &Message) -> Disposition {
        let id = message.message_id.as_deref().unwrap_or("?");
        let body = message.body.as_deref().unwrap_or_default();
        self.metrics.message("received");
        let disposition = match event::parse(body) {
            Err(error) => {
                self.metrics.message("unreadable");
                warn!(message_id = id, %error, "cannot read message; leaving it for a retry or the DLQ");
                Disposition::Keep
            }
            Ok(Parsed::Irrelevant { reason }) => {
                debug!(message_id = id, %reason, "event changes nothing we serve");
                Disposition::Delete
            }
            Ok(Parsed::Change(change)) => {
                let event = change.kind.label().to_owned();
                self.metrics
                    .events
                    .get_or_create(&EventLabels { event })
                    .inc();
                let disposition = self.refresh(id, &change).await;
                if let Some(lag) = arrival_age(message) {
                    self.metrics.event_lag_seconds.observe(lag.as_secs_f64());
                }
                disposition
            }
        };
        self.metrics.message(match disposition {
            Disposition::Delete => "deleted",
            Disposition::Keep => "kept",
        });
        disposition
    }

    async fn refresh(&self, id: &str, change: &SecretChange) -> Disposition {
        let matches = matching(&self.caches, change);
        if matches.is_empty() {
            // The secret named is not logged: a message may carry anything there.
            debug!(
                message_id = id,
                event = change.kind.label(),
                "no ExternalSecret reads this secret"
            );
            return Disposition::Delete;
        }
        let outcome = match &self.refresher {
            Refresher::Reconcile(triggers) => {
                let objects = matches
                    .iter()
                    .map(|es| ObjectRef::from_obj(&**es))
                    .collect();
                triggers.refresh(objects, self.budget(matches.len())).await
            }
            Refresher::EsoForceSync(eso) => eso.refresh(matches).await,
        };
        if outcome.all_succeeded() {
            info!(
                message_id = id,
                event = change.kind.label(),
                refreshed = outcome.succeeded,
                "event applied"
            );
            Disposition::Delete
        } else {
            warn!(
                message_id = id,
                event = change.kind.label(),
                succeeded = outcome.succeeded,
                failed = outcome.failed,
                timed_out = outcome.timed_out,
                "not every refresh succeeded; leaving the message for a retry"
            );
            Disposition::Keep
        }
    }
}

impl Consumer {
    /// How long an event waits for its reconciles: `--event-timeout` for every round of
    /// `--concurrency` reconciles it needs, so that an event for a secret thousands of
    /// ExternalSecrets read can be acknowledged at all. At most 11 h: SQS keeps a message
    /// invisible for at most 12 h after it was received.
    fn budget(&self, matches: usize) -> Duration {
        event_budget(self.reconcile_timeout, self.concurrency, matches)
    }
}

fn event_budget(per_round: Duration, concurrency: usize, matches: usize) -> Duration {
    let rounds = matches.div_ceil(concurrency.max(1)).max(1) as u32;
    per_round
        .saturating_mul(rounds)
        .min(Duration::from_secs(11 * 3600))
}

fn receive_count(message: &Message) -> u32 {
    message
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// Seconds until a kept message is delivered again: 2^receives, at most 15 minutes.
fn retry_delay_seconds(receives: u32) -> i32 {
    2_i32.saturating_pow(receives.min(10)).min(900)
}

/// How long ago SQS received the message (its `SentTimestamp`, in epoch milliseconds).
fn arrival_age(message: &Message) -> Option<Duration> {
    let sent_ms: u64 = message
        .attributes
        .as_ref()?
        .get(&MessageSystemAttributeName::SentTimestamp)?
        .parse()
        .ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    now.checked_sub(Duration::from_millis(sent_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_fifteen_minutes() {
        let delays: Vec<_> = [1, 2, 3, 9, 10, 50]
            .into_iter()
            .map(retry_delay_seconds)
            .collect();
        assert_eq!(delays, [2, 4, 8, 512, 900, 900]);
    }

    #[test]
    fn an_event_for_many_external_secrets_gets_time_for_all_of_them() {
        let round = Duration::from_secs(30);
        assert_eq!(event_budget(round, 32, 0), round);
        assert_eq!(event_budget(round, 32, 1), round);
        assert_eq!(event_budget(round, 32, 32), round);
        assert_eq!(event_budget(round, 32, 5000), round * 157);
        assert_eq!(
            event_budget(round, 1, 1_000_000),
            Duration::from_secs(11 * 3600)
        );
    }

    #[test]
    fn receive_count_defaults_to_one() {
        let message = Message::builder().build();
        assert_eq!(receive_count(&message), 1);
        let message = Message::builder()
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .build();
        assert_eq!(receive_count(&message), 3);
    }
}
