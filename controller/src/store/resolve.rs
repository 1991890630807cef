//! Resolving an ExternalSecret's store, which namespaces may use it, and the credentials it
//! names.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::{Api, Client, ResourceExt};

use crate::api::secret_store::{
    AwsAuth, AwsJwtAuth, AwsProvider, AwsSecretRefAuth, SecretKeySelector, StoreSpec,
};
use crate::api::{ClusterSecretStore, ExternalSecret, SecretStore};
use crate::aws::credentials::{BaseCredentials, RoleToAssume, StaticKeys, StoreAuth, WebIdentity};
use crate::cache::Caches;
use crate::cache::namespaces::read_labels;
pub use crate::store::conditions::NamespaceConditions;
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

/// The store an ExternalSecret uses, read from the store cache or the API.
#[derive(Clone)]
pub struct ResolvedStore {
    pub kind: StoreKind,
    pub name: String,
    pub spec: StoreSpec,
    /// Namespace labels, credentials Secrets and ServiceAccounts are read through it when set.
    cache: Option<Caches>,
    ambient_credentials: bool,
}

impl std::fmt::Debug for ResolvedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedStore")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// ESO's refusal, word for word.
const ANOTHER_NAMESPACE: &str = "namespace should either be empty or match the namespace of the SecretStore for a namespaced SecretStore";

impl ResolvedStore {
    pub fn new(kind: StoreKind, name: impl Into<String>, spec: StoreSpec) -> Self {
        ResolvedStore {
            kind,
            name: name.into(),
            spec,
            cache: None,
            ambient_credentials: true,
        }
    }

    /// Whether a namespaced SecretStore without `auth` may use the controller's own AWS
    /// identity (`--namespaced-store-ambient-credentials`; ClusterSecretStores always may).
    pub fn allowing_ambient_credentials(mut self, allowed: bool) -> Self {
        self.ambient_credentials = allowed;
        self
    }

    /// Reads what the store needs (Namespace labels, Secrets, ServiceAccounts) through `cache`.
    pub fn with_cache(mut self, cache: &Caches) -> Self {
        self.cache = Some(cache.clone());
        self
    }

    /// Fetches the store named by `es.spec.secretStoreRef`.
    /// Reads the store from `cache` when it has it (no API call), else from the API.
    pub async fn get(client: &Client, cache: &Caches, es: &ExternalSecret) -> Result<Self> {
        let reference = es
            .spec
            .secret_store_ref
            .as_ref()
            .ok_or_else(|| Error::Misconfigured("spec.secretStoreRef is required".into()))?;
        let kind = match reference.kind.as_deref() {
            None | Some("") | Some("SecretStore") => StoreKind::SecretStore,
            Some("ClusterSecretStore") => StoreKind::ClusterSecretStore,
            Some(other) => {
                return Err(Error::Misconfigured(format!(
                    "spec.secretStoreRef.kind {other:?} is not SecretStore or ClusterSecretStore"
                )));
            }
        };
        let name = reference.name.clone();
        // A SecretStore is only ever looked up in the ExternalSecret's own namespace: that is
        // what keeps namespace B from using namespace A's store and credentials.
        let namespace = es.namespace().unwrap_or_default();
        if let Some(spec) = cache.store_spec(kind, &namespace, &name) {
            return Ok(ResolvedStore::new(kind, name, spec).with_cache(cache));
        }
        let missing = || Error::NotFound(format!("{} {name:?} not found", kind.as_str()));
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
        Ok(ResolvedStore::new(kind, name, spec).with_cache(cache))
    }

    /// Whether this controller serves the store: with no class, stores without
    /// `spec.controller`; with a class, exactly the stores that name it.
    pub fn is_served_by(&self, controller_class: Option<&str>) -> bool {
        let store_class = self.spec.controller.as_deref().filter(|c| !c.is_empty());
        store_class == controller_class.filter(|c| !c.is_empty())
    }

    /// Whether an ExternalSecret in `namespace` may use this store, as ESO decides it. A
    /// ClusterSecretStore with `conditions` allows a namespace that any condition matches (by
    /// name, by a label selector on the Namespace, or by a regular expression on its name);
    /// other stores allow all namespaces (a SecretStore is only ever found from its own).
    pub async fn check_namespace_allowed(&self, client: &Client, namespace: &str) -> Result<()> {
        if self.kind != StoreKind::ClusterSecretStore || self.spec.conditions.is_empty() {
            return Ok(());
        }
        let conditions = NamespaceConditions::parse(&self.spec.conditions)
            .map_err(|e| Error::Misconfigured(format!("{}: {e}", self.describe())))?;
        if conditions.allows_by_name(namespace) {
            return Ok(());
        }
        if conditions.has_selectors() {
            let labels = match &self.cache {
                Some(cache) => cache.namespaces.labels(namespace).await?,
                None => read_labels(client, namespace).await?,
            };
            if conditions.allows_by_labels(&labels) {
                return Ok(());
            }
        }
        Err(Error::Misconfigured(format!(
            "using cluster store {:?} is not allowed from namespace {namespace:?}: denied by spec.condition",
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
        let aws = provider.aws.as_ref().ok_or_else(|| {
            Error::Misconfigured(format!("{} has no spec.provider.aws", self.describe()))
        })?;
        if aws.service != "SecretsManager" {
            return Err(Error::Unsupported(format!(
                "{}: spec.provider.aws.service {:?} (only SecretsManager is served)",
                self.describe(),
                aws.service
            )));
        }
        if aws.region.is_empty() {
            return Err(Error::Misconfigured(format!(
                "{}: spec.provider.aws.region is empty",
                self.describe()
            )));
        }
        Ok(aws)
    }

    /// How to authenticate for `es`: see [`ResolvedStore::auth_in`].
    pub async fn auth(&self, client: &Client, es: &ExternalSecret) -> Result<StoreAuth> {
        self.auth_in(client, &es.namespace().unwrap_or_default())
            .await
    }

    /// How to authenticate for an ExternalSecret in `namespace`: the base credentials (IRSA for
    /// a ServiceAccount, static keys from the Secrets the store names, or the SDK's default
    /// chain, in ESO's order of precedence), then the roles to assume on top of them.
    /// A SecretStore reads only objects of `namespace` (its own); a ClusterSecretStore reads
    /// the namespaces its references name, else `namespace` (ESO's "referent" auth).
    pub async fn auth_in(&self, client: &Client, namespace: &str) -> Result<StoreAuth> {
        let aws = self.aws()?;
        let base = match aws.auth.as_ref() {
            Some(AwsAuth { jwt: Some(jwt), .. }) => {
                self.web_identity(client, jwt, namespace).await?
            }
            Some(AwsAuth {
                secret_ref: Some(secret_ref),
                ..
            }) => BaseCredentials::Static(self.static_keys(client, secret_ref, namespace).await?),
            _ if self.kind == StoreKind::SecretStore && !self.ambient_credentials => {
                return Err(Error::Misconfigured(format!(
                    "{}: spec.provider.aws.auth is required: this controller does not lend its own AWS identity to namespaced SecretStores (--namespaced-store-ambient-credentials=false); use auth.secretRef or auth.jwt, or a ClusterSecretStore",
                    self.describe()
                )));
            }
            _ => BaseCredentials::DefaultChain,
        };
        let roles = role_chain(aws, self.kind, &self.name, namespace)
            .map_err(|e| Error::Misconfigured(format!("{}: {e}", self.describe())))?;
        Ok(StoreAuth { base, roles })
    }

    /// Whether a ClusterSecretStore reads its credentials from the ExternalSecret's namespace
    /// (a reference without `namespace`), so that they can only be checked per ExternalSecret.
    pub fn is_referent(&self) -> bool {
        if self.kind != StoreKind::ClusterSecretStore {
            return false;
        }
        let Some(auth) = self
            .spec
            .provider
            .aws
            .as_ref()
            .and_then(|a| a.auth.as_ref())
        else {
            return false;
        };
        if let Some(jwt) = &auth.jwt {
            return jwt
                .service_account_ref
                .as_ref()
                .is_some_and(|sa| sa.namespace.is_none());
        }
        auth.secret_ref.as_ref().is_some_and(|r| {
            r.access_key_id_secret_ref.namespace.is_none()
                || r.secret_access_key_secret_ref.namespace.is_none()
                || r.session_token_secret_ref
                    .as_ref()
                    .is_some_and(|t| t.namespace.is_none())
        })
    }

    /// The namespace a reference reads from, or ESO's refusal for a SecretStore naming another.
    fn reference_namespace<'a>(
        &self,
        named: Option<&'a str>,
        es_namespace: &'a str,
        at: &str,
    ) -> Result<&'a str> {
        match (self.kind, named) {
            (StoreKind::ClusterSecretStore, Some(namespace)) => Ok(namespace),
            (StoreKind::SecretStore, Some(namespace)) if namespace != es_namespace => {
                Err(Error::Misconfigured(format!(
                    "{}: {at}.namespace {namespace:?}: {ANOTHER_NAMESPACE}",
                    self.describe()
                )))
            }
            _ => Ok(es_namespace),
        }
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
        let selector = jwt.service_account_ref.as_ref().ok_or_else(|| {
            Error::Misconfigured(format!("{}: {at} is required", self.describe()))
        })?;
        let namespace =
            self.reference_namespace(selector.namespace.as_deref(), es_namespace, at)?;
        let name = &selector.name;
        let account = self
            .service_account(client, namespace, name)
            .await?
            .ok_or_else(|| {
                Error::CredentialsUnavailable(format!(
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
            Error::Misconfigured(format!(
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
        let namespace =
            self.reference_namespace(selector.namespace.as_deref(), es_namespace, &at)?;
        let secret = self
            .secret(client, namespace, &selector.name)
            .await?
            .ok_or_else(|| {
                Error::CredentialsUnavailable(format!(
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
                Error::NotFound(format!(
                    "{}: {at}: Secret {namespace}/{} has no key {:?}",
                    self.describe(),
                    selector.name,
                    selector.key
                ))
            })?;
        String::from_utf8(bytes.0.clone()).map_err(|_| {
            Error::Misconfigured(format!(
                "{}: {at}: key {:?} of Secret {namespace}/{} is not UTF-8",
                self.describe(),
                selector.key,
                selector.name
            ))
        })
    }

    async fn secret(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Secret>>> {
        let action = || format!("reading credentials Secret {namespace}/{name}");
        match &self.cache {
            Some(cache) => cache.secrets.get(namespace, name).await,
            None => Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map(|s| s.map(Arc::new)),
        }
        .map_err(Error::kube(action()))
    }

    async fn service_account(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ServiceAccount>>> {
        let action = || format!("reading ServiceAccount {namespace}/{name}");
        match &self.cache {
            Some(cache) => cache.service_accounts.get(namespace, name).await,
            None => Api::<ServiceAccount>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map(|s| s.map(Arc::new)),
        }
        .map_err(Error::kube(action()))
    }
}

/// The roles to assume, in ESO's order: each `additionalRoles` entry in turn on top of the
/// base credentials, then `role`, the only one assumed with `externalID` and session tags.
/// `sessionTagsPolicy` Simple or Custom replaces `sessionTags` with `esoNamespace`,
/// `esoStoreName` and `esoStoreKind` (plus `customSessionTags` for Custom), as ESO does.
pub fn role_chain(
    aws: &AwsProvider,
    kind: StoreKind,
    store_name: &str,
    namespace: &str,
) -> Result<Vec<RoleToAssume>, String> {
    let session_tags: Vec<(String, String)> = match aws.session_tags_policy.as_deref() {
        None | Some("") | Some("None") => aws
            .session_tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect(),
        Some(policy @ ("Simple" | "Custom")) => {
            let mut tags = BTreeMap::new();
            if policy == "Custom" {
                tags.extend(
                    aws.custom_session_tags
                        .iter()
                        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
            }
            tags.insert("esoNamespace".into(), namespace.to_owned());
            tags.insert("esoStoreName".into(), store_name.to_owned());
            tags.insert("esoStoreKind".into(), kind.as_str().to_owned());
            tags.into_iter().collect()
        }
        Some(other) => {
            return Err(format!(
                "spec.provider.aws.sessionTagsPolicy {other:?} is not None, Simple or Custom"
            ));
        }
    };
    let mut roles: Vec<RoleToAssume> = aws
        .additional_roles
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| RoleToAssume {
            role_arn: r.clone(),
            external_id: None,
            session_tags: Vec::new(),
            transitive_tag_keys: Vec::new(),
        })
        .collect();
    if let Some(primary) = aws.role.as_deref().filter(|r| !r.is_empty()) {
        roles.push(RoleToAssume {
            role_arn: primary.to_owned(),
            external_id: aws.external_id.clone().filter(|id| !id.is_empty()),
            transitive_tag_keys: aws.transitive_tag_keys.clone(),
            session_tags,
        });
    }
    Ok(roles)
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
