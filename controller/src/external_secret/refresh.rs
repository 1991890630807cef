//! When an ExternalSecret is read from AWS again: ESO's `refreshPolicy` rules, plus events.
//!
//! ESO skips a refresh when the policy does not ask for one *and* the target Secret is still
//! valid (it exists, carries the managed label, and its data matches the `data-hash`
//! annotation we wrote). An AWS event for a secret the ExternalSecret reads counts as "due"
//! for the `Periodic` policy only: `OnChange` and `CreatedOnce` promise not to re-read AWS.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::Error;
use crate::api::external_secret::ExternalSecretStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshPolicy {
    Periodic,
    OnChange,
    CreatedOnce,
}

impl RefreshPolicy {
    pub fn parse(policy: Option<&str>) -> Result<Self, Error> {
        match policy {
            None | Some("") | Some("Periodic") => Ok(RefreshPolicy::Periodic),
            Some("OnChange") => Ok(RefreshPolicy::OnChange),
            Some("CreatedOnce") => Ok(RefreshPolicy::CreatedOnce),
            Some(other) => Err(Error::Misconfigured(format!(
                "spec.refreshPolicy {other:?} is not one of Periodic, OnChange, CreatedOnce"
            ))),
        }
    }
}

/// What the reconcile knows when deciding.
pub struct Inputs<'a> {
    pub policy: RefreshPolicy,
    /// `None`: `refreshInterval: 0`.
    pub interval: Option<Duration>,
    pub status: Option<&'a ExternalSecretStatus>,
    /// `<generation>-<hash of labels and annotations>` now.
    pub current_version: &'a str,
    /// An AWS event asked for this reconcile.
    pub event: bool,
    pub now: Timestamp,
}

/// `None`: refresh now. `Some(after)`: skip, and look again after `after` (`None` = only on
/// a change), provided the target Secret is valid.
pub fn skip(inputs: &Inputs<'_>) -> Option<Option<Duration>> {
    let synced = inputs
        .status
        .and_then(|s| s.synced_resource_version.as_deref())
        .filter(|v| !v.is_empty());
    let refreshed = inputs
        .status
        .and_then(|s| s.refresh_time.as_ref())
        .map(|t| t.0);
    let (Some(synced), Some(refreshed)) = (synced, refreshed) else {
        return None;
    };
    match inputs.policy {
        RefreshPolicy::CreatedOnce => Some(None),
        RefreshPolicy::OnChange => (synced == inputs.current_version).then_some(None),
        RefreshPolicy::Periodic => {
            // A failed sync (not Ready) is retried by reading AWS again, never skipped: an
            // event whose refresh failed is only remembered this way once its message is gone
            // (deleted as final, or in the dead-letter queue), and across restarts.
            if inputs.event || !is_ready(inputs.status) {
                return None;
            }
            // ESO: with `refreshInterval: 0`, an ExternalSecret synced once is not synced
            // again, even when its spec changes.
            let Some(interval) = inputs.interval else {
                return Some(None);
            };
            if synced != inputs.current_version || refreshed > inputs.now {
                return None;
            }
            let elapsed = inputs.now.duration_since(refreshed).unsigned_abs();
            (elapsed < interval).then(|| Some(interval - elapsed))
        }
    }
}

/// Whether the last sync succeeded (`Ready` is `True`).
pub fn is_ready(status: Option<&ExternalSecretStatus>) -> bool {
    status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn status(version: &str, refreshed: Timestamp) -> ExternalSecretStatus {
        ExternalSecretStatus {
            synced_resource_version: Some(version.into()),
            refresh_time: Some(Time(refreshed)),
            conditions: vec![crate::api::Condition::ready(
                true,
                "SecretSynced",
                "secret synced",
            )],
            ..Default::default()
        }
    }

    #[test]
    fn a_failed_sync_is_retried_by_reading_aws_until_it_succeeds() {
        let now = Timestamp::now();
        let mut failed = status("2-abc", now - Duration::from_secs(5));
        failed.conditions = vec![crate::api::Condition::ready(
            false,
            "SecretSyncedError",
            "ThrottlingException",
        )];
        // Not due by its interval, no event now: read AWS anyway, the sync failed.
        assert_eq!(
            skip(&inputs(
                RefreshPolicy::Periodic,
                Some(3600),
                Some(&failed),
                false,
                now
            )),
            None
        );
        let ready = status("2-abc", now - Duration::from_secs(5));
        assert!(
            skip(&inputs(
                RefreshPolicy::Periodic,
                Some(3600),
                Some(&ready),
                false,
                now
            ))
            .is_some()
        );
    }

    fn inputs<'a>(
        policy: RefreshPolicy,
        interval: Option<u64>,
        status: Option<&'a ExternalSecretStatus>,
        event: bool,
        now: Timestamp,
    ) -> Inputs<'a> {
        Inputs {
            policy,
            interval: interval.map(Duration::from_secs),
            status,
            current_version: "2-abc",
            event,
            now,
        }
    }

    #[test]
    fn never_synced_always_refreshes() {
        let now = Timestamp::now();
        for policy in [
            RefreshPolicy::Periodic,
            RefreshPolicy::OnChange,
            RefreshPolicy::CreatedOnce,
        ] {
            assert_eq!(skip(&inputs(policy, Some(60), None, false, now)), None);
        }
    }

    #[test]
    fn periodic_waits_for_its_interval_unless_an_event_or_a_change_comes() {
        let now = Timestamp::now();
        let earlier = now - Duration::from_secs(20);
        let fresh = status("2-abc", earlier);
        let decision = skip(&inputs(
            RefreshPolicy::Periodic,
            Some(60),
            Some(&fresh),
            false,
            now,
        ));
        assert_eq!(decision, Some(Some(Duration::from_secs(40))));
        assert_eq!(
            skip(&inputs(
                RefreshPolicy::Periodic,
                Some(60),
                Some(&fresh),
                true,
                now
            )),
            None
        );
        let changed = status("1-abc", earlier);
        assert_eq!(
            skip(&inputs(
                RefreshPolicy::Periodic,
                Some(60),
                Some(&changed),
                false,
                now
            )),
            None
        );
        let due = status("2-abc", now - Duration::from_secs(61));
        assert_eq!(
            skip(&inputs(
                RefreshPolicy::Periodic,
                Some(60),
                Some(&due),
                false,
                now
            )),
            None
        );
    }

    #[test]
    fn zero_interval_syncs_once_even_when_the_spec_changes() {
        let now = Timestamp::now();
        let changed = status("1-abc", now);
        assert_eq!(
            skip(&inputs(
                RefreshPolicy::Periodic,
                None,
                Some(&changed),
                false,
                now
            )),
            Some(None)
        );
    }

    #[test]
    fn on_change_and_created_once_ignore_events() {
        let now = Timestamp::now();
        let same = status("2-abc", now - Duration::from_secs(7200));
        assert_eq!(
            skip(&inputs(
                RefreshPolicy::OnChange,
                Some(60),
                Some(&same),
                true,
                now
            )),
            Some(None)
        );
        let changed = status("1-abc", now);
        assert_eq!(
            skip(&inputs(
                RefreshPolicy::OnChange,
                Some(60),
                Some(&changed),
                true,
                now
            )),
            None
        );
        assert_eq!(
            skip(&inputs(
                RefreshPolicy::CreatedOnce,
                Some(60),
                Some(&changed),
                true,
                now
            )),
            Some(None)
        );
    }

    #[test]
    fn unknown_policies_are_refused() {
        assert!(RefreshPolicy::parse(Some("Sometimes")).is_err());
        assert_eq!(RefreshPolicy::parse(None).unwrap(), RefreshPolicy::Periodic);
    }
}
