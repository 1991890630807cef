//! SecretStores and ClusterSecretStores of the AWS Secrets Manager provider.

use serde_json::{Map, Value, json};

use super::{ACCESS_KEY, API_VERSION, KEYS_SECRET, Manifest, SECRET_ACCESS_KEY};

/// A SecretStore or ClusterSecretStore; by default for `us-east-1`, without a controller
/// class and without `auth` (the controller's own credentials).
#[derive(Debug, Clone)]
pub struct Store {
    kind: &'static str,
    name: String,
    controller: Option<String>,
    region: String,
    auth: Option<Value>,
    role: Option<String>,
    external_id: Option<String>,
    additional_roles: Vec<String>,
    session_tags: Vec<Value>,
    conditions: Vec<Value>,
    refresh_interval: Option<u64>,
    /// Replaces the whole `spec.provider` (another provider than AWS).
    provider: Option<Value>,
}

impl Store {
    pub fn secret_store(name: &str) -> Store {
        Store::new("SecretStore", name)
    }

    pub fn cluster_secret_store(name: &str) -> Store {
        Store::new("ClusterSecretStore", name)
    }

    fn new(kind: &'static str, name: &str) -> Store {
        Store {
            kind,
            name: name.to_owned(),
            controller: None,
            region: "us-east-1".into(),
            auth: None,
            role: None,
            external_id: None,
            additional_roles: Vec::new(),
            session_tags: Vec::new(),
            conditions: Vec::new(),
            refresh_interval: None,
            provider: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// `spec.controller`: only the controller of this class serves the store.
    pub fn controller(mut self, class: &str) -> Store {
        self.controller = Some(class.to_owned());
        self
    }

    pub fn region(mut self, region: &str) -> Store {
        self.region = region.to_owned();
        self
    }

    /// Static keys from the Secret [`KEYS_SECRET`] of the store's own namespace.
    pub fn static_keys(self) -> Store {
        self.static_keys_from(KEYS_SECRET, None)
    }

    /// Static keys from the Secret [`KEYS_SECRET`] of `namespace` (as a ClusterSecretStore
    /// names them).
    pub fn static_keys_in(self, namespace: &str) -> Store {
        self.static_keys_from(KEYS_SECRET, Some(namespace))
    }

    /// Static keys from the Secret `secret` (which may not exist).
    pub fn static_keys_from(mut self, secret: &str, namespace: Option<&str>) -> Store {
        let reference = |key: &str| {
            let mut reference = json!({"name": secret, "key": key});
            if let Some(namespace) = namespace {
                reference["namespace"] = json!(namespace);
            }
            reference
        };
        self.auth = Some(json!({"secretRef": {
            "accessKeyIDSecretRef": reference(ACCESS_KEY),
            "secretAccessKeySecretRef": reference(SECRET_ACCESS_KEY),
        }}));
        self
    }

    /// IRSA: a token of the ServiceAccount `name` (in `namespace`, for a ClusterSecretStore).
    pub fn service_account(self, name: &str, namespace: Option<&str>) -> Store {
        self.service_account_for(name, namespace, &[])
    }

    /// IRSA with a token for `audiences` instead of the default one.
    pub fn service_account_for(
        mut self,
        name: &str,
        namespace: Option<&str>,
        audiences: &[&str],
    ) -> Store {
        let mut reference = json!({"name": name});
        if let Some(namespace) = namespace {
            reference["namespace"] = json!(namespace);
        }
        if !audiences.is_empty() {
            reference["audiences"] = json!(audiences);
        }
        self.auth = Some(json!({"jwt": {"serviceAccountRef": reference}}));
        self
    }

    /// The role assumed with the credentials of `auth`, and its external ID.
    pub fn role(mut self, arn: &str, external_id: Option<&str>) -> Store {
        self.role = Some(arn.to_owned());
        self.external_id = external_id.map(str::to_owned);
        self
    }

    /// Roles assumed, in order, before `role`.
    pub fn additional_roles(mut self, arns: &[&str]) -> Store {
        self.additional_roles = arns.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    pub fn session_tag(mut self, key: &str, value: &str) -> Store {
        self.session_tags.push(json!({"key": key, "value": value}));
        self
    }

    /// A ClusterSecretStore condition allowing these namespaces by name.
    pub fn allow_namespaces(self, names: &[&str]) -> Store {
        self.condition(json!({ "namespaces": names }))
    }

    /// A ClusterSecretStore condition allowing the namespaces whose names match.
    pub fn allow_namespace_regexes(self, regexes: &[&str]) -> Store {
        self.condition(json!({ "namespaceRegexes": regexes }))
    }

    /// A ClusterSecretStore condition as written (for example a `namespaceSelector`).
    pub fn condition(mut self, condition: Value) -> Store {
        self.conditions.push(condition);
        self
    }

    /// `spec.refreshInterval`: seconds between validations of the store.
    pub fn refresh_interval(mut self, seconds: u64) -> Store {
        self.refresh_interval = Some(seconds);
        self
    }

    /// Another provider than AWS Secrets Manager, as written under `spec.provider`.
    pub fn provider(mut self, provider: Value) -> Store {
        self.provider = Some(provider);
        self
    }

    fn aws(&self) -> Value {
        let mut aws = Map::new();
        aws.insert("service".into(), json!("SecretsManager"));
        aws.insert("region".into(), json!(self.region));
        if !self.additional_roles.is_empty() {
            aws.insert("additionalRoles".into(), json!(self.additional_roles));
        }
        if let Some(role) = &self.role {
            aws.insert("role".into(), json!(role));
        }
        if let Some(external_id) = &self.external_id {
            aws.insert("externalID".into(), json!(external_id));
        }
        if !self.session_tags.is_empty() {
            aws.insert("sessionTags".into(), json!(self.session_tags));
        }
        if let Some(auth) = &self.auth {
            aws.insert("auth".into(), auth.clone());
        }
        json!({ "aws": aws })
    }
}

impl Manifest for Store {
    fn to_value(&self) -> Value {
        let mut spec = Map::new();
        if let Some(class) = &self.controller {
            spec.insert("controller".into(), json!(class));
        }
        if let Some(seconds) = self.refresh_interval {
            spec.insert("refreshInterval".into(), json!(seconds));
        }
        if !self.conditions.is_empty() {
            spec.insert("conditions".into(), json!(self.conditions));
        }
        spec.insert(
            "provider".into(),
            self.provider.clone().unwrap_or_else(|| self.aws()),
        );
        json!({
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {"name": self.name},
            "spec": spec,
        })
    }
}
