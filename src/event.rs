//! What an SQS message body says about a Secrets Manager change.
//!
//! Events are hints: they say *which* secret may have changed, never *what* its value is. The
//! parser therefore keeps only identifiers (name, ARN, version id, region, account, time) and
//! never copies anything else from the message.
//!
//! Shapes understood (see `tests/fixtures/events/`):
//! - the native EventBridge event `Secret Label Updated` (acted on for `AWSCURRENT` only);
//! - `AWS API Call via CloudTrail` for the Secrets Manager calls that change a secret;
//! - `AWS Service Event via CloudTrail` (`RotationSucceeded`);
//! - any of these wrapped in an SNS notification.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A Secrets Manager change that may affect ExternalSecrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretChange {
    pub kind: ChangeKind,
    /// Every identifier the event gives for the secret: names, full or partial ARNs.
    pub secret_ids: Vec<String>,
    pub region: Option<String>,
    pub account: Option<String>,
    /// The version the event is about, when it names one.
    pub version_id: Option<String>,
    pub time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// The native event: a staging label (here always `AWSCURRENT`) moved.
    LabelUpdated,
    /// A CloudTrail-recorded API call, e.g. `PutSecretValue`.
    ApiCall(String),
    /// A CloudTrail-recorded service event, e.g. `RotationSucceeded`.
    ServiceEvent(String),
}

impl ChangeKind {
    /// A short, bounded name for logs and metrics.
    pub fn name(&self) -> &str {
        match self {
            ChangeKind::LabelUpdated => "SecretLabelUpdated",
            ChangeKind::ApiCall(name) | ChangeKind::ServiceEvent(name) => name,
        }
    }

    /// [`ChangeKind::name`] for a metric label: one of a fixed set, whatever a message says
    /// (a forged normalized message may carry any kind), so label cardinality stays bounded.
    pub fn label(&self) -> &'static str {
        let name = self.name();
        if name == "SecretLabelUpdated" {
            return "SecretLabelUpdated";
        }
        API_CALLS_THAT_CHANGE
            .iter()
            .chain(SERVICE_EVENTS_THAT_CHANGE)
            .find(|known| **known == name)
            .copied()
            .unwrap_or("Other")
    }
}

/// The outcome of reading a message that is a well-formed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A change that may affect ExternalSecrets.
    Change(SecretChange),
    /// A well-formed event that changes no value we serve (e.g. a label other than
    /// `AWSCURRENT`, a failed API call): safe to acknowledge.
    Irrelevant { reason: String },
}

/// Why a message is not an event we understand. Never contains anything of the message
/// itself (a message may carry anything, and these errors are logged): only the shape that was
/// expected, and where.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("message body is not JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("message is not an event secret-bridge knows: {0}")]
    UnknownShape(&'static str),
    #[error("secret-bridge message version {found:?}; this build reads version {reads}")]
    Version { found: Option<u64>, reads: u32 },
    #[error("event {detail_type:?} is missing or has a wrong `{field}`: expected {expected}")]
    InvalidField {
        detail_type: &'static str,
        field: &'static str,
        expected: &'static str,
    },
}

impl EventError {
    fn not_json(error: serde_json::Error) -> Self {
        EventError::NotJson {
            line: error.line(),
            column: error.column(),
        }
    }
}

/// The detail-types read, as static strings (a message's own string is never kept).
const DETAIL_TYPES: &[&str] = &[
    "Secret Label Updated",
    "AWS API Call via CloudTrail",
    "AWS Service Event via CloudTrail",
];

const API_CALLS_THAT_CHANGE: &[&str] = &[
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "RotateSecret",
    "CancelRotateSecret",
    "DeleteSecret",
    "RestoreSecret",
    "CreateSecret",
    "TagResource",
    "UntagResource",
    "ReplicateSecretToRegions",
];

const SERVICE_EVENTS_THAT_CHANGE: &[&str] = &["RotationSucceeded"];

/// Reads one SQS message body.
pub fn parse(body: &str) -> Result<Parsed, EventError> {
    let value: Value = serde_json::from_str(body).map_err(EventError::not_json)?;
    parse_value(&value, true)
}

fn parse_value(value: &Value, allow_sns: bool) -> Result<Parsed, EventError> {
    let Some(object) = value.as_object() else {
        return Err(EventError::UnknownShape("the JSON is not an object"));
    };
    if object.contains_key("secretBridge") {
        return parse_normalized(value);
    }
    if allow_sns && object.get("Type").and_then(Value::as_str) == Some("Notification") {
        let inner =
            object
                .get("Message")
                .and_then(Value::as_str)
                .ok_or(EventError::UnknownShape(
                    "SNS notification without a string `Message`",
                ))?;
        let inner: Value = serde_json::from_str(inner).map_err(EventError::not_json)?;
        return parse_value(&inner, false);
    }
    let Some(detail_type) = object.get("detail-type").and_then(Value::as_str) else {
        return Err(EventError::UnknownShape(
            "no `detail-type`: not an EventBridge event",
        ));
    };
    if object.get("source").and_then(Value::as_str) != Some("aws.secretsmanager") {
        return Err(EventError::UnknownShape(
            "an event from another source than aws.secretsmanager",
        ));
    }
    let Some(detail_type) = DETAIL_TYPES
        .iter()
        .copied()
        .find(|known| *known == detail_type)
    else {
        return Err(EventError::UnknownShape(
            "a Secrets Manager detail-type other than Secret Label Updated or a CloudTrail event",
        ));
    };
    let envelope = Envelope::read(object, detail_type)?;
    match detail_type {
        "Secret Label Updated" => envelope.label_updated(),
        "AWS API Call via CloudTrail" => {
            envelope.cloudtrail(ChangeKind::ApiCall, API_CALLS_THAT_CHANGE)
        }
        _ => envelope.cloudtrail(ChangeKind::ServiceEvent, SERVICE_EVENTS_THAT_CHANGE),
    }
}

fn parse_normalized(value: &Value) -> Result<Parsed, EventError> {
    let version = value.get("secretBridge").and_then(Value::as_u64);
    if version != Some(u64::from(crate::normalized::VERSION)) {
        return Err(EventError::Version {
            found: version,
            reads: crate::normalized::VERSION,
        });
    }
    // serde's error would quote the offending value: only say that the shape is wrong.
    let message: crate::normalized::NormalizedMessage = serde_json::from_value(value.clone())
        .map_err(|_| {
            EventError::UnknownShape("a malformed secret-bridge message (fields or their types)")
        })?;
    if message.name.is_empty() {
        return Err(EventError::InvalidField {
            detail_type: "secret-bridge message",
            field: "name",
            expected: "a non-empty string",
        });
    }
    Ok(Parsed::Change(message.into_change()))
}

struct Envelope<'a> {
    detail_type: &'static str,
    detail: &'a serde_json::Map<String, Value>,
    resources: Vec<String>,
    region: Option<String>,
    account: Option<String>,
    time: Option<DateTime<Utc>>,
}

impl<'a> Envelope<'a> {
    fn read(
        object: &'a serde_json::Map<String, Value>,
        detail_type: &'static str,
    ) -> Result<Self, EventError> {
        let invalid = |field, expected| EventError::InvalidField {
            detail_type,
            field,
            expected,
        };
        let detail = object
            .get("detail")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("detail", "an object"))?;
        let resources = match object.get("resources") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid("resources", "an array of strings"))?,
            Some(_) => return Err(invalid("resources", "an array of strings")),
        };
        let time = match object.get("time") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|_| invalid("time", "an RFC 3339 timestamp"))?
                    .with_timezone(&Utc),
            ),
            Some(_) => return Err(invalid("time", "an RFC 3339 timestamp")),
        };
        Ok(Envelope {
            detail_type,
            detail,
            resources,
            region: optional_string(object, "region"),
            account: optional_string(object, "account"),
            time,
        })
    }

    fn invalid(&self, field: &'static str, expected: &'static str) -> EventError {
        EventError::InvalidField {
            detail_type: self.detail_type,
            field,
            expected,
        }
    }

    fn label_updated(self) -> Result<Parsed, EventError> {
        let name = non_empty(self.detail, "name")
            .ok_or_else(|| self.invalid("detail.name", "a non-empty string"))?;
        let label = non_empty(self.detail, "labelUpdated")
            .ok_or_else(|| self.invalid("detail.labelUpdated", "a non-empty string"))?;
        if label != "AWSCURRENT" {
            return Ok(Parsed::Irrelevant {
                reason:
                    "a label other than AWSCURRENT moved; only AWSCURRENT changes served values"
                        .into(),
            });
        }
        let mut secret_ids = vec![name.to_owned()];
        secret_ids.extend(self.resources.iter().cloned());
        let version_id = optional_string(self.detail, "versionId");
        Ok(self.change(ChangeKind::LabelUpdated, secret_ids, version_id))
    }

    fn cloudtrail(
        self,
        kind: fn(String) -> ChangeKind,
        names_that_change: &[&str],
    ) -> Result<Parsed, EventError> {
        let event_name = non_empty(self.detail, "eventName")
            .ok_or_else(|| self.invalid("detail.eventName", "a non-empty string"))?;
        if non_empty(self.detail, "errorCode").is_some() {
            return Ok(Parsed::Irrelevant {
                reason: "a failed API call".into(),
            });
        }
        if !names_that_change.contains(&event_name) {
            return Ok(Parsed::Irrelevant {
                reason: "an API call that changes no secret's value".into(),
            });
        }
        let request = self
            .detail
            .get("requestParameters")
            .and_then(Value::as_object);
        let response = self
            .detail
            .get("responseElements")
            .and_then(Value::as_object);
        let additional = self
            .detail
            .get("additionalEventData")
            .and_then(Value::as_object);
        let mut secret_ids: Vec<String> = [
            request.and_then(|r| non_empty(r, "secretId")),
            request.and_then(|r| non_empty(r, "name")),
            response.and_then(|r| non_empty(r, "arn")),
            response.and_then(|r| non_empty(r, "aRN")),
            response.and_then(|r| non_empty(r, "name")),
            additional.and_then(|a| non_empty(a, "SecretId")),
        ]
        .into_iter()
        .flatten()
        .map(str::to_owned)
        .chain(self.resources.iter().cloned())
        .collect();
        secret_ids.dedup();
        if secret_ids.is_empty() {
            return Err(self.invalid(
                "detail.requestParameters.secretId",
                "a secret name or ARN (or responseElements.arn / additionalEventData.SecretId)",
            ));
        }
        let version_id = response
            .and_then(|r| optional_string(r, "versionId"))
            .or_else(|| request.and_then(|r| optional_string(r, "moveToVersionId")));
        let region = self
            .region
            .clone()
            .or_else(|| optional_string(self.detail, "awsRegion"));
        let mut parsed = self.change(kind(event_name.to_owned()), secret_ids, version_id);
        if let Parsed::Change(change) = &mut parsed {
            change.region = region;
        }
        Ok(parsed)
    }

    fn change(
        self,
        kind: ChangeKind,
        secret_ids: Vec<String>,
        version_id: Option<String>,
    ) -> Parsed {
        Parsed::Change(SecretChange {
            kind,
            secret_ids,
            region: self.region,
            account: self.account,
            version_id,
            time: self.time,
        })
    }
}

fn non_empty<'v>(object: &'v serde_json::Map<String, Value>, key: &str) -> Option<&'v str> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn optional_string(object: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    non_empty(object, key).map(str::to_owned)
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
