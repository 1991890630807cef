//! Matching, in one place: which ExternalSecrets an event refreshes. An index over the
//! ExternalSecret watch finds candidates by every name a key may be written as (name, full or
//! partial ARN, with or without a store's `prefix`); each candidate is then checked against
//! its store's region and `prefix`, and `dataFrom.find` rules. The name rules themselves live
//! in the core crate (`secret_bridge::secret_id`, `secret_bridge::matching`).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use secret_bridge::event::SecretChange;
use secret_bridge::matching::{FindRule, MatchIndex};
use secret_bridge::secret_id::{self, SecretArn};

use crate::api::ExternalSecret;
use crate::cache::{self, Caches};

/// Shared between the watch that fills it and the consumer that reads it. Each ExternalSecret
/// is held once, behind an `Arc`, however many names (and maps) refer to it.
#[derive(Clone, Default)]
pub struct ExternalSecretIndex(Arc<RwLock<MatchIndex<Arc<ObjectRef<ExternalSecret>>>>>);

impl ExternalSecretIndex {
    pub fn apply(&self, event: &watcher::Event<ExternalSecret>) {
        let mut index = self.0.write().expect("index lock");
        match event {
            watcher::Event::Apply(es) | watcher::Event::InitApply(es) => {
                let object = Arc::new(cache::reference(es));
                index.upsert_with_finds(object, es.remote_keys(), find_rules(es));
            }
            watcher::Event::Delete(es) => index.remove(&Arc::new(cache::reference(es))),
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
            .map(Arc::unwrap_or_clone)
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

/// The ExternalSecrets that read the secret the event names, in the event's region, with
/// their store's `prefix` applied.
pub fn matching(caches: &Caches, change: &SecretChange) -> Vec<Arc<ExternalSecret>> {
    let ids: Vec<&str> = change.secret_ids.iter().map(String::as_str).collect();
    let mut candidates: HashSet<_> = caches
        .index
        .lookup(ids.iter().copied())
        .into_iter()
        .collect();
    for prefix in prefixes(caches) {
        let stripped = ids
            .iter()
            .flat_map(|id| secret_id::candidate_names(id))
            .filter_map(|name| name.strip_prefix(prefix.as_str()));
        candidates.extend(caches.index.lookup(stripped));
    }
    candidates
        .iter()
        .filter_map(|object| caches.external_secrets.get(object))
        .filter(|es| {
            let aws = caches.store_of(es).and_then(|spec| spec.provider.aws);
            let prefix = aws
                .as_ref()
                .and_then(|a| a.prefix.clone())
                .unwrap_or_default();
            let store_region = aws.map(|a| a.region);
            reads_in_region(es, &prefix, store_region.as_deref(), change)
        })
        .collect()
}

/// Every distinct non-empty `prefix` of the stores: an event's name may be a key with one.
fn prefixes(caches: &Caches) -> Vec<String> {
    let mut prefixes: Vec<String> = caches
        .store_specs()
        .filter_map(|spec| spec.provider.aws?.prefix.filter(|p| !p.is_empty()))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

/// Whether `es` (whose store has `prefix` and `store_region`, when known) reads the secret of
/// `change`: by a key it names, or by a `dataFrom.find` that may select the secret (its
/// `name.regexp` and `path`; tags are not in the event, and the store prefix does not apply to
/// a find, as in ESO). An unknown region matches: at worst a harmless refresh.
fn reads_in_region(
    es: &ExternalSecret,
    prefix: &str,
    store_region: Option<&str>,
    change: &SecretChange,
) -> bool {
    if let (Some(event_region), Some(store_region)) = (change.region.as_deref(), store_region)
        && event_region != store_region
    {
        return false;
    }
    // An ARN in the event names its own partition and region: a lookalike from another
    // partition or region is not this store's secret, whatever the envelope says.
    let region = store_region.or(change.region.as_deref());
    let ids: Vec<&str> = change
        .secret_ids
        .iter()
        .map(String::as_str)
        .filter(|id| match (SecretArn::parse(id), region) {
            (Some(arn), Some(region)) => {
                arn.region == region && arn.partition == secret_id::partition_of(region)
            }
            _ => true,
        })
        .collect();
    let by_key = es.remote_keys().any(|key| {
        if let (Some(arn), Some(event_region)) = (SecretArn::parse(key), change.region.as_deref())
            && arn.region != event_region
        {
            return false;
        }
        let key = format!("{prefix}{key}");
        ids.iter().any(|id| secret_id::may_match(&key, id))
    });
    by_key
        || find_rules(es).iter().any(|rule| {
            ids.iter()
                .flat_map(|id| secret_id::candidate_names(id))
                .any(|name| rule.may_select(name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ExternalSecretSpec;
    use crate::api::external_secret::{ExternalSecretDataFrom, ExternalSecretFind, FindName};

    fn finding(regexp: Option<&str>, path: Option<&str>) -> ExternalSecretDataFrom {
        ExternalSecretDataFrom {
            find: Some(Box::new(ExternalSecretFind {
                name: regexp.map(|r| FindName {
                    regexp: Some(r.into()),
                }),
                path: path.map(Into::into),
                ..Default::default()
            })),
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

    fn change(ids: &[&str], region: Option<&str>) -> SecretChange {
        SecretChange {
            kind: secret_bridge::event::ChangeKind::LabelUpdated,
            secret_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            region: region.map(Into::into),
            account: None,
            version_id: None,
            time: None,
        }
    }

    fn es(key: &str) -> ExternalSecret {
        use crate::api::external_secret::{ExternalSecretDataFrom, RemoteRef};
        ExternalSecret::new(
            "es",
            crate::api::ExternalSecretSpec {
                data_from: vec![ExternalSecretDataFrom {
                    extract: Some(RemoteRef {
                        key: key.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
    }

    #[test]
    fn lookalike_arns_from_another_partition_or_region_match_nothing() {
        let event = |arn: &str| SecretChange {
            kind: secret_bridge::event::ChangeKind::LabelUpdated,
            secret_ids: vec![arn.into()],
            region: Some("us-east-1".into()),
            account: None,
            version_id: None,
            time: None,
        };
        let reader = es("team/db");
        let own = "arn:aws:secretsmanager:us-east-1:123456789012:secret:team/db-AbCdEf";
        assert!(reads_in_region(&reader, "", Some("us-east-1"), &event(own)));
        let china = "arn:aws-cn:secretsmanager:us-east-1:123456789012:secret:team/db-AbCdEf";
        assert!(!reads_in_region(
            &reader,
            "",
            Some("us-east-1"),
            &event(china)
        ));
        let elsewhere = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:team/db-AbCdEf";
        assert!(!reads_in_region(
            &reader,
            "",
            Some("us-east-1"),
            &event(elsewhere)
        ));
        assert!(!reads_in_region(&reader, "", None, &event(elsewhere)));
    }

    #[test]
    fn regions_and_prefixes_are_respected() {
        let event = change(&["team/db"], Some("eu-west-1"));
        assert!(reads_in_region(
            &es("team/db"),
            "",
            Some("eu-west-1"),
            &event
        ));
        assert!(
            !reads_in_region(&es("team/db"), "", Some("us-east-1"), &event),
            "another region"
        );
        assert!(
            reads_in_region(&es("team/db"), "", None, &event),
            "unknown store region: refresh"
        );
        assert!(
            reads_in_region(&es("db"), "team/", Some("eu-west-1"), &event),
            "store prefix"
        );
        assert!(!reads_in_region(&es("db"), "", Some("eu-west-1"), &event));
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:team/db-AbCdEf";
        assert!(
            !reads_in_region(&es(arn), "", None, &event),
            "an ARN names its region"
        );
    }

    #[test]
    fn finds_match_by_regexp_and_path_in_their_region() {
        use crate::api::external_secret::{ExternalSecretDataFrom, ExternalSecretFind, FindName};
        let finding = |regexp: Option<&str>, path: Option<&str>, tags: &[(&str, &str)]| {
            ExternalSecret::new(
                "es",
                crate::api::ExternalSecretSpec {
                    data_from: vec![ExternalSecretDataFrom {
                        find: Some(Box::new(ExternalSecretFind {
                            name: regexp.map(|r| FindName {
                                regexp: Some(r.into()),
                            }),
                            path: path.map(Into::into),
                            tags: tags
                                .iter()
                                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                                .collect(),
                            ..Default::default()
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )
        };
        let arn = "arn:aws:secretsmanager:eu-west-1:1:secret:team/db-AbCdEf";
        let event = change(&[arn], Some("eu-west-1"));
        let region = Some("eu-west-1");
        assert!(reads_in_region(
            &finding(Some("^team/"), None, &[]),
            "",
            region,
            &event
        ));
        assert!(reads_in_region(
            &finding(Some("db$"), None, &[]),
            "",
            region,
            &event
        ));
        assert!(!reads_in_region(
            &finding(Some("^app/"), None, &[]),
            "",
            region,
            &event
        ));
        assert!(reads_in_region(
            &finding(None, Some("team/"), &[]),
            "",
            region,
            &event
        ));
        assert!(!reads_in_region(
            &finding(None, Some("app/"), &[]),
            "",
            region,
            &event
        ));
        let by_tags = finding(None, None, &[("env", "prod")]);
        assert!(
            reads_in_region(&by_tags, "", region, &event),
            "tags: every event"
        );
        assert!(
            !reads_in_region(&by_tags, "", Some("us-east-1"), &event),
            "but only in the store's region"
        );
        assert!(
            reads_in_region(
                &finding(Some("^team/"), None, &[]),
                "other/",
                region,
                &event
            ),
            "the store prefix does not apply to find"
        );
    }
}
