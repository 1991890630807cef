//! Leader election with a `coordination.k8s.io/v1` Lease, so that several replicas can run
//! and exactly one writes.
//!
//! A candidate watches the Lease and takes it when it is free (absent, released, or not
//! renewed for its `leaseDurationSeconds` on the candidate's clock), with a `resourceVersion`
//! guarded write: of two candidates, one wins and the other gets a conflict. The leader renews
//! every retry period. If it has not renewed within the renew deadline, counted from the start
//! of its last successful renewal, it exits at once (status 1), as controller-runtime does:
//! every writer stops together, before the Lease can look expired to anyone else (renew
//! deadline < lease duration), and the restarted pod comes back as a standby. On shutdown the
//! leader releases the Lease after its writers stopped, so that a standby takes over at once.
//!
//! Written on kube's `Api` rather than with a crate: `kube-leader-election` is built on kube 4
//! (a second kube in the build), and `kube-lease-manager` (kube 5) models a duration and a
//! grace period with no renew deadline on the leader's own clock, so a leader cut off from
//! the apiserver would keep writing until it hears that it lost.

pub mod record;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::FIELD_MANAGER;
use record::{Observation, Verdict};

/// Where the in-cluster client finds its namespace.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Command-line flags, named as Kubernetes' own components name them.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Leader election")]
pub struct ElectionArgs {
    /// Elect a leader among replicas with a Lease: only the leader writes and reads the queue;
    /// the others keep their caches warm and take over. The Helm chart turns it on.
    #[arg(long = "leader-elect", env = "LEADER_ELECT", default_value_t = false, action = clap::ArgAction::Set)]
    pub enabled: bool,

    /// Name of the Lease.
    #[arg(
        long = "leader-elect-resource-name",
        env = "LEADER_ELECT_RESOURCE_NAME",
        default_value = "secret-bridge"
    )]
    pub lease_name: String,

    /// Namespace of the Lease (default: the pod's own, else `default`).
    #[arg(
        long = "leader-elect-resource-namespace",
        env = "LEADER_ELECT_RESOURCE_NAMESPACE"
    )]
    pub lease_namespace: Option<String>,

    /// How long a standby waits after the Lease last changed before it takes it over.
    #[arg(long = "leader-elect-lease-duration", env = "LEADER_ELECT_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How long a leader keeps trying to renew before it exits (less than the duration).
    #[arg(long = "leader-elect-renew-deadline", env = "LEADER_ELECT_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: Duration,

    /// How often the leader renews, and a candidate retries after a failed attempt.
    #[arg(long = "leader-elect-retry-period", env = "LEADER_ELECT_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub retry_period: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    secret_bridge::duration::parse(text).map_err(|e| e.to_string())
}

impl ElectionArgs {
    /// The elector, when leader election is on; `Err` says which timings do not fit.
    /// `leader` is set to 1 while this process leads.
    pub fn elector(&self, client: &Client, leader: Gauge) -> Result<Option<Elector>, String> {
        if !self.enabled {
            return Ok(None);
        }
        if self.lease_duration.as_secs() < 1 || self.lease_duration <= self.renew_deadline {
            return Err(format!(
                "--leader-elect-lease-duration ({:?}) must be at least 1s and longer than --leader-elect-renew-deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        // client-go's rule: a renewal may need one retry, with jitter, within the deadline.
        if self.renew_deadline.as_secs_f64() <= 1.2 * self.retry_period.as_secs_f64() {
            return Err(format!(
                "--leader-elect-renew-deadline ({:?}) must be longer than 1.2 × --leader-elect-retry-period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        let namespace = self.lease_namespace.clone().unwrap_or_else(|| {
            std::fs::read_to_string(NAMESPACE_FILE)
                .map(|n| n.trim().to_owned())
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into())
        });
        Ok(Some(Elector {
            api: Api::namespaced(client.clone(), &namespace),
            namespace,
            name: self.lease_name.clone(),
            identity: identity(),
            timings: self.clone(),
            leader,
        }))
    }
}

/// `<pod name or host name>_<random>`: unique even for a pod restarted under its old name.
fn identity() -> String {
    use std::hash::BuildHasher;
    let base = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "secret-bridge".into());
    let random = std::collections::hash_map::RandomState::new()
        .hash_one((std::process::id(), std::time::SystemTime::now()));
    format!("{base}_{random:016x}")
}

/// A candidate for the Lease.
pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timings: ElectionArgs,
    leader: Gauge,
}

/// The Lease, held: renewed in the background until released.
pub struct Leadership {
    release: oneshot::Sender<()>,
    renewals: tokio::task::JoinHandle<()>,
}

impl Elector {
    /// Waits until this process holds the Lease, or `None` if `shutdown` comes first.
    pub async fn acquire(self, shutdown: impl Future<Output = ()>) -> Option<Leadership> {
        info!(
            lease = %format!("{}/{}", self.namespace, self.name),
            identity = %self.identity,
            "standing by for leadership (caches are kept warm; nothing is written)"
        );
        let mut shutdown = std::pin::pin!(shutdown);
        let mut lease_changes = std::pin::pin!(
            watcher(
                self.api.clone(),
                watcher::Config::default().fields(&format!("metadata.name={}", self.name)),
            )
            .default_backoff()
        );
        let (mut current, mut pending, mut listed) = (None::<Lease>, None::<Lease>, false);
        let mut observed = Observation::default();
        let mut last_holder = String::new();
        let mut wake = Instant::now() + self.timings.retry_period;
        loop {
            tokio::select! {
                _ = &mut shutdown => return None,
                event = lease_changes.next() => match event {
                    Some(Ok(watcher::Event::Init)) => pending = None,
                    Some(Ok(watcher::Event::InitApply(lease))) => pending = Some(lease),
                    Some(Ok(watcher::Event::InitDone)) => {
                        current = pending.take();
                        listed = true;
                    }
                    Some(Ok(watcher::Event::Apply(lease))) => current = Some(lease),
                    Some(Ok(watcher::Event::Delete(_))) => current = None,
                    Some(Err(error)) => warn!(%error, "watching the Lease failed; retrying"),
                    None => return None,
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
            wake = Instant::now() + self.timings.retry_period;
            if !listed {
                continue;
            }
            let now = std::time::Instant::now();
            observed.see(current.as_ref(), now);
            match record::verdict(current.as_ref(), &observed, now) {
                Verdict::Held { holder, until } => {
                    if holder != last_holder {
                        info!(%holder, "another replica leads");
                        last_holder = holder;
                    }
                    wake = wake.min(Instant::from_std(until));
                }
                Verdict::Free => {
                    let attempt = Instant::now();
                    match self.take(current.as_ref()).await {
                        Ok(lease) => return Some(self.lead(lease, attempt)),
                        Err(Some(fresh)) => {
                            current = fresh;
                            observed.see(current.as_ref(), std::time::Instant::now());
                        }
                        Err(None) => {}
                    }
                }
            }
        }
    }

    /// Takes the Lease: creates it, or replaces the version `current` saw. On a conflict,
    /// `Err(Some(what is there now))`; on other errors (logged), `Err(None)`.
    async fn take(&self, current: Option<&Lease>) -> Result<Lease, Option<Option<Lease>>> {
        let spec = record::taken(
            current.and_then(|l| l.spec.as_ref()),
            &self.identity,
            self.timings.lease_duration,
        );
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&params, &lease).await
            }
            Some(current) => {
                let mut lease = current.clone();
                lease.metadata.managed_fields = None;
                lease.spec = Some(spec);
                self.api.replace(&self.name, &params, &lease).await
            }
        };
        match result {
            Ok(lease) => Ok(lease),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // Another candidate was faster; read what it wrote.
                Err(self.api.get_opt(&self.name).await.ok())
            }
            Err(error) => {
                warn!(%error, lease = %self.name, "could not take the Lease; retrying");
                Err(None)
            }
        }
    }

    /// Starts renewing `lease`, taken by a write sent at `taken_at`.
    fn lead(self, lease: Lease, taken_at: Instant) -> Leadership {
        info!(
            lease = %format!("{}/{}", self.namespace, self.name),
            identity = %self.identity,
            "became leader: starting the controllers and the queue consumer"
        );
        self.leader.set(1);
        let (release, released) = oneshot::channel();
        let renewals = tokio::spawn(self.renew(lease, taken_at, released));
        Leadership { release, renewals }
    }

    /// Renews every retry period until `released`; exits the process when a renewal has not
    /// succeeded within the renew deadline, or another holder took the Lease.
    async fn renew(
        self,
        mut lease: Lease,
        mut renewed_at: Instant,
        released: oneshot::Receiver<()>,
    ) {
        let mut released = std::pin::pin!(released);
        loop {
            tokio::select! {
                _ = &mut released => break,
                _ = tokio::time::sleep(self.timings.retry_period) => {}
            }
            let deadline = renewed_at + self.timings.renew_deadline;
            loop {
                let attempt = Instant::now();
                match tokio::time::timeout_at(deadline, self.renew_once(&lease)).await {
                    Err(_) => self.lost("no renewal succeeded within the renew deadline"),
                    Ok(Renewal::Renewed(new)) => {
                        (lease, renewed_at) = (new, attempt);
                        break;
                    }
                    Ok(Renewal::Lost(holder)) => {
                        self.lost(&format!("the Lease is now held by {holder:?}"))
                    }
                    Ok(Renewal::Retry(fresh)) => {
                        lease = fresh.unwrap_or(lease);
                        if tokio::time::timeout_at(
                            deadline,
                            tokio::time::sleep(self.timings.retry_period / 4),
                        )
                        .await
                        .is_err()
                        {
                            self.lost("no renewal succeeded within the renew deadline");
                        }
                    }
                }
            }
        }
        self.release(lease).await;
    }

    async fn renew_once(&self, lease: &Lease) -> Renewal {
        let mut next = lease.clone();
        next.metadata.managed_fields = None;
        next.spec = Some(record::renewed(&lease.spec.clone().unwrap_or_default()));
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self.api.replace(&self.name, &params, &next).await {
            Ok(lease) => Renewal::Renewed(lease),
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                match self.api.get_opt(&self.name).await {
                    Ok(Some(fresh)) if record::holder(&fresh) == self.identity => {
                        Renewal::Retry(Some(fresh))
                    }
                    Ok(Some(fresh)) => Renewal::Lost(record::holder(&fresh).to_owned()),
                    Ok(None) => Renewal::Lost("nobody (it was deleted)".into()),
                    Err(error) => {
                        warn!(%error, "could not read the Lease after a conflict; retrying");
                        Renewal::Retry(None)
                    }
                }
            }
            Err(error) => {
                warn!(%error, "could not renew the Lease; retrying");
                Renewal::Retry(None)
            }
        }
    }

    /// Stops every writer at once: the process exits, and its restart comes back as a standby.
    fn lost(&self, why: &str) -> ! {
        self.leader.set(0);
        error!(lease = %self.name, identity = %self.identity, "lost leadership: {why}; exiting so that no write follows");
        std::process::exit(1);
    }

    /// Gives the Lease up (no holder), so that a standby takes over without waiting.
    async fn release(&self, lease: Lease) {
        let mut next = lease.clone();
        next.metadata.managed_fields = None;
        next.spec = Some(record::released(&lease.spec.clone().unwrap_or_default()));
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self.api.replace(&self.name, &params, &next).await {
            Ok(_) => info!(lease = %self.name, "released the Lease"),
            Err(error) => {
                warn!(%error, "could not release the Lease; a standby takes over when it expires")
            }
        }
        self.leader.set(0);
    }
}

enum Renewal {
    Renewed(Lease),
    /// Someone else holds the Lease now.
    Lost(String),
    /// Not renewed this time (an error, or a conflict with a write that left us the holder).
    Retry(Option<Lease>),
}

impl Leadership {
    /// Releases the Lease, once every writer has stopped.
    pub async fn release(self) {
        let _ = self.release.send(());
        let _ = self.renewals.await;
    }
}
