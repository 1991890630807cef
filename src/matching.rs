//! Which ExternalSecrets read the secret an event names, in O(1) per event: an index from
//! every candidate secret name (see [`crate::secret_id`]) to the objects that reference it.
//!
//! Objects with a `dataFrom.find` cannot be indexed by name: their [`FindRule`]s are kept
//! beside the index and evaluated (a prefix test and a regexp) for every event, but only for
//! those objects. An event carries a secret's name, not its tags, so a rule only checks what
//! the name tells: `name.regexp` and `path`. A find by tags alone therefore matches every event
//! (of its store's region, which the caller checks): the event may be a `TagResource` that
//! just brought the secret into the selection, so there is no cheaper safe answer short of a
//! DescribeSecret per event.
//!
//! The index follows a Kubernetes watch: objects are upserted and removed as they change, and
//! a re-list (after a watch restart) is applied as a whole, so objects deleted while the
//! watch was down disappear too.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use regex::Regex;

use crate::go_regex;
use crate::secret_id::candidate_names;

/// What an event can tell of a `dataFrom.find`: whether a secret of that name may be selected.
#[derive(Debug, Clone)]
pub struct FindRule {
    name: Option<Regex>,
    path: Option<String>,
}

impl FindRule {
    /// `name_regexp` is `find.name.regexp` (Go syntax), `path` is `find.path`: a prefix of the
    /// name, case-sensitive, or with a leading `!` a prefix the name must not have (AWS's
    /// ListSecrets `name` filter, to which ESO passes it).
    pub fn new(name_regexp: Option<&str>, path: Option<&str>) -> Result<Self, regex::Error> {
        Ok(FindRule {
            name: name_regexp.map(go_regex::compile).transpose()?,
            path: path.map(str::to_owned),
        })
    }

    /// Whether the secret named `name` may be one the find selects.
    pub fn may_select(&self, name: &str) -> bool {
        let path_ok = match self.path.as_deref() {
            None => true,
            Some(path) => match path.strip_prefix('!') {
                Some(excluded) => !name.starts_with(excluded),
                None => name.starts_with(path),
            },
        };
        path_ok && self.name.as_ref().is_none_or(|re| re.is_match(name))
    }
}

#[derive(Debug)]
pub struct MatchIndex<K> {
    by_name: HashMap<String, Holders<K>>,
    names_of: HashMap<K, Vec<String>>,
    /// The find rules of the objects that have any.
    finds: HashMap<K, Vec<FindRule>>,
    /// Objects seen during a re-list in progress.
    relist: Option<HashMap<K, Vec<String>>>,
}

/// The objects that reference one name. Most names are referenced by one object, which is
/// then kept inline: a set of one allocates room for several (10,000 ExternalSecrets with a
/// key each cost about 3 MiB more as sets).
#[derive(Debug)]
enum Holders<K> {
    One(K),
    Many(HashSet<K>),
}

impl<K: Clone + Eq + Hash> Holders<K> {
    fn insert(&mut self, object: K) {
        match self {
            Holders::One(one) if *one == object => {}
            Holders::One(one) => *self = Holders::Many(HashSet::from([one.clone(), object])),
            Holders::Many(set) => {
                set.insert(object);
            }
        }
    }

    /// Removes `object`; returns whether no object is left.
    fn remove(&mut self, object: &K) -> bool {
        match self {
            Holders::One(one) => one == object,
            Holders::Many(set) => {
                // A set holds two or more: down to one, it is kept inline again.
                set.remove(object);
                if set.len() == 1 {
                    let last = set.drain().next().expect("one object left");
                    *self = Holders::One(last);
                }
                false
            }
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = &K> + '_> {
        match self {
            Holders::One(one) => Box::new(std::iter::once(one)),
            Holders::Many(set) => Box::new(set.iter()),
        }
    }
}

impl<K> Default for MatchIndex<K> {
    fn default() -> Self {
        MatchIndex {
            by_name: HashMap::new(),
            names_of: HashMap::new(),
            finds: HashMap::new(),
            relist: None,
        }
    }
}

impl<K: Clone + Eq + Hash> MatchIndex<K> {
    /// Records that `object` reads the secrets named by `references` (names or ARNs).
    pub fn upsert<'r>(&mut self, object: K, references: impl IntoIterator<Item = &'r str>) {
        self.upsert_with_finds(object, references, Vec::new());
    }

    /// Records that `object` reads the secrets named by `references` (names or ARNs) and every
    /// secret its `finds` select.
    pub fn upsert_with_finds<'r>(
        &mut self,
        object: K,
        references: impl IntoIterator<Item = &'r str>,
        finds: Vec<FindRule>,
    ) {
        let mut names: Vec<String> = references
            .into_iter()
            .flat_map(candidate_names)
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        if let Some(relist) = &mut self.relist {
            relist.insert(object.clone(), names.clone());
        }
        if self.names_of.get(&object) != Some(&names) {
            self.forget(&object);
            for name in &names {
                match self.by_name.get_mut(name) {
                    Some(holders) => holders.insert(object.clone()),
                    None => {
                        self.by_name
                            .insert(name.clone(), Holders::One(object.clone()));
                    }
                }
            }
            self.names_of.insert(object.clone(), names);
        }
        if finds.is_empty() {
            self.finds.remove(&object);
        } else {
            self.finds.insert(object, finds);
        }
    }

    pub fn remove(&mut self, object: &K) {
        self.forget(object);
        if let Some(relist) = &mut self.relist {
            relist.remove(object);
        }
    }

    fn forget(&mut self, object: &K) {
        self.finds.remove(object);
        let Some(names) = self.names_of.remove(object) else {
            return;
        };
        for name in names {
            if let Some(holders) = self.by_name.get_mut(&name)
                && holders.remove(object)
            {
                self.by_name.remove(&name);
            }
        }
    }

    /// A re-list starts: objects not upserted before [`MatchIndex::finish_relist`] are dropped.
    pub fn begin_relist(&mut self) {
        self.relist = Some(HashMap::new());
    }

    pub fn finish_relist(&mut self) {
        let Some(seen) = self.relist.take() else {
            return;
        };
        let gone: Vec<K> = self
            .names_of
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        for object in gone {
            self.forget(&object);
        }
    }

    /// The objects that may read a secret the event names by any of `secret_ids`: by name in
    /// O(1), plus the objects whose find rules may select it.
    pub fn lookup<'i>(&self, secret_ids: impl IntoIterator<Item = &'i str>) -> HashSet<K> {
        let names: Vec<&str> = secret_ids.into_iter().flat_map(candidate_names).collect();
        let mut found: HashSet<K> = names
            .iter()
            .filter_map(|name| self.by_name.get(*name))
            .flat_map(Holders::iter)
            .cloned()
            .collect();
        for (object, rules) in &self.finds {
            if rules
                .iter()
                .any(|rule| names.iter().any(|name| rule.may_select(name)))
            {
                found.insert(object.clone());
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.names_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names_of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbC123";

    fn sorted(set: HashSet<&'static str>) -> Vec<&'static str> {
        let mut v: Vec<_> = set.into_iter().collect();
        v.sort();
        v
    }

    #[test]
    fn finds_objects_by_name_full_and_partial_arn() {
        let mut index = MatchIndex::default();
        index.upsert("by-name", ["app/db"]);
        index.upsert("by-arn", [ARN]);
        index.upsert(
            "by-partial",
            ["arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db"],
        );
        index.upsert("other", ["app/cache"]);
        assert_eq!(
            sorted(index.lookup(["app/db"])),
            ["by-arn", "by-name", "by-partial"]
        );
        assert_eq!(
            sorted(index.lookup([ARN])),
            ["by-arn", "by-name", "by-partial"]
        );
        assert!(index.lookup(["app/dbx"]).is_empty());
    }

    #[test]
    fn updates_and_removals_are_followed() {
        let mut index = MatchIndex::default();
        index.upsert("es", ["a", "b"]);
        index.upsert("es", ["b", "c"]);
        assert!(index.lookup(["a"]).is_empty());
        assert_eq!(sorted(index.lookup(["c"])), ["es"]);
        index.remove(&"es");
        assert!(index.lookup(["b"]).is_empty());
        assert!(index.is_empty());
    }

    #[test]
    fn a_name_shared_by_several_objects_keeps_the_others_when_one_goes() {
        let mut index = MatchIndex::default();
        index.upsert("a", ["shared"]);
        index.upsert("b", ["shared"]);
        index.upsert("c", ["shared", "own"]);
        assert_eq!(sorted(index.lookup(["shared"])), ["a", "b", "c"]);
        index.remove(&"b");
        index.upsert("c", ["own"]);
        assert_eq!(sorted(index.lookup(["shared"])), ["a"]);
        assert_eq!(sorted(index.lookup(["own"])), ["c"]);
        index.upsert("b", ["shared"]);
        assert_eq!(sorted(index.lookup(["shared"])), ["a", "b"]);
        index.remove(&"a");
        index.remove(&"b");
        index.remove(&"c");
        assert!(index.lookup(["shared"]).is_empty());
        assert!(index.by_name.is_empty(), "no name is kept for nobody");
    }

    fn rule(name: Option<&str>, path: Option<&str>) -> FindRule {
        FindRule::new(name, path).unwrap()
    }

    #[test]
    fn find_rules_check_what_the_name_tells() {
        assert!(rule(Some("^app/"), None).may_select("app/db"));
        assert!(!rule(Some("^app/"), None).may_select("other/app/db"));
        assert!(
            rule(Some("db"), None).may_select("other/app/db"),
            "unanchored, as Go's MatchString"
        );
        assert!(rule(None, Some("team/")).may_select("team/db"));
        assert!(
            !rule(None, Some("team/")).may_select("Team/db"),
            "AWS's name filter is case-sensitive"
        );
        assert!(!rule(None, Some("!team/")).may_select("team/db"));
        assert!(rule(None, Some("!team/")).may_select("other"));
        assert!(rule(Some("db$"), Some("team/")).may_select("team/db"));
        assert!(!rule(Some("db$"), Some("team/")).may_select("team/cache"));
        assert!(
            rule(None, None).may_select("anything"),
            "a find by tags alone"
        );
        assert!(rule(Some(r"^\d+$"), None).may_select("123"));
        assert!(
            !rule(Some(r"^\d+$"), None).may_select("١٢٣"),
            "Go's \\d is ASCII"
        );
        assert!(FindRule::new(Some("("), None).is_err());
    }

    #[test]
    fn finds_match_events_by_regexp_beside_names() {
        let mut index = MatchIndex::default();
        index.upsert("by-name", ["app/db"]);
        index.upsert_with_finds("find-app", ["fixed"], vec![rule(Some("^app/"), None)]);
        index.upsert_with_finds("find-tags", [], vec![rule(None, None)]);
        index.upsert_with_finds("find-team", [], vec![rule(None, Some("team/"))]);
        assert_eq!(
            sorted(index.lookup([ARN])),
            ["by-name", "find-app", "find-tags"],
            "an ARN's name is matched by the rules"
        );
        assert_eq!(sorted(index.lookup(["fixed"])), ["find-app", "find-tags"]);
        assert_eq!(sorted(index.lookup(["team/x"])), ["find-tags", "find-team"]);
        index.upsert("find-app", ["fixed"]);
        assert_eq!(
            sorted(index.lookup(["app/cache"])),
            ["find-tags"],
            "find removed"
        );
        index.remove(&"find-tags");
        assert!(index.lookup(["app/cache"]).is_empty());
        index.begin_relist();
        index.upsert("by-name", ["app/db"]);
        index.finish_relist();
        assert!(
            index.lookup(["team/x"]).is_empty(),
            "a relist drops rules of deleted objects"
        );
    }

    #[test]
    fn a_relist_drops_objects_deleted_meanwhile() {
        let mut index = MatchIndex::default();
        index.upsert("kept", ["a"]);
        index.upsert("deleted-while-down", ["a"]);
        index.begin_relist();
        index.upsert("kept", ["a"]);
        index.finish_relist();
        assert_eq!(sorted(index.lookup(["a"])), ["kept"]);
        assert_eq!(index.len(), 1);
    }
}
