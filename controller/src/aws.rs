//! AWS Secrets Manager access: a narrow trait ([`SecretsSource`]) that the sync logic depends on,
//! its implementation on the AWS SDK, and a cache of SDK clients per store and credentials.
//!
//! Endpoints come from the SDK's standard configuration (`AWS_ENDPOINT_URL` and friends), so the
//! same code reaches AWS or a local emulator.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_secretsmanager::config::Region;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Which version of a secret to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionSelector {
    Stage(String),
    Id(String),
}

impl VersionSelector {
    /// ESO's `remoteRef.version`: empty means `AWSCURRENT`, `uuid/<id>` a VersionId, else a stage.
    pub fn from_remote_ref(version: Option<&str>) -> Self {
        match version.filter(|v| !v.is_empty()) {
            None => VersionSelector::Stage("AWSCURRENT".into()),
            Some(v) => match v.strip_prefix("uuid/") {
                Some(id) => VersionSelector::Id(id.into()),
                None => VersionSelector::Stage(v.into()),
            },
        }
    }
}

/// A secret's value. Its `Debug` never shows the value.
#[derive(Clone, PartialEq)]
pub struct SecretValue {
    pub name: String,
    pub arn: String,
    pub version_id: String,
    pub string: Option<String>,
    pub binary: Option<Vec<u8>>,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("name", &self.name)
            .field("arn", &self.arn)
            .field("version_id", &self.version_id)
            .field("string", &self.string.as_ref().map(|_| "<redacted>"))
            .field("binary", &self.binary.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An AWS call that failed: the service's error code and message (never a secret value).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} {secret:?}: {code}: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub secret: String,
    pub code: String,
    pub message: String,
}

impl AwsError {
    fn from_sdk<E, R>(operation: &'static str, secret: &str, error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let (code, message) = match &error {
            SdkError::ServiceError(service) => (
                service.err().code().unwrap_or("Unknown").to_owned(),
                service.err().message().unwrap_or_default().to_owned(),
            ),
            other => (
                "RequestFailed".to_owned(),
                DisplayErrorContext(other).to_string(),
            ),
        };
        AwsError {
            operation,
            secret: secret.to_owned(),
            code,
            message,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code == "ResourceNotFoundException"
    }

    /// The secret does not exist, or is scheduled for deletion (AWS refuses reads of it with
    /// `InvalidRequestException`).
    pub fn is_deleted(&self) -> bool {
        let message = self.message.to_lowercase();
        let scheduled = self.code == "InvalidRequestException"
            && (message.contains("deleted") || message.contains("marked for deletion"));
        self.is_not_found() || scheduled
    }
}

/// What the sync logic needs from Secrets Manager.
pub trait SecretsSource: Send + Sync {
    fn get_secret_value(
        &self,
        key: &str,
        version: &VersionSelector,
    ) -> impl Future<Output = Result<SecretValue, AwsError>> + Send;
}

impl SecretsSource for aws_sdk_secretsmanager::Client {
    async fn get_secret_value(
        &self,
        key: &str,
        version: &VersionSelector,
    ) -> Result<SecretValue, AwsError> {
        let request = self.get_secret_value().secret_id(key);
        let request = match version {
            VersionSelector::Stage(stage) => request.version_stage(stage),
            VersionSelector::Id(id) => request.version_id(id),
        };
        let output = request
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetSecretValue", key, e))?;
        Ok(SecretValue {
            name: output.name.unwrap_or_default(),
            arn: output.arn.unwrap_or_default(),
            version_id: output.version_id.unwrap_or_default(),
            string: output.secret_string,
            binary: output.secret_binary.map(|b| b.into_inner()),
        })
    }
}

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

/// How a store authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoreAuth {
    Static(StaticKeys),
    /// The SDK's default chain (environment, web identity, container, instance profile).
    DefaultChain,
}

/// Builds Secrets Manager clients from one base configuration, cached per (region, auth).
pub struct ClientFactory {
    base: SdkConfig,
    cache: Mutex<HashMap<u64, aws_sdk_secretsmanager::Client>>,
}

impl ClientFactory {
    pub fn new(base: SdkConfig) -> Self {
        ClientFactory {
            base,
            cache: Mutex::default(),
        }
    }

    pub fn secrets_manager(
        &self,
        region: &str,
        auth: &StoreAuth,
    ) -> aws_sdk_secretsmanager::Client {
        let mut hasher = DefaultHasher::new();
        (region, auth).hash(&mut hasher);
        let key = hasher.finish();
        let mut cache = self.cache.lock().expect("client cache lock");
        cache
            .entry(key)
            .or_insert_with(|| {
                let mut config = aws_sdk_secretsmanager::config::Builder::from(&self.base)
                    .region(Region::new(region.to_owned()));
                if let StoreAuth::Static(keys) = auth {
                    config = config.credentials_provider(Credentials::new(
                        &keys.access_key_id,
                        &keys.secret_access_key,
                        keys.session_token.clone(),
                        None,
                        "secret-bridge-store",
                    ));
                }
                aws_sdk_secretsmanager::Client::from_conf(config.build())
            })
            .clone()
    }
}

/// The process's base AWS configuration: the SDK's standard environment and profile settings,
/// with an HTTPS client on rustls/ring (the same crypto provider as the Kubernetes client).
pub async fn base_config() -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_selector_follows_eso() {
        assert_eq!(
            VersionSelector::from_remote_ref(None),
            VersionSelector::Stage("AWSCURRENT".into())
        );
        assert_eq!(
            VersionSelector::from_remote_ref(Some("")),
            VersionSelector::Stage("AWSCURRENT".into())
        );
        assert_eq!(
            VersionSelector::from_remote_ref(Some("AWSPREVIOUS")),
            VersionSelector::Stage("AWSPREVIOUS".into())
        );
        assert_eq!(
            VersionSelector::from_remote_ref(Some("uuid/abc")),
            VersionSelector::Id("abc".into())
        );
    }

    fn aws_error(code: &str, message: &str) -> AwsError {
        AwsError {
            operation: "GetSecretValue",
            secret: "s".into(),
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn deleted_secrets_are_recognized() {
        assert!(aws_error("ResourceNotFoundException", "").is_deleted());
        assert!(
            aws_error(
                "InvalidRequestException",
                "You can't perform this operation on the secret because it was marked for deletion."
            )
            .is_deleted()
        );
        assert!(!aws_error("InvalidRequestException", "bad parameter").is_deleted());
        assert!(!aws_error("ThrottlingException", "Rate exceeded").is_deleted());
    }

    #[test]
    fn only_transient_failures_send_an_event_back() {
        use crate::Error;
        assert!(Error::Aws(aws_error("ThrottlingException", "")).is_transient());
        assert!(Error::Aws(aws_error("RequestFailed", "connection refused")).is_transient());
        assert!(Error::Store("credentials Secret not found".into()).is_transient());
        assert!(!Error::Aws(aws_error("ResourceNotFoundException", "")).is_transient());
        assert!(!Error::Spec("bad".into()).is_transient());
        assert!(!Error::Unsupported("x".into()).is_transient());
    }

    #[test]
    fn debug_output_hides_values_and_keys() {
        let value = SecretValue {
            name: "n".into(),
            arn: "a".into(),
            version_id: "v".into(),
            string: Some("hunter2".into()),
            binary: Some(b"hunter3".to_vec()),
        };
        let keys = StaticKeys {
            access_key_id: "AKIA".into(),
            secret_access_key: "hunter4".into(),
            session_token: Some("hunter5".into()),
        };
        let printed = format!("{value:?} {keys:?}");
        assert!(!printed.contains("hunter"), "{printed}");
    }
}
