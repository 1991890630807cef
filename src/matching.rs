//! Which ExternalSecrets read the secret an event names, in O(1) per event: an index from
//! every candidate secret name (see [`crate::secret_id`]) to the objects that reference it.
//!
//! The index follows a Kubernetes watch: objects are upserted and removed as they change, and
//! a re-list (after a watch restart) is applied as a whole, so objects deleted while the
//! watch was down disappear too.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use crate::secret_id::candidate_names;

#[derive(Debug)]
pub struct MatchIndex<K> {
    by_name: HashMap<String, HashSet<K>>,
    names_of: HashMap<K, Vec<String>>,
    /// Objects seen during a re-list in progress.
    relist: Option<HashMap<K, Vec<String>>>,
}

impl<K> Default for MatchIndex<K> {
    fn default() -> Self {
        MatchIndex {
            by_name: HashMap::new(),
            names_of: HashMap::new(),
            relist: None,
        }
    }
}

impl<K: Clone + Eq + Hash> MatchIndex<K> {
    /// Records that `object` reads the secrets named by `references` (names or ARNs).
    pub fn upsert<'r>(&mut self, object: K, references: impl IntoIterator<Item = &'r str>) {
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
        if self.names_of.get(&object) == Some(&names) {
            return;
        }
        self.remove_names(&object);
        for name in &names {
            self.by_name
                .entry(name.clone())
                .or_default()
                .insert(object.clone());
        }
        self.names_of.insert(object, names);
    }

    pub fn remove(&mut self, object: &K) {
        self.remove_names(object);
        if let Some(relist) = &mut self.relist {
            relist.remove(object);
        }
    }

    fn remove_names(&mut self, object: &K) {
        let Some(names) = self.names_of.remove(object) else {
            return;
        };
        for name in names {
            if let Some(set) = self.by_name.get_mut(&name) {
                set.remove(object);
                if set.is_empty() {
                    self.by_name.remove(&name);
                }
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
            self.remove_names(&object);
        }
    }

    /// The objects that may read a secret the event names by any of `secret_ids`.
    pub fn lookup<'i>(&self, secret_ids: impl IntoIterator<Item = &'i str>) -> HashSet<K> {
        secret_ids
            .into_iter()
            .flat_map(candidate_names)
            .filter_map(|name| self.by_name.get(name))
            .flatten()
            .cloned()
            .collect()
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
