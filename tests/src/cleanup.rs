//! Leaving the shared stack as the test found it: what a test made (namespaces, event queues
//! with their rule and bus, plain queues, buses, CloudFormation stacks, AWS secrets) is
//! recorded in [`Leftovers`] and removed when its owner ([`crate::Tenant`],
//! [`crate::aws::Aws`], or a test's own `Leftovers`) is dropped, on success and when the test
//! panics. A forgotten rule receives every later event, and the emulator's queues
//! slow down as they grow.
//!
//! `Drop` cannot await, and the test's runtime may be the thread that is dropping (a
//! current-thread `#[tokio::test]`), so its clients' connections cannot be driven from here.
//! The removal runs on its own thread with a fresh runtime and fresh clients, bounded by
//! [`CLEANUP_TIMEOUT`]; "not found" and other errors are ignored (the thing may already be gone).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::SdkConfig;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};

use crate::Stack;
use crate::aws::Aws;

/// How long one owner's cleanup may take before the test goes on without it.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// One thing a test made on the shared stack.
#[derive(Debug)]
enum Leftover {
    /// Deleted without waiting for finalization; it takes its contents with it.
    Namespace(String),
    /// A queue made by [`Aws::event_queue`]: its rule `<name>-rule` and targets on `bus`, the
    /// bus unless it is `default`, and the queue.
    EventQueue {
        region: String,
        name: String,
        bus: String,
    },
    Queue {
        region: String,
        url: String,
    },
    Bus {
        region: String,
        name: String,
    },
    /// Deleted with what it made; not waited for.
    CloudFormationStack {
        region: String,
        name: String,
    },
    /// Force-deleted, without a recovery window.
    Secret {
        region: String,
        name: String,
    },
}

/// What an owner made, removed when it is dropped.
#[derive(Debug, Default)]
pub struct Leftovers(Mutex<Vec<Leftover>>);

impl Leftovers {
    pub fn namespace(&self, name: &str) {
        self.push(Leftover::Namespace(name.to_owned()));
    }

    pub fn event_queue(&self, region: &str, name: &str, bus: &str) {
        self.push(Leftover::EventQueue {
            region: region.to_owned(),
            name: name.to_owned(),
            bus: bus.to_owned(),
        });
    }

    pub fn queue(&self, region: &str, url: &str) {
        self.push(Leftover::Queue {
            region: region.to_owned(),
            url: url.to_owned(),
        });
    }

    pub fn bus(&self, region: &str, name: &str) {
        self.push(Leftover::Bus {
            region: region.to_owned(),
            name: name.to_owned(),
        });
    }

    pub fn cloudformation_stack(&self, region: &str, name: &str) {
        self.push(Leftover::CloudFormationStack {
            region: region.to_owned(),
            name: name.to_owned(),
        });
    }

    pub fn secret(&self, region: &str, name: &str) {
        self.push(Leftover::Secret {
            region: region.to_owned(),
            name: name.to_owned(),
        });
    }

    fn push(&self, leftover: Leftover) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(leftover);
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let leftovers = std::mem::take(
            self.0
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if leftovers.is_empty() {
            return;
        }
        std::thread::scope(|scope| {
            let removal = scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the cleanup");
                runtime.block_on(async {
                    let removed = tokio::time::timeout(CLEANUP_TIMEOUT, remove(&leftovers)).await;
                    if removed.is_err() {
                        eprintln!(
                            "cleanup: gave up after {CLEANUP_TIMEOUT:?}; left behind: {leftovers:?}"
                        );
                    }
                });
            });
            if removal.join().is_err() {
                eprintln!("cleanup: panicked; left behind: {leftovers:?}");
            }
        });
    }
}

/// What an [`Aws`] client records, removed when it is dropped.
impl Aws {
    /// What this client records for removal on drop (nothing when untracked).
    pub(crate) fn record(&self, leftover: impl FnOnce(&Leftovers, &str)) {
        if let Some(leftovers) = &self.leftovers {
            leftover(leftovers, &self.region);
        }
    }

    /// Records the event bus `name` (made without [`Aws::event_queue`]) for removal on drop.
    pub fn remove_bus_on_drop(&self, name: &str) {
        self.record(|leftovers, region| leftovers.bus(region, name));
    }

    /// Records the queue `url` (made without this client) for removal on drop.
    pub fn remove_queue_on_drop(&self, url: &str) {
        self.record(|leftovers, region| leftovers.queue(region, url));
    }
}

/// Removes the leftovers, [`CONCURRENCY`] at a time, with clients of this runtime; buses last,
/// since a bus with rules on it cannot be deleted.
async fn remove(leftovers: &[Leftover]) {
    let stack = Stack::connect().await;
    let mut clients = HashMap::new();
    for leftover in leftovers {
        if let Some(region) = leftover.region()
            && !clients.contains_key(region)
        {
            let config = Stack::aws_config_for(stack.env, region).await;
            clients.insert(region.to_owned(), Clients::new(&config));
        }
    }
    let (buses, others): (Vec<&Leftover>, Vec<&Leftover>) = leftovers
        .iter()
        .partition(|leftover| matches!(leftover, Leftover::Bus { .. }));
    for phase in [others, buses] {
        stream::iter(phase)
            .for_each_concurrent(CONCURRENCY, |leftover| {
                remove_one(&stack, &clients, leftover)
            })
            .await;
    }
}

/// Requests at once while removing (a scale test leaves thousands of secrets).
const CONCURRENCY: usize = 16;

struct Clients {
    aws: Aws,
    cloudformation: aws_sdk_cloudformation::Client,
}

impl Clients {
    /// Clients that record nothing (they only remove).
    fn new(config: &SdkConfig) -> Clients {
        Clients {
            aws: Aws::untracked(config),
            cloudformation: aws_sdk_cloudformation::Client::new(config),
        }
    }
}

impl Leftover {
    fn region(&self) -> Option<&str> {
        match self {
            Leftover::Namespace(_) => None,
            Leftover::EventQueue { region, .. }
            | Leftover::Queue { region, .. }
            | Leftover::Bus { region, .. }
            | Leftover::CloudFormationStack { region, .. }
            | Leftover::Secret { region, .. } => Some(region),
        }
    }
}

async fn remove_one(stack: &Stack, clients: &HashMap<String, Clients>, leftover: &Leftover) {
    if let Leftover::Namespace(name) = leftover {
        let _ = Api::<Namespace>::all(stack.kube.clone())
            .delete(name, &DeleteParams::background())
            .await;
        return;
    }
    let Some(Clients {
        aws,
        cloudformation,
    }) = leftover.region().and_then(|region| clients.get(region))
    else {
        return;
    };
    match leftover {
        Leftover::Namespace(_) => {}
        Leftover::EventQueue { name, bus, .. } => {
            aws.remove_event_queue_named(name, bus).await;
        }
        Leftover::Queue { url, .. } => {
            let _ = aws.sqs.delete_queue().queue_url(url).send().await;
        }
        Leftover::Bus { name, .. } => {
            let _ = aws.events.delete_event_bus().name(name).send().await;
        }
        Leftover::CloudFormationStack { name, .. } => {
            let _ = cloudformation.delete_stack().stack_name(name).send().await;
        }
        Leftover::Secret { name, .. } => aws.force_delete_secret(name).await,
    }
}
