//! The compact, versioned message the fan-out Lambda sends to cluster queues: one shape for
//! every AWS event, carrying only identifiers (never a value).
//!
//! ```json
//! {"secretBridge":1,"kind":"SecretLabelUpdated","account":"123456789012","region":"us-east-1",
//!  "name":"app/db","arn":"arn:aws:secretsmanager:…:secret:app/db-AbCdEf",
//!  "versionId":"…","label":"AWSCURRENT","eventTime":"2024-02-06T16:43:48Z"}
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{ChangeKind, SecretChange};
use crate::secret_id::SecretArn;

/// The version of the normalized format this crate writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NormalizedMessage {
    /// Format version; a reader refuses versions it does not know.
    pub secret_bridge: u32,
    /// `SecretLabelUpdated`, or the CloudTrail event name (`PutSecretValue`, `RotationSucceeded`…).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The secret's name (or, when only a partial ARN was known, that reference).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<DateTime<Utc>>,
}

impl NormalizedMessage {
    /// Normalizes a parsed change. Returns `None` when it names no secret (cannot happen for a
    /// change produced by [`crate::event::parse`]).
    pub fn from_change(change: &SecretChange) -> Option<Self> {
        let full_arn = change
            .secret_ids
            .iter()
            .find(|id| {
                SecretArn::parse(id)
                    .and_then(|a| a.name_without_suffix())
                    .is_some()
            })
            .cloned();
        let name = change
            .secret_ids
            .iter()
            .find(|id| SecretArn::parse(id).is_none())
            .cloned()
            .or_else(|| {
                let arn = SecretArn::parse(full_arn.as_deref()?)?;
                arn.name_without_suffix().map(str::to_owned)
            })
            .or_else(|| change.secret_ids.first().cloned())?;
        let arn = full_arn.as_deref().and_then(SecretArn::parse);
        Some(NormalizedMessage {
            secret_bridge: VERSION,
            kind: change.kind.name().to_owned(),
            account: change
                .account
                .clone()
                .or_else(|| arn.as_ref().map(|a| a.account.to_owned())),
            region: change
                .region
                .clone()
                .or_else(|| arn.as_ref().map(|a| a.region.to_owned())),
            name,
            arn: full_arn.clone(),
            version_id: change.version_id.clone(),
            label: matches!(change.kind, ChangeKind::LabelUpdated).then(|| "AWSCURRENT".to_owned()),
            event_time: change.time,
        })
    }

    /// Back to a change, as the controller consumes it.
    pub fn into_change(self) -> SecretChange {
        let kind = match self.kind.as_str() {
            "SecretLabelUpdated" => ChangeKind::LabelUpdated,
            name if name.starts_with("Rotation") => ChangeKind::ServiceEvent(self.kind),
            _ => ChangeKind::ApiCall(self.kind),
        };
        SecretChange {
            kind,
            secret_ids: std::iter::once(self.name).chain(self.arn).collect(),
            region: self.region,
            account: self.account,
            version_id: self.version_id,
            time: self.event_time,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a normalized message serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Parsed, parse};

    #[test]
    fn round_trips_through_the_parser() {
        let body = include_str!("../tests/fixtures/events/label-updated-current.json");
        let Parsed::Change(change) = parse(body).unwrap() else {
            panic!("a change")
        };
        let message = NormalizedMessage::from_change(&change).unwrap();
        assert_eq!(message.name, "mySecret");
        assert_eq!(
            message.arn.as_deref(),
            Some("arn:aws:secretsmanager:us-west-2:012345678901:secret:mySecret-a1b2c3")
        );
        assert_eq!(message.label.as_deref(), Some("AWSCURRENT"));
        let Parsed::Change(again) = parse(&message.to_json()).unwrap() else {
            panic!("a change")
        };
        assert_eq!(again, change);
    }

    #[test]
    fn a_change_known_only_by_arn_gets_its_name() {
        let body = include_str!("../tests/fixtures/events/service-event-rotation-succeeded.json");
        let Parsed::Change(change) = parse(body).unwrap() else {
            panic!("a change")
        };
        let message = NormalizedMessage::from_change(&change).unwrap();
        assert_eq!(message.name, "mySecret");
        assert_eq!(message.kind, "RotationSucceeded");
        assert_eq!(message.region.as_deref(), Some("us-west-2"));
    }
}
