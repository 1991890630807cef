//! ESO's bookkeeping values, written here independently of the controller so that the corpus
//! checks them against ESO's definitions (`runtime/esutils.ObjectHash`: SHA3-224 of Go's `%+v`).

use std::collections::BTreeMap;

use sha3::{Digest, Sha3_224};

pub const MANAGED_LABEL: &str = "reconcile.external-secrets.io/managed";
pub const OWNER_LABEL: &str = "reconcile.external-secrets.io/created-by";
pub const DATA_HASH_ANNOTATION: &str = "reconcile.external-secrets.io/data-hash";
/// Labels and annotations under this prefix are ESO's bookkeeping.
pub const BOOKKEEPING_PREFIX: &str = "reconcile.external-secrets.io/";

/// `ObjectHash(secret.Data)`: Go prints a `map[string][]byte` as `map[k:[1 2 3] ...]`, keys sorted.
pub fn data_hash(data: &BTreeMap<String, Vec<u8>>) -> String {
    let entries: Vec<String> = data
        .iter()
        .map(|(key, value)| {
            let bytes: Vec<String> = value.iter().map(u8::to_string).collect();
            format!("{key}:[{}]", bytes.join(" "))
        })
        .collect();
    object_hash(&format!("map[{}]", entries.join(" ")))
}

/// The `created-by` label: `ObjectHash("<namespace>/<name>")`.
pub fn owner_label(namespace: &str, name: &str) -> String {
    object_hash(&format!("{namespace}/{name}"))
}

/// `ctrlutil.GetResourceVersion`: `<generation>-<ObjectHash(struct{annotations, labels})>`.
pub fn resource_version(
    generation: i64,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> String {
    let map = |m: &BTreeMap<String, String>| {
        let entries: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("map[{}]", entries.join(" "))
    };
    let hash = object_hash(&format!(
        "{{annotations:{} labels:{}}}",
        map(annotations),
        map(labels)
    ));
    format!("{generation}-{hash}")
}

fn object_hash(text: &str) -> String {
    Sha3_224::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_go_renderings() {
        // sha3-224("map[]"), as Go's ObjectHash(map[string][]byte{}) gives.
        let empty = data_hash(&BTreeMap::new());
        assert_eq!(empty, object_hash("map[]"));
        let data = BTreeMap::from([("a".to_owned(), b"AB".to_vec())]);
        assert_eq!(data_hash(&data), object_hash("map[a:[65 66]]"));
        assert!(resource_version(3, &BTreeMap::new(), &BTreeMap::new()).starts_with("3-"));
    }
}
