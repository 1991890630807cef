//! The demo: the tutorial's manifests on the local stack, then AWS rotations delivered as
//! EventBridge events through SQS, with the time until each new value is in the cluster.
//! Run by `scripts/demo` (which starts the stack and builds the controller first).
//! Secret values are never printed: only which keys exist and whether the new value arrived.

use std::process::Command;
use std::time::{Duration, Instant};

use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::{ControllerProcess, Stack, tutorial, unique};
use serde_json::json;

const ROTATIONS: usize = 5;

#[tokio::main]
async fn main() {
    let stack = Stack::connect().await;
    let aws = Aws::untracked(&stack.aws);

    step("AWS: secret app-secret, and an EventBridge rule sending Secrets Manager events to SQS");
    tutorial::put_aws_secret(&aws).await;
    let queue = aws
        .event_queue("secret-bridge-demo", "default", None, 30)
        .await;
    println!("    queue: {queue}");

    step(
        "Kubernetes: namespace app, credentials Secret default/awssm-secret, the tutorial's manifests",
    );
    tutorial::prepare(&stack).await;
    let controller = ControllerProcess::start(&stack, "demo", &["--queue-url", &queue]);
    println!("    controller log: {}", controller.log_path.display());
    let start = Instant::now();
    tutorial::apply(&stack).await;
    let data =
        tutorial::wait_for_password(&stack, tutorial::FIRST_PASSWORD, Duration::from_secs(60))
            .await;
    println!(
        "    Secret app/app-secret synced in {} ms with keys: {}",
        start.elapsed().as_millis(),
        data.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    kubectl(&stack, &["get", "externalsecret", "-n", "app"]);

    step(&format!(
        "{ROTATIONS} rotations in AWS (AWSPENDING, then AWSCURRENT moved), each announced by its EventBridge event"
    ));
    println!("    refreshInterval is 1h: only the event path can bring the new value.");
    let mut times = Vec::new();
    for i in 1..=ROTATIONS {
        let password = unique("demo-password");
        let rotated = aws
            .rotate(
                "app-secret",
                &json!({"username": "bob", "password": password}).to_string(),
            )
            .await;
        let start = Instant::now();
        aws.publish_label_updated("default", "app-secret", &rotated)
            .await;
        tutorial::wait_for_password(&stack, &password, Duration::from_secs(30)).await;
        let elapsed = start.elapsed();
        println!(
            "    rotation {i}: event published → new value in the Secret after {:.1} ms",
            ms(elapsed)
        );
        times.push(elapsed);
    }
    times.sort();
    println!(
        "\nResult: rotation visible in the cluster after a median of {:.1} ms (min {:.1} ms, max {:.1} ms) over {ROTATIONS} rotations.",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    println!("(ESO with refreshInterval 1h: up to 3,600,000 ms.)");
    controller.assert_logs_hide(&[tutorial::FIRST_PASSWORD]);
    // Leave the emulator as it was: a forgotten rule on the default bus would receive every
    // later event.
    aws.remove_event_queue("secret-bridge-demo", "default", &queue)
        .await;
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn kubectl(stack: &Stack, args: &[&str]) {
    let Some(kubectl) = stack.env.get("KUBECTL") else {
        return;
    };
    let status = Command::new(kubectl)
        .args(args)
        .env("KUBECONFIG", &stack.env["KUBECONFIG"])
        .status();
    if let Err(error) = status {
        println!("    (kubectl failed to run: {error})");
    }
}
