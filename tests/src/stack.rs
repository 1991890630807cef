//! Finding the local stack and connecting to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aws_config::SdkConfig;
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
        secret_bridge::aws::emulator_config(
            &env["AWS_ENDPOINT_URL"],
            region,
            &env["AWS_ACCESS_KEY_ID"],
            &env["AWS_SECRET_ACCESS_KEY"],
        )
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
        let path = secret_bridge::aws::local_stack_env_path(&workspace_root());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the local stack is not up ({}: {e}). Start it with `scripts/stack up`, or run all tests with `scripts/test`.",
                path.display()
            )
        });
        let env = secret_bridge::aws::parse_env_file(&text);
        for key in ["KUBECONFIG", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            assert!(env.contains_key(key), "{} lacks {key}; restart the stack with `scripts/stack up`", path.display());
        }
        env
    })
}
