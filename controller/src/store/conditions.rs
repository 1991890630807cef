//! A ClusterSecretStore's `conditions`: which namespaces may use it, by name, by name regexp
//! (Go's syntax, unanchored) or by label selector.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt};
use regex::Regex;

use crate::api::secret_store::ClusterStoreCondition;

/// A ClusterSecretStore's `conditions`, parsed.
#[derive(Debug)]
pub struct NamespaceConditions {
    names: Vec<String>,
    regexes: Vec<Regex>,
    selectors: Vec<Selector>,
}

impl NamespaceConditions {
    /// Fails on an invalid regular expression or label selector, naming where it is.
    pub fn parse(conditions: &[ClusterStoreCondition]) -> Result<Self, String> {
        let mut parsed = NamespaceConditions {
            names: Vec::new(),
            regexes: Vec::new(),
            selectors: Vec::new(),
        };
        for (i, condition) in conditions.iter().enumerate() {
            parsed.names.extend(condition.namespaces.iter().cloned());
            for (j, pattern) in condition.namespace_regexes.iter().enumerate() {
                parsed.regexes.push(secret_bridge::go_regex::compile(pattern).map_err(|e| {
                    // The regex crate draws the error over several lines; its last says what.
                    let e = e.to_string();
                    let what = e.lines().last().unwrap_or_default().trim_start_matches("error: ");
                    format!(
                        "spec.conditions[{i}].namespaceRegexes[{j}] {pattern:?} is not a valid regular expression: {what}"
                    )
                })?);
            }
            if let Some(selector) = &condition.namespace_selector {
                parsed.selectors.push(
                    Selector::try_from(selector.clone())
                        .map_err(|e| format!("spec.conditions[{i}].namespaceSelector: {e}"))?,
                );
            }
        }
        Ok(parsed)
    }

    /// Allowed by a name in `namespaces` or a match of `namespaceRegexes` (unanchored, as Go's
    /// `regexp.MatchString`).
    pub fn allows_by_name(&self, namespace: &str) -> bool {
        self.names.iter().any(|n| n == namespace)
            || self.regexes.iter().any(|r| r.is_match(namespace))
    }

    pub fn has_selectors(&self) -> bool {
        !self.selectors.is_empty()
    }

    /// Allowed by a `namespaceSelector` matching the Namespace's labels.
    pub fn allows_by_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selectors.iter().any(|s| s.matches(labels))
    }
}
