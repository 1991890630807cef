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

/// Reads the `export KEY=value` lines of the stack's env file. `scripts/stack` writes each
/// value with bash's `printf %q`, so a value may be quoted ('…', "…", $'…') or hold
/// backslash escapes; this is the one reader of that file.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            if key.is_empty() || key.starts_with('#') {
                return None;
            }
            Some((key.to_owned(), unquote(value)))
        })
        .collect()
}

/// One shell word without its quoting, as bash would read it.
fn unquote(word: &str) -> String {
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => out.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            out.extend(chars.next());
                        }
                        c => out.push(c),
                    }
                }
            }
            '$' if chars.peek() == Some(&'\'') => {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\'' => break,
                        '\\' => match chars.next() {
                            Some('n') => out.push('\n'),
                            Some('t') => out.push('\t'),
                            Some('r') => out.push('\r'),
                            Some('e' | 'E') => out.push('\u{1b}'),
                            Some(other) => out.push(other),
                            None => {}
                        },
                        c => out.push(c),
                    }
                }
            }
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_printf_q_writes() {
        let env = parse_env_file(
            "# written by scripts/stack up; source it\n\
             export KUBECONFIG=/work/target/stack/kubeconfig\n\
             export AWS_REGION=us-east-1\n\
             export SPACED=/tmp/a\\ dir/kubectl\n\
             export TABBED=$'a\\tb'\n\
             export SINGLE='x y'\n\
             export DOUBLE=\"say \\\"hi\\\"\"\n\
             export EMPTY=''\n\
             PLAIN=value=with=equals\n",
        );
        assert_eq!(env["KUBECONFIG"], "/work/target/stack/kubeconfig");
        assert_eq!(env["AWS_REGION"], "us-east-1");
        assert_eq!(env["SPACED"], "/tmp/a dir/kubectl");
        assert_eq!(env["TABBED"], "a\tb");
        assert_eq!(env["SINGLE"], "x y");
        assert_eq!(env["DOUBLE"], "say \"hi\"");
        assert_eq!(env["EMPTY"], "");
        assert_eq!(env["PLAIN"], "value=with=equals");
        assert_eq!(env.len(), 8);
    }
}
