//! What a candidate decides from the Lease it sees, without I/O: whether the Lease is free,
//! and the spec of each write (take, renew, release).
//!
//! Expiry is measured on the candidate's own clock from the moment it saw the Lease change
//! (as client-go does), never from the holder's `renewTime`: the clocks of two nodes need not
//! agree, only run at about the same rate.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;

/// The last version of the Lease a candidate saw, and when it first saw it.
#[derive(Debug, Default)]
pub struct Observation {
    resource_version: Option<String>,
    seen_at: Option<Instant>,
}

impl Observation {
    /// Records what the candidate sees now; the clock restarts only when the Lease changed.
    pub fn see(&mut self, lease: Option<&Lease>, now: Instant) {
        let version = lease.and_then(|l| l.metadata.resource_version.clone());
        if version != self.resource_version || self.seen_at.is_none() {
            self.resource_version = version;
            self.seen_at = Some(now);
        }
    }
}

/// Who may write, as a candidate sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nobody holds the Lease (none yet, released, or expired): try to take it.
    Free,
    /// `holder` holds it until `until` (on this candidate's clock) unless it renews.
    Held { holder: String, until: Instant },
}

/// The verdict on `lease` for `identity`, given what it observed.
pub fn verdict(lease: Option<&Lease>, observed: &Observation, now: Instant) -> Verdict {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return Verdict::Free;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Verdict::Free;
    }
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(1) as u64);
    let until = observed.seen_at.unwrap_or(now) + duration;
    if now >= until {
        Verdict::Free
    } else {
        Verdict::Held { holder, until }
    }
}

/// The holder named in `lease` ("" when none).
pub fn holder(lease: &Lease) -> &str {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("")
}

/// The spec that makes `identity` the holder of `previous` (or of a new Lease).
pub fn taken(previous: Option<&LeaseSpec>, identity: &str, duration: Duration) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
    // As client-go counts: every take by another identity than the last holder's.
    let transition =
        previous.is_some_and(|s| s.holder_identity.as_deref().unwrap_or("") != identity);
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(duration.as_secs().max(1) as i32),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: Some(transitions + i32::from(transition)),
        ..LeaseSpec::default()
    }
}

/// The spec of a renewal: only `renewTime` moves.
pub fn renewed(current: &LeaseSpec) -> LeaseSpec {
    LeaseSpec {
        renew_time: Some(MicroTime(Timestamp::now())),
        ..current.clone()
    }
}

/// The spec of a release, as client-go writes it: no holder, and a one-second duration, so
/// that a candidate that still sees the old holder waits at most a second.
pub fn released(current: &LeaseSpec) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(Timestamp::now())),
        ..current.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(version: &str, holder: Option<&str>, seconds: i32) -> Lease {
        Lease {
            metadata: kube::api::ObjectMeta {
                resource_version: Some(version.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(seconds),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_missing_or_released_lease_is_free() {
        let now = Instant::now();
        let observed = Observation::default();
        assert_eq!(verdict(None, &observed, now), Verdict::Free);
        assert_eq!(
            verdict(Some(&lease("1", None, 15)), &observed, now),
            Verdict::Free
        );
        assert_eq!(
            verdict(Some(&lease("1", Some(""), 15)), &observed, now),
            Verdict::Free
        );
    }

    #[test]
    fn a_held_lease_expires_a_duration_after_it_last_changed_on_our_clock() {
        let start = Instant::now();
        let mut observed = Observation::default();
        let held = lease("1", Some("a"), 15);
        observed.see(Some(&held), start);
        let until = start + Duration::from_secs(15);
        assert_eq!(
            verdict(Some(&held), &observed, start),
            Verdict::Held {
                holder: "a".into(),
                until
            }
        );
        // Seen again unchanged: the clock keeps running.
        observed.see(Some(&held), start + Duration::from_secs(10));
        assert_eq!(
            verdict(Some(&held), &observed, start + Duration::from_secs(14)),
            Verdict::Held {
                holder: "a".into(),
                until
            }
        );
        assert_eq!(verdict(Some(&held), &observed, until), Verdict::Free);
        // Renewed (a new resourceVersion): the clock restarts.
        let renewed = lease("2", Some("a"), 15);
        observed.see(Some(&renewed), start + Duration::from_secs(14));
        assert!(matches!(
            verdict(Some(&renewed), &observed, until),
            Verdict::Held { .. }
        ));
    }

    #[test]
    fn taking_counts_transitions_as_client_go() {
        let d = Duration::from_secs(15);
        let first = taken(None, "a", d);
        assert_eq!(first.holder_identity.as_deref(), Some("a"));
        assert_eq!(first.lease_transitions, Some(0));
        assert_eq!(first.lease_duration_seconds, Some(15));
        assert_eq!(taken(Some(&first), "b", d).lease_transitions, Some(1));
        let free = released(&first);
        assert_eq!(free.holder_identity, None);
        assert_eq!(free.lease_duration_seconds, Some(1));
        assert_eq!(taken(Some(&free), "b", d).lease_transitions, Some(1));
        assert_eq!(taken(Some(&first), "a", d).lease_transitions, Some(0));
        assert_eq!(renewed(&first).holder_identity.as_deref(), Some("a"));
    }
}
