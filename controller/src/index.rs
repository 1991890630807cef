//! The matching index over the ExternalSecret watch: which ExternalSecrets read a secret.

use std::sync::{Arc, RwLock};

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use secret_bridge::matching::{FindRule, MatchIndex};

use crate::api::ExternalSecret;

/// Shared between the watch that fills it and the consumer that reads it.
#[derive(Clone, Default)]
pub struct ExternalSecretIndex(Arc<RwLock<MatchIndex<ObjectRef<ExternalSecret>>>>);

impl ExternalSecretIndex {
    pub fn apply(&self, event: &watcher::Event<ExternalSecret>) {
        let mut index = self.0.write().expect("index lock");
        match event {
            watcher::Event::Apply(es) | watcher::Event::InitApply(es) => {
                index.upsert_with_finds(ObjectRef::from_obj(es), es.remote_keys(), find_rules(es));
            }
            watcher::Event::Delete(es) => index.remove(&ObjectRef::from_obj(es)),
            watcher::Event::Init => index.begin_relist(),
            watcher::Event::InitDone => index.finish_relist(),
        }
    }

    /// The ExternalSecrets that may read a secret the event names by any of `secret_ids`.
    pub fn lookup<'i>(
        &self,
        secret_ids: impl IntoIterator<Item = &'i str>,
    ) -> Vec<ObjectRef<ExternalSecret>> {
        self.0
            .read()
            .expect("index lock")
            .lookup(secret_ids)
            .into_iter()
            .collect()
    }
}

/// The rules of `es`'s `dataFrom[].find` entries. The store's `prefix` does not apply to them:
/// ESO lists and reads found secrets by their full names. A find whose regexp does not compile
/// fails its sync with that error, and no event could fix it, so it matches no event.
pub fn find_rules(es: &ExternalSecret) -> Vec<FindRule> {
    es.spec
        .data_from
        .iter()
        .filter_map(|from| from.find.as_ref())
        .filter_map(|find| {
            let regexp = find
                .name
                .as_ref()
                .map(|n| n.regexp.as_deref().unwrap_or_default());
            FindRule::new(regexp, find.path.as_deref()).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ExternalSecretSpec;
    use crate::api::external_secret::{ExternalSecretDataFrom, ExternalSecretFind, FindName};

    fn finding(regexp: Option<&str>, path: Option<&str>) -> ExternalSecretDataFrom {
        ExternalSecretDataFrom {
            find: Some(ExternalSecretFind {
                name: regexp.map(|r| FindName {
                    regexp: Some(r.into()),
                }),
                path: path.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn find_entries_become_rules_and_bad_regexps_match_nothing() {
        let es = ExternalSecret::new(
            "es",
            ExternalSecretSpec {
                data_from: vec![
                    finding(Some("^app/"), None),
                    finding(None, Some("team/")),
                    finding(Some("("), None),
                    ExternalSecretDataFrom::default(),
                ],
                ..Default::default()
            },
        );
        let rules = find_rules(&es);
        assert_eq!(rules.len(), 2);
        assert!(rules[0].may_select("app/db") && !rules[0].may_select("team/db"));
        assert!(rules[1].may_select("team/db") && !rules[1].may_select("app/db"));
    }

    #[test]
    fn a_find_without_regexp_selects_every_name() {
        let mut from = finding(None, None);
        from.find.as_mut().unwrap().name = Some(FindName { regexp: None });
        let es = ExternalSecret::new(
            "es",
            ExternalSecretSpec {
                data_from: vec![from],
                ..Default::default()
            },
        );
        assert!(find_rules(&es)[0].may_select("anything"));
    }
}
