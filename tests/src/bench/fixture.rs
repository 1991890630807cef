//! What a bench run creates (a namespace with its store and ExternalSecrets, AWS secrets, an
//! event queue with its bus and rule), and removing all of it again, also after a failure.

use std::sync::{Arc, Mutex};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::{apply_yaml, ensure_namespace, put_secret};
use secret_bridge_tests::{Stack, unique};

/// Requests at once while setting up and tearing down (moto serves one at a time anyway).
const SETUP_CONCURRENCY: usize = 16;

/// Everything created so far; registered *before* each creation so that a half-done setup
/// is removed too.
#[derive(Default)]
struct Created {
    namespaces: Vec<String>,
    /// (queue name, bus): the queue, its rule `<name>-rule` on the bus, and the bus.
    queues: Vec<(String, String)>,
    secrets: Vec<String>,
}

#[derive(Clone, Default)]
pub struct Cleanup(Arc<Mutex<Created>>);

impl Cleanup {
    /// A queue with its bus and a rule that sends it Secrets Manager events, removed by
    /// [`Cleanup::run`]: (queue URL, bus).
    pub async fn event_queue(&self, aws: &Aws) -> (String, String) {
        let name = unique("bench");
        let bus = unique("bench-bus");
        self.0
            .lock()
            .unwrap()
            .queues
            .push((name.clone(), bus.clone()));
        (aws.event_queue(&name, &bus, None, 30).await, bus)
    }

    /// Deletes everything registered; errors are ignored (the thing may not exist yet).
    pub async fn run(&self, stack: &Stack) {
        let created = std::mem::take(&mut *self.0.lock().unwrap());
        let aws = Aws::untracked(&stack.aws);
        let namespaces = kube::Api::<Namespace>::all(stack.kube.clone());
        for namespace in &created.namespaces {
            // The namespace takes its ExternalSecrets, Secrets and store with it.
            let _ = namespaces.delete(namespace, &Default::default()).await;
        }
        for (queue, bus) in &created.queues {
            aws.remove_event_queue_named(queue, bus).await;
        }
        stream::iter(&created.secrets)
            .for_each_concurrent(SETUP_CONCURRENCY, |name| {
                let aws = &aws;
                async move { aws.force_delete_secret(name).await }
            })
            .await;
        println!(
            "cleaned up: {} namespace(s), {} queue(s) with their rules and buses, {} AWS secrets",
            created.namespaces.len(),
            created.queues.len(),
            created.secrets.len()
        );
    }
}

pub struct Fixture {
    pub namespace: String,
    /// AWS secret of ExternalSecret `es<i>` (and of its Secret `es<i>`), by `i`.
    pub keys: Vec<String>,
    /// (queue URL, bus) when the run consumes events.
    pub queue: Option<(String, String)>,
}

impl Fixture {
    /// A namespace with a SecretStore for the controller class of the same name, `n` AWS
    /// secrets `{"v":"initial"}`, and `n` ExternalSecrets reading one each every `interval`.
    pub async fn create(
        stack: &Stack,
        cleanup: &Cleanup,
        mode: &str,
        n: usize,
        interval: &str,
        with_queue: bool,
    ) -> Fixture {
        let kube = &stack.kube;
        let aws = Aws::untracked(&stack.aws);
        let namespace = unique(&format!("bench-{mode}"));
        let keys: Vec<String> = (0..n).map(|i| format!("{namespace}/s{i}")).collect();
        {
            let mut created = cleanup.0.lock().unwrap();
            created.namespaces.push(namespace.clone());
            created.secrets.extend(keys.iter().cloned());
        }
        ensure_namespace(kube, &namespace).await;
        put_secret(
            kube,
            &namespace,
            "aws-keys",
            &[
                ("access-key", &stack.env["AWS_ACCESS_KEY_ID"]),
                ("secret-access-key", &stack.env["AWS_SECRET_ACCESS_KEY"]),
            ],
        )
        .await;
        apply_yaml(
            kube,
            &format!(
                "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata:\n  name: aws\nspec:\n  controller: {namespace}\n  provider:\n    aws:\n      service: SecretsManager\n      region: {}\n      auth:\n        secretRef:\n          accessKeyIDSecretRef: {{name: aws-keys, key: access-key}}\n          secretAccessKeySecretRef: {{name: aws-keys, key: secret-access-key}}\n",
                aws.region
            ),
            &namespace,
        )
        .await;
        stream::iter(&keys)
            .for_each_concurrent(SETUP_CONCURRENCY, |key| {
                let aws = &aws;
                async move {
                    aws.upsert_secret(key, r#"{"v":"initial"}"#).await;
                }
            })
            .await;
        let queue = match with_queue {
            true => Some(cleanup.event_queue(&aws).await),
            false => None,
        };
        stream::iter(keys.iter().enumerate())
            .for_each_concurrent(SETUP_CONCURRENCY, |(i, key)| {
                let namespace = &namespace;
                async move {
                    let yaml = format!(
                        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: es{i}\nspec:\n  refreshInterval: {interval}\n  secretStoreRef: {{name: aws, kind: SecretStore}}\n  dataFrom:\n    - extract: {{key: {key}}}\n"
                    );
                    apply_yaml(kube, &yaml, namespace).await;
                }
            })
            .await;
        Fixture {
            namespace,
            keys,
            queue,
        }
    }

    /// The arguments that make the controller serve this fixture (and consume its queue).
    pub fn controller_args(&self) -> Vec<&str> {
        let mut args = vec!["--controller-class", self.namespace.as_str()];
        if let Some((url, _)) = &self.queue {
            args.extend(["--queue-url", url.as_str()]);
        }
        args
    }
}
