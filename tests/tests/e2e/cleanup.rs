//! The test kit leaves the shared stack as it found it: a test that panics still has its
//! namespace, secret, queue, rule and bus removed when its `Tenant` and `Aws` are dropped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::{Stack, Tenant, unique, wait_for};

/// Names of what the failing test made.
#[derive(Clone, Default)]
struct Made {
    namespace: String,
    secret: String,
    queue: String,
    bus: String,
}

#[tokio::test]
async fn a_failing_test_leaves_nothing_behind() {
    let stack = Stack::connect().await;
    let made = Arc::new(Mutex::new(None));
    let failing = tokio::spawn({
        let (stack, made) = (stack.clone(), made.clone());
        async move {
            let tenant = Tenant::new(&stack, "cleanup", "us-east-1").await;
            let aws = Aws::new(&stack.aws);
            let names = Made {
                namespace: tenant.namespace.clone(),
                secret: unique("cleanup-secret"),
                queue: unique("cleanup"),
                bus: unique("cleanup-bus"),
            };
            aws.upsert_secret(&names.secret, r#"{"k":"cleanup-value"}"#)
                .await;
            aws.event_queue(&names.queue, &names.bus, None, 30).await;
            *made.lock().unwrap() = Some(names);
            panic!("a test fails after making things");
        }
    })
    .await;
    assert!(
        failing.as_ref().is_err_and(|e| e.is_panic()),
        "the failing test panicked"
    );
    let made = made
        .lock()
        .unwrap()
        .clone()
        .expect("the failing test made everything before it panicked");

    // Deletion was requested before the drop returned; finalization may still be under way.
    let namespace = Api::<Namespace>::all(stack.kube.clone())
        .get_opt(&made.namespace)
        .await
        .expect("read the namespace");
    assert!(
        namespace.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
        "namespace {} is being deleted",
        made.namespace
    );
    let aws = Aws::untracked(&stack.aws);
    let rule = format!("{}-rule", made.queue);
    let gone = [
        (
            format!("secret {}", made.secret),
            aws.secrets
                .describe_secret()
                .secret_id(&made.secret)
                .send()
                .await
                .is_err(),
        ),
        (
            format!("queue {}", made.queue),
            aws.sqs
                .get_queue_url()
                .queue_name(&made.queue)
                .send()
                .await
                .is_err(),
        ),
        (
            format!("rule {rule}"),
            aws.events
                .describe_rule()
                .name(&rule)
                .event_bus_name(&made.bus)
                .send()
                .await
                .is_err(),
        ),
        (
            format!("bus {}", made.bus),
            aws.events
                .describe_event_bus()
                .name(&made.bus)
                .send()
                .await
                .is_err(),
        ),
    ];
    let left: Vec<&str> = gone
        .iter()
        .filter(|(_, gone)| !gone)
        .map(|(what, _)| what.as_str())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // And the namespace does finish going (the controller-manager finalizes it).
    wait_for(
        &format!("namespace {} to be gone", made.namespace),
        Duration::from_secs(120),
        || async {
            let ns = Api::<Namespace>::all(stack.kube.clone())
                .get_opt(&made.namespace)
                .await
                .ok()?;
            ns.is_none().then_some(())
        },
    )
    .await;
}
