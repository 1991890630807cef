//! A burst fixture: one tenant with N ExternalSecrets (one AWS secret each, `refreshInterval:
//! 1h`, so only events and restarts update them), an event queue, rounds that rotate every
//! secret and publish its `Secret Label Updated` event, and a count of the Secrets that hold
//! their round's value. Everything it creates is deleted by [`Burst::cleanup`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::controller::ControllerProcess;
use secret_bridge_tests::manifest::Manifest;
use secret_bridge_tests::{Stack, Tenant, unique};
use serde_json::json;

/// How many AWS calls a round keeps in flight.
const PARALLEL: usize = 8;

pub struct Burst {
    pub stack: Stack,
    pub aws: Aws,
    pub tenant: Tenant,
    pub bus: String,
    pub queue: String,
    pub dlq: Option<String>,
    queue_name: String,
    names: Vec<String>,
    /// In every value and in nothing else: a log or status holding it leaked a value.
    pub value_token: String,
    logs: std::sync::Mutex<Vec<std::path::PathBuf>>,
}

impl Burst {
    /// A tenant with `n` AWS secrets at round 0 and their ExternalSecrets (applied, no
    /// controller yet), and an event queue with visibility timeout `visibility_s`, with a DLQ
    /// after `max_receive` receives when given.
    pub async fn new(prefix: &str, n: usize, visibility_s: u32, max_receive: Option<u32>) -> Burst {
        let stack = Stack::connect().await;
        let aws = Aws::new(&stack.aws);
        let tenant = Tenant::new(&stack, prefix, "us-east-1").await;
        let queue_name = unique(prefix);
        let bus = format!("{queue_name}-bus");
        let dlq = match max_receive {
            Some(_) => Some(aws.plain_queue(&format!("{queue_name}-dlq")).await),
            None => None,
        };
        let redrive = dlq.as_deref().zip(max_receive);
        let queue = aws
            .event_queue(&queue_name, &bus, redrive, visibility_s)
            .await;
        let burst = Burst {
            names: (0..n).map(|i| format!("{queue_name}-{i}")).collect(),
            value_token: unique("leak"),
            stack,
            aws,
            tenant,
            bus,
            queue,
            dlq,
            queue_name,
            logs: Default::default(),
        };
        let b = &burst;
        b.each(|i| async move {
            let name = &b.names[i];
            b.aws.upsert_secret(name, &b.secret_json(i, 0)).await;
            b.tenant
                .external_secret(&es_name(i))
                .refresh_interval("1h")
                .extract(name)
                .apply(&b.stack.kube, &b.tenant.namespace)
                .await;
        })
        .await;
        burst
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The AWS secret behind ExternalSecret `es-<i>`.
    pub fn secret_name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The value secret `i` holds in `round` (under the key `v`).
    pub fn value(&self, i: usize, round: u32) -> String {
        format!("{}-{i}-r{round}", self.value_token)
    }

    fn secret_json(&self, i: usize, round: u32) -> String {
        json!({"v": self.value(i, round)}).to_string()
    }

    /// A controller serving the tenant from the burst's queue, logging to
    /// `target/test-logs/<namespace>-<log_suffix>.log`, with `extra` arguments.
    pub fn start_controller(&self, log_suffix: &str, extra: &[&str]) -> ControllerProcess {
        self.start_controller_with_env(log_suffix, extra, &[])
    }

    pub fn start_controller_with_env(
        &self,
        log_suffix: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ControllerProcess {
        let mut args = vec![
            "--controller-class",
            &self.tenant.class,
            "--queue-url",
            &self.queue,
        ];
        args.extend_from_slice(extra);
        let name = format!("{}-{log_suffix}", self.tenant.namespace);
        let controller = ControllerProcess::start_with_env(&self.stack, &name, &args, env);
        self.logs.lock().unwrap().push(controller.log_path.clone());
        controller
    }

    /// Rotates every secret to its `round` value and publishes the event of each rotation.
    pub async fn publish_round(&self, round: u32) {
        self.publish(round, 0..self.len()).await;
    }

    /// Rotates the secrets `secrets` to their `round` value and publishes their events.
    pub async fn publish(&self, round: u32, secrets: Range<usize>) {
        self.each_in(secrets, |i| async move {
            let name = &self.names[i];
            let written = self.aws.rotate(name, &self.secret_json(i, round)).await;
            self.aws
                .publish_label_updated(&self.bus, name, &written)
                .await;
        })
        .await;
    }

    /// How many Secrets `i` hold their `rounds[i]` value.
    pub async fn arrived_rounds(&self, rounds: &[u32]) -> usize {
        let Ok(secrets) =
            Api::<Secret>::namespaced(self.stack.kube.clone(), &self.tenant.namespace)
                .list(&ListParams::default())
                .await
        else {
            return 0;
        };
        let values: BTreeMap<String, String> = secrets
            .items
            .into_iter()
            .filter_map(|s| {
                let value = s.data?.remove("v")?;
                Some((
                    s.metadata.name?,
                    String::from_utf8_lossy(&value.0).into_owned(),
                ))
            })
            .collect();
        (0..self.len())
            .filter(|i| values.get(&es_name(*i)) == Some(&self.value(*i, rounds[*i])))
            .count()
    }

    /// Waits until every Secret holds its `round` value, or `timeout`; returns how many do.
    pub async fn wait_round(&self, round: u32, timeout: Duration) -> usize {
        self.wait_rounds(&vec![round; self.len()], timeout).await
    }

    /// Waits until every Secret `i` holds its `rounds[i]` value, or `timeout`; returns how
    /// many do.
    pub async fn wait_rounds(&self, rounds: &[u32], timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            let arrived = self.arrived_rounds(rounds).await;
            if arrived == self.len() || start.elapsed() > timeout {
                return arrived;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Panics if the value token appears in any log of the burst's controllers.
    pub fn assert_logs_hide_values(&self) {
        for log in self.logs.lock().unwrap().iter() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assert!(
                !text.contains(&self.value_token),
                "a secret value appears in the controller log {}",
                log.display()
            );
        }
    }

    /// Runs `scenario`, then deletes what the burst created even if the scenario panicked.
    pub async fn run(self, scenario: impl AsyncFnOnce(&Burst)) {
        let outcome = AssertUnwindSafe(async { scenario(&self).await })
            .catch_unwind()
            .await;
        self.cleanup().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// Deletes the namespace, the rule, bus and queues, and the AWS secrets.
    async fn cleanup(&self) {
        let _ = Api::<Namespace>::all(self.stack.kube.clone())
            .delete(&self.tenant.namespace, &DeleteParams::default())
            .await;
        let rule = format!("{}-rule", self.queue_name);
        let events = &self.aws.events;
        let _ = events
            .remove_targets()
            .rule(&rule)
            .event_bus_name(&self.bus)
            .ids("queue")
            .send()
            .await;
        let _ = events
            .delete_rule()
            .name(&rule)
            .event_bus_name(&self.bus)
            .send()
            .await;
        let _ = events.delete_event_bus().name(&self.bus).send().await;
        for queue in std::iter::once(&self.queue).chain(&self.dlq) {
            let _ = self.aws.sqs.delete_queue().queue_url(queue).send().await;
        }
        self.each(|i| async move {
            let _ = self
                .aws
                .secrets
                .delete_secret()
                .secret_id(&self.names[i])
                .force_delete_without_recovery(true)
                .send()
                .await;
        })
        .await;
    }

    /// Runs `f(i)` for every secret, [`PARALLEL`] at a time.
    async fn each<'a, F, Fut>(&'a self, f: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = ()> + 'a,
    {
        self.each_in(0..self.len(), f).await;
    }

    /// Runs `f(i)` for the secrets `secrets`, [`PARALLEL`] at a time.
    async fn each_in<'a, F, Fut>(&'a self, secrets: Range<usize>, f: F)
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = ()> + 'a,
    {
        stream::iter(secrets)
            .map(f)
            .buffer_unordered(PARALLEL)
            .collect::<Vec<()>>()
            .await;
    }
}

/// The ExternalSecret (and Secret) of secret `i`.
pub fn es_name(i: usize) -> String {
    format!("es-{i}")
}
