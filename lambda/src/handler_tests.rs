//! Component tests of the handler with fakes for SQS and Secrets Manager, on the event corpus.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use super::*;
use crate::aws::AwsError;
use crate::config::{ROUTES, router_from};
use crate::queue::{EntryFailure, OutgoingMessage};
use crate::tags::{SecretRef, SecretTags};

const QUEUE_A: &str = "https://sqs.us-west-2.amazonaws.com/111122223333/cluster-a";
const QUEUE_B: &str = "https://sqs.us-west-2.amazonaws.com/444455556666/cluster-b";

/// Keeps what was sent; refuses every message to `refuse` (per entry) or whole calls to
/// `unreachable`.
#[derive(Default)]
struct FakeQueues {
    sent: Mutex<Vec<(String, OutgoingMessage)>>,
    calls: Mutex<usize>,
    refuse: Option<&'static str>,
    unreachable: Option<&'static str>,
}

impl FakeQueues {
    fn bodies(&self, queue: &str) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(url, _)| url == queue)
            .map(|(_, message)| message.body.clone())
            .collect()
    }
}

impl QueueSender for FakeQueues {
    async fn send_batch(
        &self,
        destination: &Destination,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<EntryFailure>, AwsError> {
        *self.calls.lock().unwrap() += 1;
        if self.unreachable == Some(destination.url.as_str()) {
            return Err(AwsError {
                operation: "SendMessageBatch",
                target: destination.url.clone(),
                code: "AWS.SimpleQueueService.NonExistentQueue".into(),
                message: "The specified queue does not exist.".into(),
            });
        }
        let mut failures = Vec::new();
        for message in messages {
            if self.refuse == Some(destination.url.as_str()) {
                failures.push(EntryFailure {
                    id: message.id,
                    code: "InternalError".into(),
                    message: "try again".into(),
                });
            } else {
                self.sent
                    .lock()
                    .unwrap()
                    .push((destination.url.clone(), message));
            }
        }
        Ok(failures)
    }
}

/// Tags per secret id (unknown secrets have none); counts lookups; fails when `broken`.
#[derive(Default)]
struct FakeTags {
    tags: HashMap<String, SecretTags>,
    lookups: Mutex<Vec<(String, Option<String>)>>,
    broken: bool,
}

impl FakeTags {
    fn with(id: &str, tags: SecretTags) -> Self {
        FakeTags {
            tags: HashMap::from([(id.to_owned(), tags)]),
            ..FakeTags::default()
        }
    }
}

impl TagLookup for FakeTags {
    async fn tags(&self, secret: SecretRef<'_>) -> Result<SecretTags, AwsError> {
        self.lookups
            .lock()
            .unwrap()
            .push((secret.id.to_owned(), secret.region.map(str::to_owned)));
        if self.broken {
            return Err(AwsError {
                operation: "DescribeSecret",
                target: secret.id.to_owned(),
                code: "ThrottlingException".into(),
                message: "Rate exceeded".into(),
            });
        }
        Ok(self
            .tags
            .get(secret.id)
            .cloned()
            .unwrap_or_else(|| SecretTags::Known(BTreeMap::new())))
    }
}

fn fan_out(routes: Value, queues: FakeQueues, tags: FakeTags) -> FanOut<FakeQueues, FakeTags> {
    let routes = routes.to_string();
    let router = router_from(|name| (name == ROUTES).then(|| routes.clone())).unwrap();
    FanOut::new(router, queues, tags)
}

fn everything_to_a() -> FanOut<FakeQueues, FakeTags> {
    fan_out(
        json!([{ "queueUrl": QUEUE_A }]),
        FakeQueues::default(),
        FakeTags::default(),
    )
}

fn fixtures_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(kind)
}

fn fixture(name: &str) -> String {
    let dir = if name.starts_with("lambda/") {
        fixtures_dir("")
    } else {
        fixtures_dir("events")
    };
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn payload(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// What the core crate makes of a fixture, as the cluster receives it.
fn normalized(name: &str) -> String {
    let Parsed::Change(change) = event::parse(&fixture(name)).unwrap() else {
        panic!("{name} is a change")
    };
    NormalizedMessage::from_change(&change).unwrap().to_json()
}

fn sqs_event(bodies: &[(&str, &str)]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .map(|(id, body)| json!({"messageId": id, "body": body, "eventSource": "aws:sqs"}))
        .collect();
    json!({ "Records": records })
}

#[tokio::test]
async fn every_fixture_from_eventbridge_is_delivered_dropped_or_refused_as_the_core_reads_it() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir("events"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 30, "the corpus is there");
    for name in names {
        let text = fixture(&name);
        let Ok(payload) = serde_json::from_str::<Value>(&text) else {
            continue; // not JSON: Lambda itself would refuse the invocation
        };
        let handler = everything_to_a();
        let result = handler.handle(payload, "request-1").await;
        match event::parse(&text) {
            Ok(Parsed::Change(_)) => {
                let Ok(Response::EventBridge(summary)) = result else {
                    panic!("{name}: {result:?}")
                };
                assert_eq!(summary.delivered, 1, "{name}");
                assert_eq!(
                    handler.sender.bodies(QUEUE_A),
                    [normalized(&name)],
                    "{name}"
                );
            }
            Ok(Parsed::Irrelevant { .. }) => {
                assert!(
                    matches!(
                        &result,
                        Ok(Response::EventBridge(Summary { delivered: 0, .. }))
                    ),
                    "{name}: {result:?}"
                );
                assert_eq!(*handler.sender.calls.lock().unwrap(), 0, "{name}");
            }
            Err(_) => {
                let error = result.expect_err(&name);
                assert_eq!(
                    error.kind(),
                    "SecretBridge.UnreadableEvent",
                    "{name}: {error}"
                );
                assert_eq!(*handler.sender.calls.lock().unwrap(), 0, "{name}");
            }
        }
    }
}

#[tokio::test]
async fn an_eventbridge_event_goes_to_every_matching_queue_once() {
    let handler = fan_out(
        json!([
            { "queueUrl": QUEUE_A, "namePrefix": "my" },
            { "queueUrl": QUEUE_A, "nameRegex": "Secret$" },
            { "queueUrl": QUEUE_B, "nameRegex": "^my" },
            { "queueUrl": "https://sqs.us-west-2.amazonaws.com/1/other", "namePrefix": "app/" },
        ]),
        FakeQueues::default(),
        FakeTags::default(),
    );
    let response = handler
        .handle(payload("label-updated-current.json"), "request-1")
        .await
        .unwrap();
    assert_eq!(
        response,
        Response::EventBridge(Summary {
            event_id: Some("6a7e8feb-b491-4cf7-a9f1-bf3703467718".into()),
            delivered: 2,
        })
    );
    let expected = normalized("label-updated-current.json");
    assert_eq!(
        handler.sender.bodies(QUEUE_A),
        std::slice::from_ref(&expected)
    );
    assert_eq!(handler.sender.bodies(QUEUE_B), [expected]);
    assert_eq!(handler.sender.sent.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_failed_delivery_fails_the_eventbridge_invocation() {
    let handler = fan_out(
        json!([{ "queueUrl": QUEUE_A }, { "queueUrl": QUEUE_B }]),
        FakeQueues {
            unreachable: Some(QUEUE_B),
            ..FakeQueues::default()
        },
        FakeTags::default(),
    );
    let error = handler
        .handle(payload("cloudtrail-put-secret-value.json"), "request-1")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "SecretBridge.DeliveryFailed");
    let message = error.to_string();
    assert!(
        message.contains("3e2a6b2e-8b4e-9c1f-1f1c-0e1c1a2b3c4d"),
        "{message}"
    );
    assert!(message.contains("cluster-b"), "{message}");
    assert!(message.contains("NonExistentQueue"), "{message}");
    assert_eq!(
        handler.sender.bodies(QUEUE_A).len(),
        1,
        "the other queue still got it"
    );
}

#[tokio::test]
async fn an_sqs_batch_reports_exactly_its_failed_records() {
    let handler = everything_to_a();
    let response = handler
        .handle(payload("lambda/sqs-batch.json"), "request-1")
        .await
        .unwrap();
    let Response::Sqs(response) = response else {
        panic!("an SQS response")
    };
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["c8a1e4f0-5d2b-4c6e-8f7a-1b2c3d4e5f60"],
        "the record that is not JSON"
    );
    assert_eq!(
        handler.sender.bodies(QUEUE_A),
        [
            normalized("label-updated-current.json"),
            normalized("cloudtrail-put-secret-value.json"),
            normalized("sns-wrapped-label-updated.json"),
        ],
        "the custom label is dropped"
    );
    assert_eq!(
        serde_json::to_value(Response::Sqs(response)).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "c8a1e4f0-5d2b-4c6e-8f7a-1b2c3d4e5f60"}]})
    );
}

#[tokio::test]
async fn a_record_fails_when_any_of_its_deliveries_fails() {
    let handler = fan_out(
        json!([
            { "queueUrl": QUEUE_A },
            { "queueUrl": QUEUE_B, "namePrefix": "team-b/" },
        ]),
        FakeQueues {
            refuse: Some(QUEUE_B),
            ..FakeQueues::default()
        },
        FakeTags::default(),
    );
    let event = |name: &str| {
        json!({"version": "0", "id": name, "detail-type": "Secret Label Updated",
               "source": "aws.secretsmanager", "region": "us-west-2",
               "detail": {"name": name, "labelUpdated": "AWSCURRENT", "versionId": "v1"}})
        .to_string()
    };
    let response = handler
        .handle(
            sqs_event(&[("m1", &event("team-a/db")), ("m2", &event("team-b/db"))]),
            "request-1",
        )
        .await
        .unwrap();
    let Response::Sqs(response) = response else {
        panic!("an SQS response")
    };
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier, "m2");
    assert_eq!(
        handler.sender.bodies(QUEUE_A).len(),
        2,
        "both reached queue A"
    );
}

#[tokio::test]
async fn records_without_a_body_fail_and_a_failed_record_without_an_id_fails_the_batch() {
    let handler = everything_to_a();
    let response = handler
        .handle(
            json!({"Records": [{"messageId": "m1", "eventSource": "aws:sqs"}]}),
            "request-1",
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "m1"}]})
    );
    let error = handler
        .handle(
            json!({"Records": [{"body": "not json", "eventSource": "aws:sqs"}]}),
            "request-1",
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "SecretBridge.MissingMessageId");
}

#[tokio::test]
async fn other_triggers_are_refused() {
    let handler = everything_to_a();
    let error = handler
        .handle(payload("lambda/sns-trigger.json"), "request-1")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "SecretBridge.UnsupportedPayload");
    assert!(
        error.to_string().contains("records from aws:sns"),
        "{error}"
    );
    let error = handler
        .handle(json!({"hello": "world"}), "request-1")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "SecretBridge.UnreadableEvent", "{error}");
    assert_eq!(*handler.sender.calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn tags_are_read_only_for_tag_routes_that_the_name_allows_and_once_per_secret() {
    const ARN: &str = "arn:aws:secretsmanager:us-west-2:012345678901:secret:mySecret-a1b2c3";
    let tags = FakeTags::with(
        ARN,
        SecretTags::Known(BTreeMap::from([("cluster".to_owned(), "b".to_owned())])),
    );
    let handler = fan_out(
        json!([
            { "queueUrl": QUEUE_A, "namePrefix": "app/" },
            { "queueUrl": QUEUE_B, "tags": { "cluster": "b" } },
            { "queueUrl": "https://sqs.us-west-2.amazonaws.com/1/c", "namePrefix": "other/", "tags": { "cluster": "c" } },
        ]),
        FakeQueues::default(),
        tags,
    );
    let label = fixture("label-updated-current.json");
    let put = fixture("cloudtrail-put-secret-value.json");
    handler
        .handle(sqs_event(&[("m1", &label), ("m2", &put)]), "request-1")
        .await
        .unwrap();
    assert_eq!(handler.sender.bodies(QUEUE_B).len(), 2);
    assert!(handler.sender.bodies(QUEUE_A).is_empty());
    assert_eq!(
        *handler.tags.lookups.lock().unwrap(),
        [(ARN.to_owned(), Some("us-west-2".to_owned()))],
        "one DescribeSecret by ARN, in the secret's region, for both events"
    );

    // A name no tag route accepts needs no lookup.
    let handler = fan_out(
        json!([{ "queueUrl": QUEUE_A, "namePrefix": "app/", "tags": { "cluster": "a" } }]),
        FakeQueues::default(),
        FakeTags::default(),
    );
    handler
        .handle(payload("label-updated-current.json"), "r")
        .await
        .unwrap();
    assert!(handler.tags.lookups.lock().unwrap().is_empty());
    assert_eq!(*handler.sender.calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_deleted_secret_reaches_its_tag_routes_and_a_failed_lookup_fails_the_record() {
    const ARN: &str = "arn:aws:secretsmanager:us-west-2:012345678901:secret:mySecret-a1b2c3";
    let routes = json!([
        { "queueUrl": QUEUE_A },
        { "queueUrl": QUEUE_B, "tags": { "cluster": "b" } },
    ]);
    let handler = fan_out(
        routes.clone(),
        FakeQueues::default(),
        FakeTags::with(ARN, SecretTags::Gone),
    );
    let response = handler
        .handle(payload("label-updated-current.json"), "r")
        .await
        .unwrap();
    assert!(matches!(
        response,
        Response::EventBridge(Summary { delivered: 2, .. })
    ));

    let handler = fan_out(
        routes,
        FakeQueues::default(),
        FakeTags {
            broken: true,
            ..FakeTags::default()
        },
    );
    let label = fixture("label-updated-current.json");
    let response = handler
        .handle(sqs_event(&[("m1", &label)]), "r")
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "m1"}]})
    );
    assert_eq!(
        *handler.sender.calls.lock().unwrap(),
        0,
        "nothing sent for an undecided record"
    );
    let error = handler
        .handle(payload("label-updated-current.json"), "r")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "SecretBridge.TagLookupFailed");
    assert!(error.to_string().contains("ThrottlingException"), "{error}");
}

#[tokio::test]
async fn fifo_queues_are_deduplicated_by_the_source_event() {
    let fifo = "https://sqs.us-west-2.amazonaws.com/111122223333/cluster-a.fifo";
    let handler = fan_out(
        json!([{ "queueUrl": fifo }]),
        FakeQueues::default(),
        FakeTags::default(),
    );
    handler
        .handle(payload("lambda/sqs-batch.json"), "request-1")
        .await
        .unwrap();
    handler
        .handle(payload("cloudtrail-put-secret-value.json"), "request-2")
        .await
        .unwrap();
    let sent = handler.sender.sent.lock().unwrap();
    let ids: Vec<(Option<&str>, Option<&str>)> = sent
        .iter()
        .map(|(_, m)| (m.group_id.as_deref(), m.deduplication_id.as_deref()))
        .collect();
    assert_eq!(
        ids,
        [
            (
                Some("mySecret"),
                Some("059f36b4-87a3-44ab-83d2-661975830a7d")
            ),
            (
                Some("mySecret"),
                Some("2e1424d4-f796-459a-8184-9c92662be6da")
            ),
            (
                Some("mySecret"),
                Some("d3f7b2a1-6c4e-4b8d-9a0f-2e3d4c5b6a71")
            ),
            (
                Some("mySecret"),
                Some("3e2a6b2e-8b4e-9c1f-1f1c-0e1c1a2b3c4d")
            ),
        ]
    );
}
