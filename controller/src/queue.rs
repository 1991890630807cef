//! The SQS consumer: long-polls the queue, turns each message into refreshes of the
//! ExternalSecrets that read the secret it names, and deletes a message only once all of
//! those refreshes succeeded. A message it cannot read, or whose refresh failed, stays in the
//! queue: SQS delivers it again after its visibility timeout, and to the DLQ after the queue's
//! `maxReceiveCount`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, QueueAttributeName,
};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures::future;
use kube::runtime::reflector::{ObjectRef, Store};
use secret_bridge::event::{self, Parsed, SecretChange};
use secret_bridge::secret_id::{self, SecretArn};
use tracing::{debug, info, warn};

use crate::api::ExternalSecret;
use crate::eso_trigger::EsoTrigger;
use crate::index::ExternalSecretIndex;
use crate::metrics::{EventLabels, Metrics};
use crate::stores::StoreCache;
use crate::trigger::Triggers;

const WAIT_TIME_SECONDS: i32 = 20;
const MAX_MESSAGES: i32 = 10;

pub struct Consumer {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub store: Store<ExternalSecret>,
    pub index: ExternalSecretIndex,
    pub stores: StoreCache,
    pub refresher: Refresher,
    /// How long to wait for the reconciles of one message before leaving it for a retry.
    pub reconcile_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

/// How an event's ExternalSecrets are refreshed.
pub enum Refresher {
    /// Reconcile them through our controller and wait for the result (the default mode).
    Reconcile(Arc<Triggers>),
    /// Set ESO's `force-sync` annotation on them (accelerator mode).
    EsoForceSync(Arc<EsoTrigger>),
}

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
        // Until the controller has listed every ExternalSecret, an event could match nothing
        // and be deleted by mistake.
        tokio::select! {
            _ = &mut shutdown => return,
            ready = self.store_ready() => if !ready {
                warn!("ExternalSecret store was dropped before it was ready; consumer not started");
                return;
            }
        }
        let settings = self.settings().await;
        info!(
            queue = %self.queue_url,
            visibility_timeout_s = settings.visibility.as_secs(),
            max_receive_count = ?settings.max_receive,
            "consuming events"
        );
        let mut backoff = self.error_backoff();
        loop {
            let received = tokio::select! {
                _ = &mut shutdown => break,
                received = self.receive() => received,
            };
            match received {
                Ok(messages) => {
                    backoff = self.error_backoff();
                    self.handle_batch(messages, &settings).await;
                }
                Err(error) => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                    warn!(queue = %self.queue_url, %error, retry_in_ms = delay.as_millis() as u64, "receiving from SQS failed");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        info!("consumer stopped");
    }

    /// Waits until the store has its initial list. The store's readiness future wakes only its
    /// latest poller (and the controller polls it too), so it is re-polled on a short tick.
    async fn store_ready(&self) -> bool {
        loop {
            match tokio::time::timeout(Duration::from_millis(100), self.store.wait_until_ready())
                .await
            {
                Ok(result) => return result.is_ok(),
                Err(_elapsed) => continue,
            }
        }
    }

    fn error_backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build()
    }

    async fn receive(&self) -> Result<Vec<Message>, String> {
        self.sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .wait_time_seconds(WAIT_TIME_SECONDS)
            .max_number_of_messages(MAX_MESSAGES)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map(|output| output.messages.unwrap_or_default())
            .map_err(|e| DisplayErrorContext(e).to_string())
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

    async fn handle_batch(&self, messages: Vec<Message>, settings: &QueueSettings) {
        let dispositions =
            future::join_all(messages.iter().map(|m| self.handle_extending(m, settings))).await;
        for (message, disposition) in messages.iter().zip(&dispositions) {
            let last_try = settings
                .max_receive
                .is_some_and(|max| receive_count(message) >= max);
            if *disposition == Disposition::Keep && last_try {
                self.metrics.message("dead_lettered");
                warn!(
                    message_id = message.message_id.as_deref().unwrap_or("?"),
                    "message reached the queue's maxReceiveCount; SQS moves it to the dead-letter queue"
                );
            }
        }
        let (done, kept): (Vec<_>, Vec<_>) = messages
            .iter()
            .zip(dispositions)
            .partition(|(_, d)| *d == Disposition::Delete);
        let done: Vec<_> = done.into_iter().map(|(m, _)| m).collect();
        let kept: Vec<_> = kept.into_iter().map(|(m, _)| m).collect();
        future::join(self.delete(&done), self.back_off(&kept)).await;
    }

    async fn delete(&self, messages: &[&Message]) {
        let entries: Vec<_> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, message)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(message.receipt_handle.clone()?)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        match self
            .sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => {
                for failed in output.failed {
                    warn!(code = %failed.code, message = ?failed.message, "deleting a processed message failed; it will be processed again");
                }
            }
            Err(error) => {
                warn!(error = %DisplayErrorContext(error), "deleting processed messages failed; they will be processed again")
            }
        }
    }

    /// Kept messages come back after an exponential delay in their receive count (2 s, 4 s,
    /// 8 s… up to 15 min) rather than the queue's fixed visibility timeout.
    async fn back_off(&self, messages: &[&Message]) {
        let entries: Vec<_> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, message)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(message.receipt_handle.clone()?)
                    .visibility_timeout(retry_delay_seconds(receive_count(message)))
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        if let Err(error) = self
            .sqs
            .change_message_visibility_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            warn!(error = %DisplayErrorContext(error), "could not delay the retry of kept messages; they return after the queue's visibility timeout");
        }
    }

    /// Handles a message, extending its visibility while the work outlasts half of it, so
    /// that slow reconciles never let SQS hand the message to another consumer meanwhile.
    async fn handle_extending(&self, message: &Message, settings: &QueueSettings) -> Disposition {
        let work = self.handle(message);
        let heartbeat = async {
            let half = (settings.visibility / 2).max(Duration::from_secs(1));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
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
                let event = change.kind.name().to_owned();
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
        let matches = self.matching(change);
        if matches.is_empty() {
            debug!(message_id = id, event = change.kind.name(), secret = ?change.secret_ids.first(), "no ExternalSecret reads this secret");
            return Disposition::Delete;
        }
        let outcome = match &self.refresher {
            Refresher::Reconcile(triggers) => {
                let objects = matches
                    .iter()
                    .map(|es| ObjectRef::from_obj(&**es))
                    .collect();
                triggers.refresh(objects, self.reconcile_timeout).await
            }
            Refresher::EsoForceSync(eso) => eso.refresh(matches).await,
        };
        if outcome.all_succeeded() {
            info!(
                message_id = id,
                event = change.kind.name(),
                refreshed = outcome.succeeded,
                "event applied"
            );
            Disposition::Delete
        } else {
            warn!(
                message_id = id,
                event = change.kind.name(),
                succeeded = outcome.succeeded,
                failed = outcome.failed,
                timed_out = outcome.timed_out,
                "not every refresh succeeded; leaving the message for a retry"
            );
            Disposition::Keep
        }
    }
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

impl Consumer {
    /// The ExternalSecrets that read the secret the event names, in the event's region, with
    /// their store's `prefix` applied.
    fn matching(&self, change: &SecretChange) -> Vec<Arc<ExternalSecret>> {
        let ids: Vec<&str> = change.secret_ids.iter().map(String::as_str).collect();
        let mut candidates: HashSet<_> =
            self.index.lookup(ids.iter().copied()).into_iter().collect();
        for prefix in self.stores.prefixes() {
            let stripped = ids
                .iter()
                .flat_map(|id| secret_id::candidate_names(id))
                .filter_map(|name| name.strip_prefix(prefix.as_str()));
            candidates.extend(self.index.lookup(stripped));
        }
        candidates
            .iter()
            .filter_map(|object| self.store.get(object))
            .filter(|es| {
                let aws = self.stores.aws_of(es);
                let prefix = aws
                    .as_ref()
                    .and_then(|a| a.prefix.clone())
                    .unwrap_or_default();
                let store_region = aws.map(|a| a.region);
                reads_in_region(es, &prefix, store_region.as_deref(), change)
            })
            .collect()
    }
}

/// Whether `es` (whose store has `prefix` and `store_region`, when known) reads the secret of
/// `change`: by a key it names, or by a `dataFrom.find` that may select the secret (its
/// `name.regexp` and `path`; tags are not in the event, and the store prefix does not apply to
/// a find, as in ESO). An unknown region matches: at worst a harmless refresh.
fn reads_in_region(
    es: &ExternalSecret,
    prefix: &str,
    store_region: Option<&str>,
    change: &SecretChange,
) -> bool {
    if let (Some(event_region), Some(store_region)) = (change.region.as_deref(), store_region)
        && event_region != store_region
    {
        return false;
    }
    let by_key = es.remote_keys().any(|key| {
        if let (Some(arn), Some(event_region)) = (SecretArn::parse(key), change.region.as_deref())
            && arn.region != event_region
        {
            return false;
        }
        let key = format!("{prefix}{key}");
        change
            .secret_ids
            .iter()
            .any(|id| secret_id::may_match(&key, id))
    });
    by_key
        || crate::index::find_rules(es).iter().any(|rule| {
            change
                .secret_ids
                .iter()
                .flat_map(|id| secret_id::candidate_names(id))
                .any(|name| rule.may_select(name))
        })
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

    fn change(ids: &[&str], region: Option<&str>) -> SecretChange {
        SecretChange {
            kind: secret_bridge::event::ChangeKind::LabelUpdated,
            secret_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            region: region.map(Into::into),
            account: None,
            version_id: None,
            time: None,
        }
    }

    fn es(key: &str) -> ExternalSecret {
        use crate::api::external_secret::{ExternalSecretDataFrom, RemoteRef};
        ExternalSecret::new(
            "es",
            crate::api::ExternalSecretSpec {
                data_from: vec![ExternalSecretDataFrom {
                    extract: Some(RemoteRef {
                        key: key.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
    }

    #[test]
    fn regions_and_prefixes_are_respected() {
        let event = change(&["team/db"], Some("eu-west-1"));
        assert!(reads_in_region(
            &es("team/db"),
            "",
            Some("eu-west-1"),
            &event
        ));
        assert!(
            !reads_in_region(&es("team/db"), "", Some("us-east-1"), &event),
            "another region"
        );
        assert!(
            reads_in_region(&es("team/db"), "", None, &event),
            "unknown store region: refresh"
        );
        assert!(
            reads_in_region(&es("db"), "team/", Some("eu-west-1"), &event),
            "store prefix"
        );
        assert!(!reads_in_region(&es("db"), "", Some("eu-west-1"), &event));
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:team/db-AbCdEf";
        assert!(
            !reads_in_region(&es(arn), "", None, &event),
            "an ARN names its region"
        );
    }

    #[test]
    fn finds_match_by_regexp_and_path_in_their_region() {
        use crate::api::external_secret::{ExternalSecretDataFrom, ExternalSecretFind, FindName};
        let finding = |regexp: Option<&str>, path: Option<&str>, tags: &[(&str, &str)]| {
            ExternalSecret::new(
                "es",
                crate::api::ExternalSecretSpec {
                    data_from: vec![ExternalSecretDataFrom {
                        find: Some(ExternalSecretFind {
                            name: regexp.map(|r| FindName {
                                regexp: Some(r.into()),
                            }),
                            path: path.map(Into::into),
                            tags: tags
                                .iter()
                                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                                .collect(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )
        };
        let arn = "arn:aws:secretsmanager:eu-west-1:1:secret:team/db-AbCdEf";
        let event = change(&[arn], Some("eu-west-1"));
        let region = Some("eu-west-1");
        assert!(reads_in_region(
            &finding(Some("^team/"), None, &[]),
            "",
            region,
            &event
        ));
        assert!(reads_in_region(
            &finding(Some("db$"), None, &[]),
            "",
            region,
            &event
        ));
        assert!(!reads_in_region(
            &finding(Some("^app/"), None, &[]),
            "",
            region,
            &event
        ));
        assert!(reads_in_region(
            &finding(None, Some("team/"), &[]),
            "",
            region,
            &event
        ));
        assert!(!reads_in_region(
            &finding(None, Some("app/"), &[]),
            "",
            region,
            &event
        ));
        let by_tags = finding(None, None, &[("env", "prod")]);
        assert!(
            reads_in_region(&by_tags, "", region, &event),
            "tags: every event"
        );
        assert!(
            !reads_in_region(&by_tags, "", Some("us-east-1"), &event),
            "but only in the store's region"
        );
        assert!(
            reads_in_region(
                &finding(Some("^team/"), None, &[]),
                "other/",
                region,
                &event
            ),
            "the store prefix does not apply to find"
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
