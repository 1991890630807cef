//! Hostile input: a corpus of poison SQS messages and ExternalSecrets whose templates try to
//! exhaust memory or echo a secret value through the apiserver. The controller keeps running
//! (same process, within the chart's 256 MiB), still applies the next good event at once,
//! leaves what it cannot read to the DLQ, reports the hostile resources as not ready, and
//! never shows the marker or a secret value in its log, a status or an Event.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use secret_bridge_controller::api::ExternalSecret;
use secret_bridge_tests::faults::{controller_pid, peak_rss_kib};
use secret_bridge_tests::manifest::Manifest;
use secret_bridge_tests::unique;
use secret_bridge_tests::wait::{wait_for_empty_queue, wait_for_ready};
use serde_json::json;

use crate::burst::Burst;
use crate::hostile_messages::corpus;
use crate::serial;

/// The chart's memory limit for the controller.
const CHART_LIMIT_KIB: u64 = 256 * 1024;

/// ExternalSecrets whose templates try to exhaust memory or CPU.
const HOSTILE_TEMPLATES: &[(&str, &str)] = &[
    ("split-list", r#"{{ splitList "" (repeat 20000000 "x") }}"#),
    (
        "nested-range",
        concat!(
            r#"{{ $l := splitList "" (repeat 99999 "x") }}"#,
            "{{ range $l }}{{ range $l }}{{ range $l }}x{{ end }}{{ end }}{{ end }}"
        ),
    ),
    ("printf-width", r#"{{ printf "%0999999999d" 1 }}"#),
];

#[tokio::test]
async fn hostile_messages_and_resources_crash_nothing_and_leak_nothing() {
    let _serial = serial().await;
    // Visibility 1 s and maxReceiveCount 2: unreadable messages reach the DLQ quickly.
    Burst::new("faults-hostile", 1, 1, Some(2))
        .await
        .run(hostile_input)
        .await;
}

async fn hostile_input(burst: &Burst) {
    let (kube, ns) = (&burst.stack.kube, burst.tenant.namespace.as_str());
    let marker = unique("MARKER");
    let controller = burst.start_controller("run", &[]);
    assert_eq!(burst.wait_round(0, Duration::from_secs(60)).await, 1);
    let pid = controller_pid(&controller);

    // Hostile ExternalSecrets: templates against the render budget, and a label rendered from
    // a secret value (the marker) that is not a valid label value, so the apiserver's 422
    // would quote it.
    let label_secret = unique("faults-label");
    let label_value = format!("{marker} is not a label value!");
    burst
        .aws
        .upsert_secret(&label_secret, &json!({"v": label_value}).to_string())
        .await;
    let mut hostile = Vec::new();
    for (name, template) in HOSTILE_TEMPLATES {
        burst
            .tenant
            .external_secret(name)
            .refresh_interval("1h")
            .target(json!({"template": {"engineVersion": "v2", "data": {"x": template}}}))
            .extract(burst.secret_name(0))
            .apply(kube, ns)
            .await;
        hostile.push(*name);
    }
    burst
        .tenant
        .external_secret("label-from-value")
        .refresh_interval("1h")
        .target(json!({"template": {"metadata": {"labels": {"bad": "{{ .v }}"}}}}))
        .extract(&label_secret)
        .apply(kube, ns)
        .await;
    hostile.push("label-from-value");

    // The poison messages.
    let messages = corpus(&marker, burst.secret_name(0));
    let total = messages.len();
    stream::iter(&messages)
        .map(|m| async move {
            burst
                .aws
                .sqs
                .send_message()
                .queue_url(&burst.queue)
                .message_body(&m.body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("SQS refused a {:?} message: {e:?}", m.kind));
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;

    // A good event while the hostile templates render and the poison is read: other tenants'
    // events must not wait for them.
    burst.publish_round(1).await;
    let published = Instant::now();
    let arrived = burst.wait_round(1, Duration::from_secs(30)).await;
    let during = published.elapsed();
    println!("faults: a good event during the hostile input arrived in {during:?}");
    assert!(
        arrived == 1 && during < Duration::from_secs(5),
        "a good event during the hostile input took {during:?} (arrived: {arrived}; log: {})",
        controller.log_path.display()
    );

    for name in &hostile {
        let (reason, message) =
            wait_for_ready(kube, ns, name, "False", Duration::from_secs(60)).await;
        println!("faults: hostile ExternalSecret {name}: Ready=False {reason}: {message}");
        assert!(!message.is_empty(), "{name} says why it is not ready");
    }

    // Every message is either acknowledged or, unread, moved to the DLQ.
    let began = Instant::now();
    wait_for_empty_queue(&burst.aws, &burst.queue, Duration::from_secs(180)).await;
    let drained = began.elapsed();
    let dead = drain(burst).await;
    let by_body: HashMap<&str, &str> = messages.iter().map(|m| (m.body.as_str(), m.kind)).collect();
    let mut report: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for m in &messages {
        let entry = report.entry(m.kind).or_default();
        if dead.iter().any(|d| d == &m.body) {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    assert!(
        dead.iter().all(|d| by_body.contains_key(d.as_str())),
        "the DLQ holds only the poison messages"
    );
    for (kind, (dlq, acked)) in &report {
        println!(
            "faults: hostile messages {kind:>26}: {dlq} to the DLQ, {acked} acknowledged as irrelevant"
        );
    }
    for kind in ["not json", "not an object"] {
        assert_eq!(
            report[kind].1, 0,
            "a {kind} message was acknowledged, not left to the DLQ"
        );
    }

    // The next good event is applied at once.
    burst.publish_round(2).await;
    let published = Instant::now();
    let arrived = burst.wait_round(2, Duration::from_secs(5)).await;
    let took = published.elapsed();
    assert_eq!(
        arrived, 1,
        "the good event after the poison arrives within 5 s"
    );

    // Same process, within the chart's memory limit.
    assert_eq!(
        controller_pid(&controller),
        pid,
        "the controller was never restarted"
    );
    let peak = peak_rss_kib(pid).expect("VmHWM of the controller");
    assert!(
        peak < CHART_LIMIT_KIB,
        "peak RSS {peak} KiB exceeds the chart's 256 MiB"
    );

    // Nothing leaked: not in the log, not in a status, not in an Event.
    let statuses = serde_json::to_string(
        &Api::<ExternalSecret>::namespaced(kube.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("list ExternalSecrets")
            .items
            .iter()
            .map(|es| &es.status)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let events = serde_json::to_string(
        &Api::<Event>::namespaced(kube.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("list Events")
            .items,
    )
    .unwrap();
    for (place, text) in [
        ("log", controller.logs()),
        ("status", statuses),
        ("Events", events),
    ] {
        assert!(
            !text.contains(&marker),
            "the marker appears in the controller's {place}"
        );
        assert!(
            !text.contains(&burst.value_token),
            "a secret value appears in the controller's {place}"
        );
    }
    burst.assert_logs_hide_values();
    let _ = burst
        .aws
        .secrets
        .delete_secret()
        .secret_id(&label_secret)
        .force_delete_without_recovery(true)
        .send()
        .await;
    println!(
        "faults: {total} hostile messages and {} hostile ExternalSecrets: same pid, peak RSS {} MiB (limit 256), queue drained in {drained:?}, {} in the DLQ, next good event in {took:?}, marker and values in no log, status or Event",
        hostile.len(),
        peak / 1024,
        dead.len(),
    );
}

/// Receives and deletes everything in the DLQ (until two receives in a row come back empty).
async fn drain(burst: &Burst) -> Vec<String> {
    let dlq = burst.dlq.as_deref().expect("the burst has a DLQ");
    let mut bodies = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let got = burst.aws.receive_and_delete(dlq).await;
        empty = if got.is_empty() { empty + 1 } else { 0 };
        bodies.extend(got.into_iter().filter_map(|m| m.body));
    }
    bodies
}
