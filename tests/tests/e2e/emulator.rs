//! The emulator must have real AWS's rotation semantics, or a wrong emulator could pass as a
//! correct controller. `scripts/stack` patches moto 5.2.5 for this; this test holds it to it.

use aws_sdk_secretsmanager::types::SecretValueEntry;
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::{Stack, unique};

#[tokio::test]
async fn emulator_rotation_moves_awscurrent_like_aws() {
    let stack = Stack::connect().await;
    let aws = Aws::new(&stack.aws);
    let name = unique("emulator-rotation");
    let first = aws.upsert_secret(&name, "value-one").await;
    let second = aws.rotate(&name, "value-two").await;
    assert_ne!(first.version_id, second.version_id);

    let default_read = aws
        .secrets
        .get_secret_value()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        default_read.secret_string.as_deref(),
        Some("value-two"),
        "a read without a stage returns AWSCURRENT"
    );
    assert_eq!(
        default_read.version_id.as_deref(),
        Some(second.version_id.as_str())
    );
    let previous = aws
        .secrets
        .get_secret_value()
        .secret_id(&name)
        .version_stage("AWSPREVIOUS")
        .send()
        .await
        .unwrap();
    assert_eq!(previous.secret_string.as_deref(), Some("value-one"));
    let batch = aws
        .secrets
        .batch_get_secret_value()
        .secret_id_list(&name)
        .send()
        .await
        .unwrap();
    let values: Vec<&SecretValueEntry> = batch.secret_values().iter().collect();
    assert_eq!(values.len(), 1);
    assert_eq!(
        values[0].secret_string.as_deref(),
        Some("value-two"),
        "BatchGetSecretValue returns AWSCURRENT"
    );

    // A later put keeps exactly one AWSCURRENT.
    aws.upsert_secret(&name, "value-three").await;
    let described = aws
        .secrets
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    let current_holders = described
        .version_ids_to_stages
        .unwrap_or_default()
        .values()
        .filter(|stages| stages.iter().any(|s| s == "AWSCURRENT"))
        .count();
    assert_eq!(current_holders, 1, "exactly one version holds AWSCURRENT");
    let read = aws
        .secrets
        .get_secret_value()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    assert_eq!(read.secret_string.as_deref(), Some("value-three"));
}
