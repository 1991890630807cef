//! Which namespaces may use a store: a SecretStore only its own, a ClusterSecretStore the
//! namespaces its `conditions` allow (by name, by label selector, by regular expression).

use std::time::Duration;

use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::*;
use secret_bridge_tests::{ControllerProcess, Stack, unique};

use crate::fixtures::Tenant;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn stores_serve_only_the_namespaces_they_allow() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let aws = Aws::new(&stack.aws);
    // Namespace A holds the credentials and a SecretStore; the other namespaces have none.
    let tenant = Tenant::new(&stack, "store-a", "us-east-1").await;
    let a = tenant.namespace.as_str();
    let by_label = unique("store-label");
    let by_regex = unique("store-regex-ok");
    let denied = unique("store-denied");
    let other = unique("store-b");
    apply_yaml(
        kube,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {by_label}\n  labels: {{team: blue}}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {by_regex}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {denied}\n  labels: {{team: red}}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {other}\n"
        ),
        a,
    )
    .await;
    let store = unique("limited");
    apply_yaml(
        kube,
        &format!(
            r#"
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: {store}
spec:
  controller: {class}
  conditions:
    - namespaces: [{a}]
    - namespaceSelector:
        matchExpressions:
          - {{key: team, operator: In, values: [blue, green]}}
    - namespaceRegexes: ["^store-regex-ok-"]
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-keys, key: access-key, namespace: {a}}}
          secretAccessKeySecretRef: {{name: aws-keys, key: secret-access-key, namespace: {a}}}
"#,
            class = tenant.class,
        ),
        a,
    )
    .await;
    let secret = unique("store-value");
    aws.upsert_secret(&secret, "store-isolation-value-1").await;
    let controller = ControllerProcess::start(
        &stack,
        &tenant.namespace,
        &["--controller-class", &tenant.class],
    );

    let external_secret = |kind: &str, store: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: app\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: {store}, kind: {kind}}}\n  data:\n    - secretKey: value\n      remoteRef: {{key: {secret}}}\n"
        )
    };
    for ns in [a, &by_label, &by_regex, &denied] {
        apply_yaml(kube, &external_secret("ClusterSecretStore", &store), ns).await;
    }
    // The SecretStore of namespace A, named from namespace B.
    apply_yaml(kube, &external_secret("SecretStore", &tenant.store), &other).await;

    for ns in [a, &by_label, &by_regex] {
        wait_for_secret_value(kube, ns, "app", "value", "store-isolation-value-1", TIMEOUT).await;
    }
    let (reason, message) = wait_for_ready(kube, &denied, "app", "False", TIMEOUT).await;
    assert_eq!(reason, "SecretSyncedError", "{message}");
    assert!(
        message.contains(&format!(
            "{store:?} is not allowed from namespace {denied:?}"
        )),
        "{message}"
    );
    let (_, message) = wait_for_ready(kube, &other, "app", "False", TIMEOUT).await;
    assert!(
        message.contains(&format!("SecretStore {:?} not found", tenant.store)),
        "{message}"
    );
    for ns in [&denied, &other] {
        assert!(
            secret_data(kube, ns, "app").await.is_none(),
            "no Secret may be written in {ns}"
        );
    }
    controller.assert_logs_hide(&["store-isolation-value-1"]);
}
