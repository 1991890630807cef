//! Resolving an ExternalSecret's store and the credentials it names.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::core::{Selector, SelectorExt};
use kube::{Api, Client, ResourceExt};

use crate::api::secret_store::{
    AwsAuth, AwsJwtAuth, AwsProvider, AwsSecretRefAuth, SecretKeySelector, StoreSpec,
};
use crate::api::{ClusterSecretStore, ExternalSecret, SecretStore};
use crate::credentials::{BaseCredentials, RoleToAssume, StaticKeys, StoreAuth, WebIdentity};
use crate::stores::StoreCache;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    SecretStore,
    ClusterSecretStore,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::SecretStore => "SecretStore",
            StoreKind::ClusterSecretStore => "ClusterSecretStore",
        }
    }
}

/// The store an ExternalSecret uses, read from the API.
#[derive(Debug, Clone)]
pub struct ResolvedStore {
    pub kind: StoreKind,
    pub name: String,
    pub spec: StoreSpec,
}

impl ResolvedStore {
    /// Fetches the store named by `es.spec.secretStoreRef`.
    /// Reads the store from `cache` when it has it (no API call), else from the API.
    pub async fn get(client: &Client, cache: &StoreCache, es: &ExternalSecret) -> Result<Self> {
        let reference = es
            .spec
            .secret_store_ref
            .as_ref()
            .ok_or_else(|| Error::Spec("spec.secretStoreRef is required".into()))?;
        let kind = match reference.kind.as_deref() {
            None | Some("") | Some("SecretStore") => StoreKind::SecretStore,
            Some("ClusterSecretStore") => StoreKind::ClusterSecretStore,
            Some(other) => {
                return Err(Error::Spec(format!(
                    "spec.secretStoreRef.kind {other:?} is not SecretStore or ClusterSecretStore"
                )));
            }
        };
        let name = reference.name.clone();
        let namespace = es.namespace().unwrap_or_default();
        if let Some(spec) = cache.spec(kind, &namespace, &name) {
            return Ok(ResolvedStore { kind, name, spec });
        }
        let missing = || Error::Store(format!("{} {name:?} not found", kind.as_str()));
        let spec = match kind {
            StoreKind::SecretStore => {
                Api::<SecretStore>::namespaced(client.clone(), &namespace)
                    .get_opt(&name)
                    .await
                    .map_err(Error::kube(format!(
                        "reading SecretStore {namespace}/{name}"
                    )))?
                    .ok_or_else(missing)?
                    .spec
                    .store
            }
            StoreKind::ClusterSecretStore => {
                Api::<ClusterSecretStore>::all(client.clone())
                    .get_opt(&name)
                    .await
                    .map_err(Error::kube(format!("reading ClusterSecretStore {name}")))?
                    .ok_or_else(missing)?
                    .spec
                    .store
            }
        };
        Ok(ResolvedStore { kind, name, spec })
    }

    /// Whether this controller serves the store: with no class, stores without
    /// `spec.controller`; with a class, exactly the stores that name it.
    pub fn is_served_by(&self, controller_class: Option<&str>) -> bool {
        let store_class = self.spec.controller.as_deref().filter(|c| !c.is_empty());
        store_class == controller_class.filter(|c| !c.is_empty())
    }

    /// Whether an ExternalSecret in `namespace` may use this store. A ClusterSecretStore with
    /// `conditions` allows a namespace that any condition matches (by name, by a label selector
    /// on the Namespace, or by a regular expression on its name); other stores allow all
    /// namespaces (a SecretStore is only ever found from its own namespace).
    pub async fn check_namespace_allowed(&self, client: &Client, namespace: &str) -> Result<()> {
        if self.kind != StoreKind::ClusterSecretStore || self.spec.conditions.is_empty() {
            return Ok(());
        }
        let mut labels = None;
        for (i, condition) in self.spec.conditions.iter().enumerate() {
            if condition.namespaces.iter().any(|n| n == namespace) {
                return Ok(());
            }
            for (j, pattern) in condition.namespace_regexes.iter().enumerate() {
                let regex = regex::Regex::new(pattern).map_err(|e| {
                    Error::Spec(format!(
                        "{}: spec.conditions[{i}].namespaceRegexes[{j}] is not a valid regular expression: {e}",
                        self.describe()
                    ))
                })?;
                if regex.is_match(namespace) {
                    return Ok(());
                }
            }
            if let Some(selector) = &condition.namespace_selector {
                let selector = Selector::try_from(selector.clone()).map_err(|e| {
                    Error::Spec(format!(
                        "{}: spec.conditions[{i}].namespaceSelector: {e}",
                        self.describe()
                    ))
                })?;
                if labels.is_none() {
                    labels = Some(namespace_labels(client, namespace).await?);
                }
                if selector.matches(labels.as_ref().expect("just read")) {
                    return Ok(());
                }
            }
        }
        Err(Error::Spec(format!(
            "using cluster store {:?} is not allowed from namespace {namespace:?}: denied by spec.conditions",
            self.name
        )))
    }

    pub fn describe(&self) -> String {
        format!("{} {:?}", self.kind.as_str(), self.name)
    }

    /// The AWS Secrets Manager provider, or why the store cannot be served.
    pub fn aws(&self) -> Result<&AwsProvider> {
        let provider = &self.spec.provider;
        if let Some(other) = provider.other.keys().next() {
            return Err(Error::Unsupported(format!(
                "{}: spec.provider.{other} (only aws is served)",
                self.describe()
            )));
        }
        let aws = provider
            .aws
            .as_ref()
            .ok_or_else(|| Error::Spec(format!("{} has no spec.provider.aws", self.describe())))?;
        if aws.service != "SecretsManager" {
            return Err(Error::Unsupported(format!(
                "{}: spec.provider.aws.service {:?} (only SecretsManager is served)",
                self.describe(),
                aws.service
            )));
        }
        if aws.region.is_empty() {
            return Err(Error::Spec(format!(
                "{}: spec.provider.aws.region is empty",
                self.describe()
            )));
        }
        Ok(aws)
    }

    /// How to authenticate for `es`: the base credentials (static keys from the Secrets the
    /// store names, IRSA for a ServiceAccount, or the default chain), then the roles to assume.
    pub async fn auth(&self, client: &Client, es: &ExternalSecret) -> Result<StoreAuth> {
        let aws = self.aws()?;
        let es_namespace = es.namespace().unwrap_or_default();
        let base = match aws.auth.as_ref() {
            Some(AwsAuth { jwt: Some(jwt), .. }) => {
                self.web_identity(client, jwt, &es_namespace).await?
            }
            Some(AwsAuth {
                secret_ref: Some(secret_ref),
                ..
            }) => {
                BaseCredentials::Static(self.static_keys(client, secret_ref, &es_namespace).await?)
            }
            _ => BaseCredentials::DefaultChain,
        };
        let role = |role_arn: &str, primary: bool| RoleToAssume {
            role_arn: role_arn.to_owned(),
            external_id: primary
                .then(|| aws.external_id.clone())
                .flatten()
                .filter(|id| !id.is_empty()),
            session_tags: if primary {
                aws.session_tags
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect()
            } else {
                Vec::new()
            },
            transitive_tag_keys: if primary {
                aws.transitive_tag_keys.clone()
            } else {
                Vec::new()
            },
        };
        // ESO's order: each additional role in turn, then `role` with the session options.
        let mut roles: Vec<_> = aws
            .additional_roles
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| role(r, false))
            .collect();
        if let Some(primary) = aws.role.as_deref().filter(|r| !r.is_empty()) {
            roles.push(role(primary, true));
        }
        Ok(StoreAuth { base, roles })
    }

    /// IRSA as ESO does it: the ServiceAccount's `eks.amazonaws.com/role-arn` annotation names
    /// the role, `eks.amazonaws.com/audience` (default `sts.amazonaws.com`) plus
    /// `serviceAccountRef.audiences` the token's audiences.
    async fn web_identity(
        &self,
        client: &Client,
        jwt: &AwsJwtAuth,
        es_namespace: &str,
    ) -> Result<BaseCredentials> {
        let at = "spec.provider.aws.auth.jwt.serviceAccountRef";
        let selector = jwt
            .service_account_ref
            .as_ref()
            .ok_or_else(|| Error::Spec(format!("{}: {at} is required", self.describe())))?;
        let namespace = match (self.kind, selector.namespace.as_deref()) {
            (StoreKind::ClusterSecretStore, Some(namespace)) => namespace,
            _ => es_namespace,
        };
        let name = &selector.name;
        let account = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(Error::kube(format!(
                "reading ServiceAccount {namespace}/{name}"
            )))?
            .ok_or_else(|| {
                Error::Store(format!(
                    "{}: {at}: ServiceAccount {namespace}/{name} not found",
                    self.describe()
                ))
            })?;
        let annotation = |key: &str| {
            account
                .annotations()
                .get(key)
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let role_arn = annotation("eks.amazonaws.com/role-arn").ok_or_else(|| {
            Error::Spec(format!(
                "{}: an IAM role must be associated with ServiceAccount {namespace}/{name} (annotation eks.amazonaws.com/role-arn)",
                self.describe()
            ))
        })?;
        let mut audiences = vec![
            annotation("eks.amazonaws.com/audience").unwrap_or_else(|| "sts.amazonaws.com".into()),
        ];
        audiences.extend(selector.audiences.iter().cloned());
        Ok(BaseCredentials::WebIdentity(WebIdentity {
            namespace: namespace.to_owned(),
            service_account: name.clone(),
            role_arn,
            audiences,
        }))
    }

    async fn static_keys(
        &self,
        client: &Client,
        secret_ref: &AwsSecretRefAuth,
        ns: &str,
    ) -> Result<StaticKeys> {
        let at = "spec.provider.aws.auth.secretRef";
        Ok(StaticKeys {
            access_key_id: self
                .read_key(
                    client,
                    &secret_ref.access_key_id_secret_ref,
                    ns,
                    format!("{at}.accessKeyIDSecretRef"),
                )
                .await?,
            secret_access_key: self
                .read_key(
                    client,
                    &secret_ref.secret_access_key_secret_ref,
                    ns,
                    format!("{at}.secretAccessKeySecretRef"),
                )
                .await?,
            session_token: match &secret_ref.session_token_secret_ref {
                Some(selector) => Some(
                    self.read_key(client, selector, ns, format!("{at}.sessionTokenSecretRef"))
                        .await?,
                ),
                None => None,
            },
        })
    }

    async fn read_key(
        &self,
        client: &Client,
        selector: &SecretKeySelector,
        es_namespace: &str,
        at: String,
    ) -> Result<String> {
        let namespace = match (self.kind, selector.namespace.as_deref()) {
            (StoreKind::ClusterSecretStore, Some(namespace)) => namespace,
            (StoreKind::SecretStore, Some(namespace)) if namespace != es_namespace => {
                return Err(Error::Store(format!(
                    "{}: {at} names namespace {namespace:?}, but a SecretStore may only read Secrets of its own namespace {es_namespace:?}",
                    self.describe()
                )));
            }
            _ => es_namespace,
        };
        let secret = Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(&selector.name)
            .await
            .map_err(Error::kube(format!(
                "reading credentials Secret {namespace}/{}",
                selector.name
            )))?
            .ok_or_else(|| {
                Error::Store(format!(
                    "{}: {at}: Secret {namespace}/{} not found",
                    self.describe(),
                    selector.name
                ))
            })?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|data| data.get(&selector.key))
            .ok_or_else(|| {
                Error::Store(format!(
                    "{}: {at}: Secret {namespace}/{} has no key {:?}",
                    self.describe(),
                    selector.name,
                    selector.key
                ))
            })?;
        String::from_utf8(bytes.0.clone()).map_err(|_| {
            Error::Store(format!(
                "{}: {at}: key {:?} of Secret {namespace}/{} is not UTF-8",
                self.describe(),
                selector.key,
                selector.name
            ))
        })
    }
}

/// A Namespace's labels, with `kubernetes.io/metadata.name` as newer apiservers set it.
async fn namespace_labels(client: &Client, namespace: &str) -> Result<BTreeMap<String, String>> {
    let found = Api::<Namespace>::all(client.clone())
        .get_opt(namespace)
        .await
        .map_err(Error::kube(format!("reading Namespace {namespace}")))?;
    let mut labels = found.map(|n| n.labels().clone()).unwrap_or_default();
    labels
        .entry("kubernetes.io/metadata.name".into())
        .or_insert_with(|| namespace.to_owned());
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(controller: Option<&str>) -> ResolvedStore {
        ResolvedStore {
            kind: StoreKind::ClusterSecretStore,
            name: "s".into(),
            spec: StoreSpec {
                controller: controller.map(Into::into),
                ..Default::default()
            },
        }
    }

    #[test]
    fn controller_class_selects_stores() {
        assert!(store(None).is_served_by(None));
        assert!(store(Some("")).is_served_by(None));
        assert!(!store(Some("blue")).is_served_by(None));
        assert!(store(Some("blue")).is_served_by(Some("blue")));
        assert!(!store(None).is_served_by(Some("blue")));
        assert!(!store(Some("green")).is_served_by(Some("blue")));
    }

    #[test]
    fn other_providers_are_unsupported() {
        let mut s = store(None);
        s.spec
            .provider
            .other
            .insert("vault".into(), serde_json::json!({}));
        assert_eq!(
            s.aws().unwrap_err().to_string(),
            "unsupported field: ClusterSecretStore \"s\": spec.provider.vault (only aws is served)"
        );
    }
}
