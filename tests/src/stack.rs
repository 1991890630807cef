//! Finding the local stack and connecting to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Connections to the running local stack.
#[derive(Clone)]
pub struct Stack {
    pub kube: kube::Client,
    /// AWS configuration for the default region.
    pub aws: SdkConfig,
    pub env: &'static HashMap<String, String>,
}

impl Stack {
    /// Connects to the stack described by `$STACK_DIR/env` (default `target/stack/env`).
    /// Panics with instructions if it is not up.
    pub async fn connect() -> Stack {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let env = stack_env();
        let kubeconfig =
            Kubeconfig::read_from(&env["KUBECONFIG"]).expect("read the stack's kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kubeconfig is valid");
        let kube = kube::Client::try_from(config).expect("kube client");
        let aws = Stack::aws_config_for(env, &env["AWS_REGION"]).await;
        Stack { kube, aws, env }
    }

    /// AWS configuration for another region of the same emulator.
    pub async fn aws_config_for(env: &HashMap<String, String>, region: &str) -> SdkConfig {
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .endpoint_url(&env["AWS_ENDPOINT_URL"])
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new(
                &env["AWS_ACCESS_KEY_ID"],
                &env["AWS_SECRET_ACCESS_KEY"],
                None,
                None,
                "local-stack",
            ))
            .load()
            .await
    }

    /// The environment a process needs to reach the stack (kubeconfig, AWS endpoint and keys).
    pub fn process_env(&self) -> Vec<(String, String)> {
        const KEYS: &[&str] = &[
            "KUBECONFIG",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_EC2_METADATA_DISABLED",
        ];
        KEYS.iter()
            .filter_map(|k| self.env.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect()
    }
}

/// The workspace root (where `target/` and `infra/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn stack_env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = std::env::var_os("STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/stack"))
            .join("env");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the local stack is not up ({}: {e}). Start it with `scripts/stack up`, or run all tests with `scripts/test`.",
                path.display()
            )
        });
        let env = parse_env_file(&text);
        for key in ["KUBECONFIG", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            assert!(env.contains_key(key), "{} lacks {key}; restart the stack with `scripts/stack up`", path.display());
        }
        env
    })
}

/// Reads the `export KEY=value` lines of the stack's env file. `scripts/stack` writes each
/// value with bash's `printf %q`, so a value may be quoted ('…', "…", $'…') or hold
/// backslash escapes; this is the one reader of that file in the test crate.
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
