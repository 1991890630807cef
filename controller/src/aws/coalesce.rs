//! Reads of `AWSCURRENT` shared across reconciles: the cost promise of the brief (a resync of
//! N unchanged secrets in N/20 calls, one read per change however many ExternalSecrets read
//! the secret).
//!
//! Every reconcile asks one [`Coalescer`] per region and credentials (one per AWS client, see
//! [`crate::aws::credentials`]). A read that finds no call under way goes out at once (an
//! event pays no added latency); reads that arrive while calls are under way wait and go out
//! together in the next BatchGetSecretValue of up to 20 distinct secrets. A read that started
//! after the asker's `not_before` (the event's arrival, or the reconcile's start) answers
//! every asker of that secret for a short while, so a rotation read by a thousand
//! ExternalSecrets is read once. Each secret keeps its own error; when the credentials may not
//! call BatchGetSecretValue, reads fall back to GetSecretValue one by one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future;
use secret_bridge::secret_id;
use tokio::sync::oneshot;

use crate::aws::{
    AwsError, BATCH_SIZE, BatchPage, BatchSelection, ListPage, SecretFilter, SecretMetadata,
    SecretValue, SecretsSource, VersionSelector,
};

/// Calls under way at once per coalescer; further reads wait and are batched.
const CALLS_AT_ONCE: usize = 4;
/// How long a read answers later askers whose `not_before` it satisfies. Short: values stay
/// in memory only this long.
const SHARED_FOR: Duration = Duration::from_secs(10);

type Answer = Result<SecretValue, AwsError>;

pub struct Coalescer<S> {
    source: S,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Reads waiting for a call, by secret id.
    waiting: HashMap<String, Vec<oneshot::Sender<Answer>>>,
    /// Ids in the order they started waiting.
    order: Vec<String>,
    calls: usize,
    /// The credentials may not call BatchGetSecretValue: read one by one.
    batch_refused: bool,
    /// Recent reads: when each started, and its answer.
    recent: HashMap<String, (Instant, Answer)>,
}

impl<S: SecretsSource + 'static> Coalescer<S> {
    pub fn new(source: S) -> Arc<Self> {
        Arc::new(Coalescer {
            source,
            state: Mutex::default(),
        })
    }

    /// The `AWSCURRENT` value of `id`, from a read that started at or after `not_before`.
    pub async fn current(self: &Arc<Self>, id: &str, not_before: Instant) -> Answer {
        let receiver = {
            let mut state = self.state.lock().expect("coalescer lock");
            if let Some((started, answer)) = state.recent.get(id)
                && *started >= not_before
            {
                return answer.clone();
            }
            let (sender, receiver) = oneshot::channel();
            let waiting = state.waiting.entry(id.to_owned()).or_default();
            let first = waiting.is_empty();
            waiting.push(sender);
            if first {
                state.order.push(id.to_owned());
            }
            if state.calls < CALLS_AT_ONCE {
                state.calls += 1;
                tokio::spawn(self.clone().drain());
            }
            receiver
        };
        receiver.await.unwrap_or_else(|_| {
            Err(AwsError {
                operation: "GetSecretValue",
                secret: id.to_owned(),
                code: "RequestFailed".into(),
                message: "the read was abandoned (shutting down)".into(),
            })
        })
    }

    /// Makes calls while reads are waiting, up to 20 secrets each.
    async fn drain(self: Arc<Self>) {
        loop {
            let (ids, one_by_one) = {
                let mut state = self.state.lock().expect("coalescer lock");
                if state.order.is_empty() {
                    state.calls -= 1;
                    return;
                }
                let take = state.order.len().min(BATCH_SIZE);
                let ids: Vec<String> = state.order.drain(..take).collect();
                (ids, state.batch_refused)
            };
            let started = Instant::now();
            let answers = if ids.len() == 1 || one_by_one {
                self.one_by_one(&ids).await
            } else {
                self.batch(&ids).await
            };
            let mut state = self.state.lock().expect("coalescer lock");
            state.recent.retain(|_, (at, _)| at.elapsed() < SHARED_FOR);
            for (id, answer) in ids.into_iter().zip(answers) {
                for waiter in state.waiting.remove(&id).unwrap_or_default() {
                    let _ = waiter.send(answer.clone());
                }
                state.recent.insert(id, (started, answer));
            }
        }
    }

    async fn one_by_one(&self, ids: &[String]) -> Vec<Answer> {
        let current = VersionSelector::current();
        future::join_all(
            ids.iter()
                .map(|id| self.source.get_secret_value(id, &current)),
        )
        .await
    }

    /// One BatchGetSecretValue for `ids`; a secret the batch did not answer for (or failed
    /// for) is read on its own, and a refused batch (no permission, say) switches to one by
    /// one for good.
    async fn batch(&self, ids: &[String]) -> Vec<Answer> {
        let page = match self
            .source
            .batch_get_secret_value(BatchSelection::Ids(ids), None)
            .await
        {
            Ok(page) => page,
            Err(error) => {
                if error.code == "AccessDeniedException" {
                    tracing::info!(%error, "BatchGetSecretValue is not allowed; reading secrets one by one");
                    self.state.lock().expect("coalescer lock").batch_refused = true;
                } else {
                    tracing::debug!(%error, "BatchGetSecretValue failed; reading these secrets one by one");
                }
                return self.one_by_one(ids).await;
            }
        };
        // A secret the batch failed for is read again on its own: its error then says what
        // GetSecretValue says (ESO's wording, which status and conformance rely on). Errors
        // are rare; the cost of the extra read is too.
        let mut values = page.values;
        let mut answers: Vec<Option<Answer>> = ids
            .iter()
            .map(|id| {
                values
                    .iter()
                    .position(|v| secret_id::identifies(id, &v.name, &v.arn))
                    .map(|at| Ok(values.swap_remove(at)))
            })
            .collect();
        let unanswered: Vec<String> = ids
            .iter()
            .zip(&answers)
            .filter(|(_, answer)| answer.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let mut retried = self.one_by_one(&unanswered).await.into_iter();
        answers
            .iter_mut()
            .map(|answer| match answer.take() {
                Some(answer) => answer,
                None => retried.next().expect("one retry per unanswered id"),
            })
            .collect()
    }
}

/// A [`SecretsSource`] for one reconcile: `AWSCURRENT` reads go through the coalescer and
/// must have started at or after `not_before`; everything else goes straight to AWS.
pub struct CoalescingSource<S> {
    pub coalescer: Arc<Coalescer<S>>,
    pub not_before: Instant,
}

impl<S: SecretsSource + 'static> SecretsSource for CoalescingSource<S> {
    async fn get_secret_value(&self, key: &str, version: &VersionSelector) -> Answer {
        if *version == VersionSelector::current() {
            self.coalescer.current(key, self.not_before).await
        } else {
            self.coalescer.source.get_secret_value(key, version).await
        }
    }

    async fn describe_secret(&self, key: &str) -> Result<SecretMetadata, AwsError> {
        self.coalescer.source.describe_secret(key).await
    }

    async fn batch_get_secret_value(
        &self,
        selection: BatchSelection<'_>,
        next_token: Option<&str>,
    ) -> Result<BatchPage, AwsError> {
        match selection {
            // A sync's own batch joins the others': each id is one coalesced read.
            BatchSelection::Ids(ids) if next_token.is_none() => {
                let answers = future::join_all(
                    ids.iter()
                        .map(|id| self.coalescer.current(id, self.not_before)),
                )
                .await;
                let mut page = BatchPage::default();
                for answer in answers {
                    match answer {
                        Ok(value) => page.values.push(value),
                        Err(error) => page.errors.push(error),
                    }
                }
                Ok(page)
            }
            selection => {
                self.coalescer
                    .source
                    .batch_get_secret_value(selection, next_token)
                    .await
            }
        }
    }

    async fn list_secrets(
        &self,
        filters: &[SecretFilter],
        next_token: Option<&str>,
    ) -> Result<ListPage, AwsError> {
        self.coalescer
            .source
            .list_secrets(filters, next_token)
            .await
    }
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;
