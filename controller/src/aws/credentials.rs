//! AWS credentials per store and the Secrets Manager clients built from them, cached.
//!
//! Endpoints come from the SDK's standard configuration (`AWS_ENDPOINT_URL` and friends), so the
//! same code reaches AWS or a local emulator.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_secretsmanager::config::Region;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use aws_sdk_sts::types::Tag;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;

use crate::aws::Counted;
use crate::aws::coalesce::{Coalescer, CoalescingSource, Freshness};
use crate::telemetry::aws_calls::AwsCalls;

/// Static credentials read from a store's `auth.secretRef`. `Debug` never shows the keys.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// How a store authenticates: base credentials, then a chain of roles assumed in order
/// (ESO's order: every `additionalRoles` entry, then `role`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreAuth {
    pub base: BaseCredentials,
    pub roles: Vec<RoleToAssume>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BaseCredentials {
    Static(StaticKeys),
    /// The SDK's default chain (environment, web identity, container, instance profile).
    DefaultChain,
    /// IRSA: a token for a ServiceAccount (TokenRequest), exchanged with STS
    /// `AssumeRoleWithWebIdentity` for the role the ServiceAccount's annotation names.
    WebIdentity(WebIdentity),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebIdentity {
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    pub audiences: Vec<String>,
}

/// An STS `AssumeRole` on top of the previous credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleToAssume {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
}

/// The session name in CloudTrail for every role secret-bridge assumes.
const SESSION_NAME: &str = "secret-bridge";

/// Builds Secrets Manager clients from one base configuration, cached per (region, auth).
/// Temporary credentials are cached by the SDK's identity cache of each long-lived client (the
/// Secrets Manager client, and the STS client of each role it assumes through) until shortly
/// before they expire, so a store with roles costs one STS call per role per session, not per
/// read. The SDK's own `AssumeRoleProvider` is not used: it cannot send `TransitiveTagKeys`;
/// nor its web-identity provider, which reads the token from a file instead of TokenRequest.
///
/// One per process, shared by clones: every role is assumed once, whoever asks.
#[derive(Clone)]
pub struct ClientFactory {
    base: SdkConfig,
    kube: kube::Client,
    cache: Arc<Mutex<HashMap<(String, StoreAuth), CachedClient>>>,
    /// Where Secrets Manager calls are counted.
    aws_calls: AwsCalls,
}

struct CachedClient {
    /// Every reconcile's `AWSCURRENT` reads with these credentials, shared and batched.
    coalescer: Arc<Coalescer<Counted<aws_sdk_secretsmanager::Client>>>,
    /// For the store-status check, with the same credentials provider. Kept rather than built
    /// per check: a new client would assume the outermost role again.
    sts: aws_sdk_sts::Client,
    last_used: Instant,
}

/// A client unused this long is dropped (its store changed credentials or is gone).
const UNUSED_CLIENT_LIFETIME: Duration = Duration::from_secs(3 * 3600);

impl ClientFactory {
    pub fn new(base: SdkConfig, kube: kube::Client) -> Self {
        ClientFactory {
            base,
            kube,
            cache: Arc::default(),
            aws_calls: AwsCalls::default(),
        }
    }

    /// Counts every Secrets Manager call in `calls` (the process's metrics).
    pub fn counting_calls_in(mut self, calls: AwsCalls) -> Self {
        self.aws_calls = calls;
        self
    }

    /// What one reconcile reads Secrets Manager through: its `AWSCURRENT` reads are shared
    /// with every other reconcile using the same credentials, and must have started at or
    /// meet `freshness` (see [`crate::aws::coalesce`]).
    pub fn source(
        &self,
        region: &str,
        auth: &StoreAuth,
        freshness: Freshness,
    ) -> CoalescingSource<Counted<aws_sdk_secretsmanager::Client>> {
        CoalescingSource {
            coalescer: self.cached(region, auth, |c| c.coalescer.clone()),
            freshness,
        }
    }

    /// Checks that the store's credentials work: STS `GetCallerIdentity` with them (after every
    /// role of the chain is assumed). It needs no IAM permission, so a least-privilege policy
    /// never fails it; it does not prove Secrets Manager access (reads do that). Returns the
    /// caller's ARN.
    pub async fn verify(&self, region: &str, auth: &StoreAuth) -> Result<String, VerifyError> {
        let sts = self.cached(region, auth, |c| c.sts.clone());
        match sts.get_caller_identity().send().await {
            Ok(identity) => Ok(identity.arn.unwrap_or_default()),
            Err(error) => {
                let message = DisplayErrorContext(&error).to_string();
                // A credentials provider's own failure (a refused AssumeRole) is a dispatch
                // failure too, but neither an I/O error nor a timeout.
                let unreachable = match &error {
                    SdkError::TimeoutError(_) => true,
                    SdkError::DispatchFailure(failure) => failure.is_io() || failure.is_timeout(),
                    _ => false,
                };
                Err(if unreachable {
                    VerifyError::Unreachable(message)
                } else {
                    VerifyError::Rejected(message)
                })
            }
        }
    }

    fn cached<T>(
        &self,
        region: &str,
        auth: &StoreAuth,
        take: impl FnOnce(&CachedClient) -> T,
    ) -> T {
        let mut cache = self.cache.lock().expect("client cache lock");
        let key = (region.to_owned(), auth.clone());
        if !cache.contains_key(&key) {
            cache.retain(|_, c| c.last_used.elapsed() < UNUSED_CLIENT_LIFETIME);
            let region = Region::new(region.to_owned());
            let credentials = self.credentials(&region, auth);
            let config = aws_sdk_secretsmanager::config::Builder::from(&self.base)
                .region(region.clone())
                .credentials_provider(credentials.clone());
            let secrets_manager = aws_sdk_secretsmanager::Client::from_conf(config.build());
            let client = CachedClient {
                coalescer: Coalescer::new(Counted {
                    source: secrets_manager,
                    calls: self.aws_calls.clone(),
                }),
                sts: self.sts(&region, credentials),
                last_used: Instant::now(),
            };
            cache.insert(key.clone(), client);
        }
        let entry = cache.get_mut(&key).expect("just inserted");
        entry.last_used = Instant::now();
        take(entry)
    }

    fn credentials(&self, region: &Region, auth: &StoreAuth) -> SharedCredentialsProvider {
        let mut provider = match &auth.base {
            BaseCredentials::Static(keys) => SharedCredentialsProvider::new(Credentials::new(
                &keys.access_key_id,
                &keys.secret_access_key,
                keys.session_token.clone(),
                None,
                "secret-bridge-store",
            )),
            BaseCredentials::DefaultChain => self
                .base
                .credentials_provider()
                .unwrap_or_else(|| SharedCredentialsProvider::new(NoCredentials)),
            BaseCredentials::WebIdentity(identity) => {
                SharedCredentialsProvider::new(WebIdentityProvider {
                    kube: self.kube.clone(),
                    identity: identity.clone(),
                    // AssumeRoleWithWebIdentity is not signed: the token is the credential.
                    sts: self.sts(region, SharedCredentialsProvider::new(NoCredentials)),
                })
            }
        };
        for role in &auth.roles {
            provider = SharedCredentialsProvider::new(AssumeRoleProvider {
                role: role.clone(),
                sts: self.sts(region, provider),
            });
        }
        provider
    }

    fn sts(&self, region: &Region, credentials: SharedCredentialsProvider) -> aws_sdk_sts::Client {
        let config = aws_sdk_sts::config::Builder::from(&self.base)
            .region(region.clone())
            .credentials_provider(credentials);
        aws_sdk_sts::Client::from_conf(config.build())
    }
}

/// Why a store's credentials could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// AWS answered and refused them (unknown key, bad signature, a role that cannot be assumed).
    #[error("{0}")]
    Rejected(String),
    /// AWS (STS) could not be reached: the credentials may be fine.
    #[error("{0}")]
    Unreachable(String),
}

/// Used where no credentials exist: every AWS call then fails with a clear error.
#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            "no AWS credentials: the store has no auth and the default chain found none",
        )))
    }
}

struct WebIdentityProvider {
    kube: kube::Client,
    identity: WebIdentity,
    sts: aws_sdk_sts::Client,
}

impl fmt::Debug for WebIdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebIdentityProvider")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl WebIdentityProvider {
    async fn fetch(&self) -> provider::Result {
        let WebIdentity {
            namespace,
            service_account,
            role_arn,
            audiences,
        } = &self.identity;
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audiences.clone(),
                expiration_seconds: Some(TOKEN_LIFETIME_SECONDS),
                ..Default::default()
            },
            ..Default::default()
        };
        let token: TokenRequest = Api::<ServiceAccount>::namespaced(self.kube.clone(), namespace)
            .create_subresource("token", service_account, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                CredentialsError::provider_error(format!(
                    "TokenRequest for ServiceAccount {namespace}/{service_account}: {e}"
                ))
            })?;
        let token = token
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                CredentialsError::provider_error(format!(
                    "TokenRequest for ServiceAccount {namespace}/{service_account} returned no token"
                ))
            })?;
        let output = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(role_arn)
            .role_session_name(SESSION_NAME)
            .web_identity_token(token)
            .send()
            .await
            .map_err(|e| {
                CredentialsError::provider_error(format!(
                    "AssumeRoleWithWebIdentity {role_arn} for ServiceAccount {namespace}/{service_account}: {}",
                    DisplayErrorContext(e)
                ))
            })?;
        temporary_credentials(output.credentials, "secret-bridge-web-identity", role_arn)
    }
}

/// Tokens are exchanged at once; a short lifetime keeps a leaked one nearly useless.
const TOKEN_LIFETIME_SECONDS: i64 = 600;

impl ProvideCredentials for WebIdentityProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.fetch())
    }
}

#[derive(Debug)]
struct AssumeRoleProvider {
    role: RoleToAssume,
    sts: aws_sdk_sts::Client,
}

impl AssumeRoleProvider {
    async fn fetch(&self) -> provider::Result {
        let role = &self.role;
        let tags = role
            .session_tags
            .iter()
            .map(|(key, value)| Tag::builder().key(key).value(value).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CredentialsError::invalid_configuration(e.to_string()))?;
        let output = self
            .sts
            .assume_role()
            .role_arn(&role.role_arn)
            .role_session_name(SESSION_NAME)
            .set_external_id(role.external_id.clone())
            .set_tags((!tags.is_empty()).then_some(tags))
            .set_transitive_tag_keys(
                (!role.transitive_tag_keys.is_empty()).then(|| role.transitive_tag_keys.clone()),
            )
            .send()
            .await
            .map_err(|e| {
                CredentialsError::provider_error(format!(
                    "AssumeRole {}: {}",
                    role.role_arn,
                    DisplayErrorContext(e)
                ))
            })?;
        temporary_credentials(
            output.credentials,
            "secret-bridge-assume-role",
            &role.role_arn,
        )
    }
}

impl ProvideCredentials for AssumeRoleProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.fetch())
    }
}

fn temporary_credentials(
    credentials: Option<aws_sdk_sts::types::Credentials>,
    provider_name: &'static str,
    role_arn: &str,
) -> provider::Result {
    let credentials = credentials.ok_or_else(|| {
        CredentialsError::provider_error(format!("STS returned no credentials for {role_arn}"))
    })?;
    let expiry = SystemTime::try_from(credentials.expiration).map_err(|e| {
        CredentialsError::provider_error(format!("STS credentials for {role_arn}: expiry: {e}"))
    })?;
    Ok(Credentials::new(
        credentials.access_key_id,
        credentials.secret_access_key,
        Some(credentials.session_token),
        Some(expiry),
        provider_name,
    ))
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
