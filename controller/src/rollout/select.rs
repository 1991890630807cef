//! Which workloads a changed Secret restarts, decided purely: Reloader's rules for the
//! workloads that opted in with its annotations, and secret-bridge's own annotation naming
//! workloads explicitly. The one place where "does this change restart that workload?" is
//! answered.

use std::collections::BTreeMap;

use regex::RegexBuilder;

use crate::rollout::workload::{Kind, RELOADER_IGNORE, RELOADER_MATCH, Workload};

/// On an ExternalSecret (or, through `target.template.metadata`, on its Secret): the
/// workloads of its namespace to restart when the Secret's data changes, as
/// `kind/name,kind/name` (kinds as `kubectl` spells them: `deployment`, `sts`, `ds`…).
pub const RESTART_ANNOTATION: &str = "secret-bridge.io/restart";
/// At most this many workloads are named by one [`RESTART_ANNOTATION`].
pub const MAX_NAMED_WORKLOADS: usize = 32;
/// A `secret.reloader.stakater.com/reload` entry is a regular expression of at most this many
/// bytes once compiled; a larger one only matches its own text.
const MAX_PATTERN_SIZE: usize = 64 * 1024;

/// What a changed Secret's own annotations say about restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecretFlags {
    /// `reloader.stakater.com/ignore: "true"`: the Secret restarts nothing.
    pub ignore: bool,
    /// `reloader.stakater.com/match: "true"`: restarts readers with `reloader.stakater.com/search`.
    pub matched: bool,
}

impl SecretFlags {
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> SecretFlags {
        let is_true = |key: &str| {
            annotations
                .get(key)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        };
        SecretFlags {
            ignore: is_true(RELOADER_IGNORE),
            matched: is_true(RELOADER_MATCH),
        }
    }
}

/// Whether a change of the Secret `secret` (of the workload's namespace) restarts `workload`,
/// by Reloader's rules: `auto` restarts on any Secret it reads, `search` on one it reads that
/// carries `match`, `reload` on the Secrets it names (read or not).
pub fn restarts(workload: &Workload, secret: &str, flags: SecretFlags) -> bool {
    if flags.ignore {
        return false;
    }
    let reads = workload
        .secrets
        .binary_search_by(|n| n.as_str().cmp(secret))
        .is_ok();
    let policy = &workload.policy;
    (policy.auto && reads)
        || (policy.search && flags.matched && reads)
        || policy
            .reload
            .iter()
            .any(|entry| reload_entry_matches(entry, secret))
}

/// A `secret.reloader.stakater.com/reload` entry matches as Reloader's: an anchored regular
/// expression, or the exact name when it is not a valid one. The `regex` crate runs in linear
/// time and its size is bounded, so no entry can stall the controller.
fn reload_entry_matches(entry: &str, secret: &str) -> bool {
    if entry == secret {
        return true;
    }
    let is_plain = entry
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if is_plain {
        return false;
    }
    RegexBuilder::new(&format!("^(?:{entry})$"))
        .size_limit(MAX_PATTERN_SIZE)
        .build()
        .is_ok_and(|pattern| pattern.is_match(secret))
}

/// The workloads a [`RESTART_ANNOTATION`] value names, and the entries it could not read
/// (to report). At most [`MAX_NAMED_WORKLOADS`]; more is an error entry.
pub fn named_workloads(value: &str) -> (Vec<(Kind, String)>, Vec<String>) {
    let mut named = Vec::new();
    let mut invalid = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if named.len() == MAX_NAMED_WORKLOADS {
            invalid.push(format!("more than {MAX_NAMED_WORKLOADS} workloads"));
            break;
        }
        let parsed = entry.split_once('/').and_then(|(kind, name)| {
            let valid_name = !name.is_empty()
                && name.len() <= 253
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            Some((Kind::parse(kind)?, name.to_owned())).filter(|_| valid_name)
        });
        match parsed {
            Some(target) if !named.contains(&target) => named.push(target),
            Some(_) => {}
            None => invalid.push(entry.chars().take(300).collect()),
        }
    }
    (named, invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::workload::{Policy, WorkloadKey};

    fn workload(policy: Policy, secrets: &[&str]) -> Workload {
        Workload {
            key: WorkloadKey {
                kind: Kind::Deployment,
                namespace: "ns".into(),
                name: "api".into(),
            },
            uid: None,
            policy,
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    const NONE: SecretFlags = SecretFlags {
        ignore: false,
        matched: false,
    };

    #[test]
    fn auto_restarts_on_the_secrets_it_reads_only() {
        let api = workload(
            Policy {
                auto: true,
                ..Policy::default()
            },
            &["app", "db"],
        );
        assert!(restarts(&api, "db", NONE));
        assert!(!restarts(&api, "other", NONE));
        let ignored = SecretFlags {
            ignore: true,
            ..NONE
        };
        assert!(!restarts(&api, "db", ignored), "the ignore annotation wins");
    }

    #[test]
    fn search_needs_the_match_annotation_on_a_secret_it_reads() {
        let api = workload(
            Policy {
                search: true,
                ..Policy::default()
            },
            &["db"],
        );
        let matched = SecretFlags {
            matched: true,
            ..NONE
        };
        assert!(!restarts(&api, "db", NONE));
        assert!(restarts(&api, "db", matched));
        assert!(!restarts(&api, "other", matched));
    }

    #[test]
    fn reload_names_secrets_read_or_not_exactly_or_by_anchored_pattern() {
        let api = workload(
            Policy {
                reload: vec!["db".into(), "cache-.*".into(), "a.b".into(), "bad(".into()],
                ..Policy::default()
            },
            &[],
        );
        assert!(restarts(&api, "db", NONE));
        assert!(!restarts(&api, "db-2", NONE), "anchored");
        assert!(restarts(&api, "cache-eu", NONE));
        assert!(restarts(&api, "a.b", NONE));
        assert!(restarts(&api, "bad(", NONE), "an invalid pattern is a name");
        assert!(!restarts(&api, "other", NONE));
    }

    #[test]
    fn named_workloads_parse_kinds_and_report_what_they_cannot_read() {
        let (named, invalid) =
            named_workloads("deployment/api, sts/db,ds/agent,deploy/api, cronjob/x, deploy/, x");
        assert_eq!(
            named,
            [
                (Kind::Deployment, "api".to_owned()),
                (Kind::StatefulSet, "db".to_owned()),
                (Kind::DaemonSet, "agent".to_owned()),
            ]
        );
        assert_eq!(invalid, ["cronjob/x", "deploy/", "x"]);
        let many: Vec<String> = (0..40).map(|i| format!("deploy/d{i}")).collect();
        let (named, invalid) = named_workloads(&many.join(","));
        assert_eq!(named.len(), MAX_NAMED_WORKLOADS);
        assert_eq!(invalid.len(), 1);
    }
}
