//! The process's Kubernetes Event recorder: kube's [`Recorder`], with its memory bounded.
//!
//! kube's Recorder folds a repeated Event into a series, and to do so keeps every Event it
//! published for six minutes. 10,000 ExternalSecrets synced at start are 10,000 cached Events,
//! and a tenant's thousands of failing ExternalSecrets as many more. Each cached Event takes
//! about 2 KiB: at the peak of a bench with 3,000 ExternalSecrets, heaptrack found 6.9 MiB in
//! that cache. Here the cache starts afresh after [`CACHED_EVENTS`] publishes (client-go
//! bounds its own with an LRU of 4,096): a repeat that crosses a fresh start becomes a new
//! Event instead of a series' next count. So with more than about 1,024 ExternalSecrets
//! failing at once, their repeated failures are separate Events (each expires with the
//! apiserver's Event TTL) rather than counts of one series.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};

/// Publishes after which the repeat cache starts afresh.
pub const CACHED_EVENTS: usize = 1024;

/// Cheap to clone; clones share one cache.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    cache_limit: usize,
    current: Arc<Mutex<(Recorder, usize)>>,
}

impl EventRecorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        EventRecorder::with_cache_limit(client, reporter, CACHED_EVENTS)
    }

    fn with_cache_limit(client: Client, reporter: Reporter, cache_limit: usize) -> Self {
        let recorder = Recorder::new(client.clone(), reporter.clone());
        EventRecorder {
            client,
            reporter,
            cache_limit,
            current: Arc::new(Mutex::new((recorder, 0))),
        }
    }

    /// Publishes `event` about `regarding` (a repeat within six minutes extends a series).
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let recorder = {
            let mut current = self.current.lock().expect("recorder lock");
            if current.1 >= self.cache_limit {
                *current = (Recorder::new(self.client.clone(), self.reporter.clone()), 0);
            }
            current.1 += 1;
            current.0.clone()
        };
        recorder.publish(event, regarding).await
    }
}

#[cfg(test)]
mod tests {
    use http::Method;
    use kube::client::Body;
    use kube::runtime::events::EventType;

    use super::*;

    /// A client whose apiserver accepts every Event, sending each request's method to `seen`.
    fn accepting_client(seen: tokio::sync::mpsc::UnboundedSender<Method>) -> Client {
        let service = tower::service_fn(move |request: http::Request<Body>| {
            let _ = seen.send(request.method().clone());
            async move {
                http::Response::builder().status(201).body(Body::from(
                    br#"{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e","namespace":"ns"},"eventTime":null}"#
                        .to_vec(),
                ))
            }
        });
        Client::new(service, "default")
    }

    fn about(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("ExternalSecret".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn repeats_form_a_series_until_the_cache_starts_afresh() {
        let (sent, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let reporter = Reporter {
            controller: "secret-bridge".into(),
            instance: None,
        };
        let recorder = EventRecorder::with_cache_limit(accepting_client(sent), reporter, 3);
        let event = Event {
            type_: EventType::Warning,
            reason: "UpdateFailed".into(),
            note: Some("could not read".into()),
            action: "Sync".into(),
            secondary: None,
        };
        let mut methods = Vec::new();
        for name in ["a", "a", "b", "a"] {
            recorder.publish(&event, &about(name)).await.unwrap();
            methods.push(seen.recv().await.unwrap());
        }
        // The second `a` extends the first's series; after three publishes the cache starts
        // afresh, so the third `a` is a new Event.
        assert_eq!(
            methods,
            [Method::POST, Method::PATCH, Method::POST, Method::POST]
        );
    }
}
