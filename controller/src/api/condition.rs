//! The status condition shared by every kind of the API.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A status condition, shaped as ESO's (`type`, `status`, `reason`, `message`, `lastTransitionTime`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type; `Ready` is the one reported.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, in one CamelCase word (`SecretSynced`, `SecretSyncedError`, `Valid`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why, in words; never a secret value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

impl Condition {
    pub fn ready(ready: bool, reason: &str, message: impl Into<String>) -> Self {
        Condition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        }
    }

    /// Keeps the previous transition time when the status did not change, as Kubernetes expects.
    pub fn keep_transition_time(mut self, previous: &[Condition]) -> Self {
        if let Some(old) = previous
            .iter()
            .find(|c| c.type_ == self.type_ && c.status == self.status)
        {
            self.last_transition_time = old.last_transition_time.clone();
        }
        self
    }
}
