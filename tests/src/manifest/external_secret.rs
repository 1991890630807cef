//! ExternalSecrets.

use serde_json::{Map, Value, json};

use super::{API_VERSION, Manifest};

/// An ExternalSecret; `spec` holds only what the test sets.
#[derive(Debug, Clone)]
pub struct ExternalSecret {
    name: String,
    metadata: Map<String, Value>,
    spec: Map<String, Value>,
    data: Vec<Value>,
    data_from: Vec<Value>,
}

impl ExternalSecret {
    pub fn new(name: &str) -> ExternalSecret {
        ExternalSecret {
            name: name.to_owned(),
            metadata: Map::new(),
            spec: Map::new(),
            data: Vec::new(),
            data_from: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads through the SecretStore `name` of its namespace.
    pub fn secret_store(self, name: &str) -> ExternalSecret {
        self.store_ref("SecretStore", name)
    }

    pub fn cluster_secret_store(self, name: &str) -> ExternalSecret {
        self.store_ref("ClusterSecretStore", name)
    }

    pub fn store_ref(self, kind: &str, name: &str) -> ExternalSecret {
        self.spec("secretStoreRef", json!({"name": name, "kind": kind}))
    }

    /// `spec.refreshInterval` as written (`"1h"`, `"0"`, or something invalid).
    pub fn refresh_interval(self, interval: &str) -> ExternalSecret {
        self.spec("refreshInterval", json!(interval))
    }

    pub fn refresh_policy(self, policy: &str) -> ExternalSecret {
        self.spec("refreshPolicy", json!(policy))
    }

    /// `spec.target` as written.
    pub fn target(self, target: Value) -> ExternalSecret {
        self.spec("target", target)
    }

    /// Any other field of `spec`.
    pub fn spec(mut self, field: &str, value: Value) -> ExternalSecret {
        self.spec.insert(field.to_owned(), value);
        self
    }

    pub fn labels(mut self, labels: Value) -> ExternalSecret {
        self.metadata.insert("labels".into(), labels);
        self
    }

    pub fn annotations(mut self, annotations: Value) -> ExternalSecret {
        self.metadata.insert("annotations".into(), annotations);
        self
    }

    /// `data`: the whole AWS secret `key` as `secret_key`.
    pub fn data(mut self, secret_key: &str, key: &str) -> ExternalSecret {
        self.data
            .push(json!({"secretKey": secret_key, "remoteRef": {"key": key}}));
        self
    }

    /// `data`: the JSON property `property` of the AWS secret `key` as `secret_key`.
    pub fn data_property(mut self, secret_key: &str, key: &str, property: &str) -> ExternalSecret {
        self.data.push(json!({
            "secretKey": secret_key,
            "remoteRef": {"key": key, "property": property},
        }));
        self
    }

    /// `dataFrom`: every property of the AWS secret `key`.
    pub fn extract(mut self, key: &str) -> ExternalSecret {
        self.data_from.push(json!({"extract": {"key": key}}));
        self
    }
}

impl Manifest for ExternalSecret {
    fn to_value(&self) -> Value {
        let mut metadata = self.metadata.clone();
        metadata.insert("name".into(), json!(self.name));
        let mut spec = self.spec.clone();
        if !self.data.is_empty() {
            spec.insert("data".into(), json!(self.data));
        }
        if !self.data_from.is_empty() {
            spec.insert("dataFrom".into(), json!(self.data_from));
        }
        json!({
            "apiVersion": API_VERSION,
            "kind": "ExternalSecret",
            "metadata": metadata,
            "spec": spec,
        })
    }
}
