//! Waiting for something observable: a value in a Secret, a condition, a status field moving
//! on, a queue emptied. A test that asserts that *nothing* changed first waits for proof that
//! the controller processed the input in question (see also [`crate::metrics`]), so that a
//! stalled controller cannot pass it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::aws::Aws;
use crate::kube_helpers::{external_secret, secret_data};

/// Polls `probe` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the Secret exists and `key` has `expected`; returns the whole data.
pub async fn wait_for_secret_value(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
    expected: &str,
    timeout: Duration,
) -> BTreeMap<String, String> {
    // The message names the key, never the value.
    wait_for(
        &format!("Secret {namespace}/{name} key {key:?} to hold the expected value"),
        timeout,
        || async {
            secret_data(client, namespace, name)
                .await
                .filter(|d| d.get(key).map(String::as_str) == Some(expected))
        },
    )
    .await
}

/// Polls `condition` like [`wait_for`] until it holds.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, timeout, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await;
}

/// Waits until the Secret `namespace/name` does not exist (deleted, or collected with its
/// owner); `why` says by whom, for the timeout message.
pub async fn wait_for_secret_gone(
    client: &Client,
    namespace: &str,
    name: &str,
    why: &str,
    timeout: Duration,
) {
    let what = format!("Secret {namespace}/{name} to be gone ({why})");
    wait_until(&what, timeout, || async {
        secret_data(client, namespace, name).await.is_none()
    })
    .await;
}

/// Waits until the ExternalSecret `namespace/name` does not exist; `why` as above.
pub async fn wait_for_external_secret_gone(
    client: &Client,
    namespace: &str,
    name: &str,
    why: &str,
    timeout: Duration,
) {
    let what = format!("ExternalSecret {namespace}/{name} to be gone ({why})");
    wait_until(&what, timeout, || async {
        external_secret(client, namespace, name).await.is_none()
    })
    .await;
}

/// Waits for the ExternalSecret's `Ready` condition to have `status`; returns (reason, message).
pub async fn wait_for_ready(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &str,
    timeout: Duration,
) -> (String, String) {
    wait_for(
        &format!("ExternalSecret {namespace}/{name} Ready={status}"),
        timeout,
        || async {
            let es = external_secret(client, namespace, name).await?;
            let ready = es.ready_condition()?.clone();
            (ready.status == status).then(|| {
                (
                    ready.reason.unwrap_or_default(),
                    ready.message.unwrap_or_default(),
                )
            })
        },
    )
    .await
}

/// Waits until the ExternalSecret's `Ready` condition has `status` and `reason` (a status
/// alone may still be the one from before the change under test).
pub async fn wait_for_reason(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &str,
    reason: &str,
) {
    wait_for(
        &format!("ExternalSecret {namespace}/{name} Ready={status} reason {reason}"),
        Duration::from_secs(10),
        || async {
            let es = external_secret(client, namespace, name).await?;
            let ready = es.ready_condition()?;
            (ready.status == status && ready.reason.as_deref() == Some(reason)).then_some(())
        },
    )
    .await;
}

/// The ExternalSecret's `status.refreshTime` (when it last read AWS), if it has one.
pub async fn refresh_time(client: &Client, namespace: &str, name: &str) -> Option<Time> {
    external_secret(client, namespace, name)
        .await?
        .status?
        .refresh_time
}

/// Waits until the queue holds no message, neither visible nor in flight.
pub async fn wait_for_empty_queue(aws: &Aws, queue: &str, timeout: Duration) {
    wait_for(&format!("queue {queue} to be empty"), timeout, || async {
        (aws.queue_depth(queue).await == 0).then_some(())
    })
    .await;
}

/// Waits for a Kubernetes Event with `reason` about the object `name` of `namespace` (any
/// kind); returns it.
pub async fn wait_for_event(
    client: &Client,
    namespace: &str,
    name: &str,
    reason: &str,
    timeout: Duration,
) -> Event {
    wait_for_event_noting(client, namespace, name, reason, "", timeout).await
}

/// As [`wait_for_event`], for an Event whose note contains `noting` (several Events with the
/// same reason may be about one object).
pub async fn wait_for_event_noting(
    client: &Client,
    namespace: &str,
    name: &str,
    reason: &str,
    noting: &str,
    timeout: Duration,
) -> Event {
    wait_for(
        &format!("a {reason} Event on {namespace}/{name} noting {noting:?}"),
        timeout,
        || async {
            Api::<Event>::namespaced(client.clone(), namespace)
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                        && e.note.as_deref().unwrap_or_default().contains(noting)
                })
        },
    )
    .await
}
