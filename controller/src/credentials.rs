//! AWS credentials per store and the Secrets Manager clients built from them, cached.
//!
//! Endpoints come from the SDK's standard configuration (`AWS_ENDPOINT_URL` and friends), so the
//! same code reaches AWS or a local emulator.

use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_secretsmanager::config::Region;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

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
    fn debug_output_hides_keys() {
        let keys = StaticKeys {
            access_key_id: "AKIA".into(),
            secret_access_key: "hunter4".into(),
            session_token: Some("hunter5".into()),
        };
        let printed = format!("{keys:?}");
        assert!(!printed.contains("hunter"), "{printed}");
    }
}
