//! AWS SDK plumbing shared by the controller, the Lambda and the tests (feature `aws`; the
//! core crate's domain modules do no network I/O and need none of it): one HTTPS client on
//! rustls/ring, the SDK configuration from the environment or for the local emulator, the
//! code and message of an SDK error, and the local stack's environment file.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The HTTPS client every AWS SDK client uses: rustls on ring, the crypto provider of the
/// Kubernetes client too (no aws-lc to build).
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The SDK's standard configuration (environment, profile, IRSA, instance role…; an
/// `AWS_ENDPOINT_URL` reaches an emulator) with [`https_client`].
pub async fn base_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The configuration for an emulator at `endpoint` with static keys, in `region`.
pub async fn emulator_config(
    endpoint: &str,
    region: &str,
    access_key_id: &str,
    secret_access_key: &str,
) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "local-stack",
        ))
        .load()
        .await
}

/// The service's error code and message of a failed call, or `RequestFailed` and the
/// transport error when the service never answered.
pub fn error_parts<E, R>(error: &SdkError<E, R>) -> (String, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match error {
        SdkError::ServiceError(service) => (
            service.err().code().unwrap_or("Unknown").to_owned(),
            service.err().message().unwrap_or_default().to_owned(),
        ),
        other => (
            "RequestFailed".to_owned(),
            DisplayErrorContext(other).to_string(),
        ),
    }
}

/// Where the local stack (`scripts/stack`) writes its environment file: `$STACK_DIR/env`,
/// by default `<workspace>/target/stack/env`.
pub fn local_stack_env_path(workspace: &Path) -> PathBuf {
    std::env::var_os("STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target/stack"))
        .join("env")
}

/// Reads `export KEY=value` lines (values optionally single- or double-quoted), as
/// `scripts/stack` writes them.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            if key.is_empty() || key.starts_with('#') {
                return None;
            }
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(value);
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_are_read_as_the_stack_writes_them() {
        let env = parse_env_file(
            "# comment\nexport A=1\nexport B='two words'\nC=\"x\"\nexport D=it's\n\n=bad\n",
        );
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "two words");
        assert_eq!(env["C"], "x");
        assert_eq!(env["D"], "it's");
        assert_eq!(env.len(), 4);
    }
}
