//! A secret's tags, for routes that match by tag.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use secret_bridge::normalized::NormalizedMessage;
use secret_bridge::secret_id::SecretArn;

use crate::aws::AwsError;

/// Which secret to describe, and in which region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretRef<'a> {
    /// The full ARN when the event gave one, else the name (or partial ARN).
    pub id: &'a str,
    /// The secret's region when known; `None` means the function's own.
    pub region: Option<&'a str>,
}

impl<'a> SecretRef<'a> {
    pub fn of(message: &'a NormalizedMessage) -> SecretRef<'a> {
        let id = message.arn.as_deref().unwrap_or(&message.name);
        let region = SecretArn::parse(id)
            .map(|arn| arn.region)
            .filter(|region| !region.is_empty())
            .or(message.region.as_deref());
        SecretRef { id, region }
    }
}

/// What Secrets Manager says about a secret's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretTags {
    Known(BTreeMap<String, String>),
    /// The secret does not exist (any more): deleted without a recovery window.
    Gone,
}

/// Reads a secret's tags (`DescribeSecret`).
pub trait TagLookup: Send + Sync {
    fn tags(
        &self,
        secret: SecretRef<'_>,
    ) -> impl Future<Output = Result<SecretTags, AwsError>> + Send;
}

/// Remembers the tags read during one invocation, so a batch with several events for one secret
/// describes it once. Nothing outlives the invocation: a `TagResource` event must see new tags.
pub struct InvocationTags<'a, T> {
    lookup: &'a T,
    seen: Mutex<HashMap<(Option<String>, String), SecretTags>>,
}

impl<'a, T: TagLookup> InvocationTags<'a, T> {
    pub fn new(lookup: &'a T) -> Self {
        InvocationTags {
            lookup,
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: TagLookup> TagLookup for InvocationTags<'_, T> {
    async fn tags(&self, secret: SecretRef<'_>) -> Result<SecretTags, AwsError> {
        let key = (secret.region.map(str::to_owned), secret.id.to_owned());
        if let Some(tags) = self.seen.lock().expect("tag cache lock").get(&key) {
            return Ok(tags.clone());
        }
        let tags = self.lookup.tags(secret).await?;
        self.seen
            .lock()
            .expect("tag cache lock")
            .insert(key, tags.clone());
        Ok(tags)
    }
}
