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

/// The account of the roles below: secrets written there are readable only with credentials
/// of that account, which the emulator hands out for an assumed role. A secret of the same
/// name in the default account holds another value, so the synced value shows which
/// credentials were used.
const ROLE_ACCOUNT: &str = "111122223333";

#[tokio::test]
async fn irsa_and_assumed_roles_read_as_the_role() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let tenant = Tenant::new(&stack, "irsa", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let name = unique("irsa-secret");
    Aws::new(&stack.aws)
        .upsert_secret(&name, "default-account-value-1")
        .await;
    let role_account =
        assumed_role_config(&stack, &format!("arn:aws:iam::{ROLE_ACCOUNT}:role/writer")).await;
    Aws::new(&role_account)
        .upsert_secret(&name, "role-account-value-1")
        .await;

    apply_yaml(
        kube,
        &format!(
            r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: reader
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::{ROLE_ACCOUNT}:role/irsa-reader
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: no-role
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: irsa
spec:
  controller: {class}
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      auth:
        jwt:
          serviceAccountRef: {{name: reader}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: no-role
spec:
  controller: {class}
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      auth:
        jwt:
          serviceAccountRef: {{name: no-role}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: chain
spec:
  controller: {class}
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      additionalRoles: [arn:aws:iam::{ROLE_ACCOUNT}:role/hop]
      role: arn:aws:iam::{ROLE_ACCOUNT}:role/reader
      externalID: tenant-42
      sessionTags: [{{key: team, value: blue}}]
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-keys, key: access-key}}
          secretAccessKeySecretRef: {{name: aws-keys, key: secret-access-key}}
"#,
            class = tenant.class
        ),
        ns,
    )
    .await;
    for store in ["irsa", "no-role", "chain", tenant.store.as_str()] {
        apply_yaml(
            kube,
            &format!(
                "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: via-{store}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: {store}, kind: SecretStore}}\n  data:\n    - secretKey: value\n      remoteRef: {{key: {name}}}\n"
            ),
            ns,
        )
        .await;
    }
    let controller = ControllerProcess::start(
        &stack,
        &tenant.namespace,
        &["--controller-class", &tenant.class],
    );

    wait_for_secret_value(
        kube,
        ns,
        "via-irsa",
        "value",
        "role-account-value-1",
        TIMEOUT,
    )
    .await;
    wait_for_secret_value(
        kube,
        ns,
        "via-chain",
        "value",
        "role-account-value-1",
        TIMEOUT,
    )
    .await;
    // The static keys alone read the default account's secret.
    let default_store = format!("via-{}", tenant.store);
    wait_for_secret_value(
        kube,
        ns,
        &default_store,
        "value",
        "default-account-value-1",
        TIMEOUT,
    )
    .await;
    let (_, message) = wait_for_ready(kube, ns, "via-no-role", "False", TIMEOUT).await;
    assert!(
        message.contains("an IAM role must be associated with ServiceAccount")
            && message.contains("eks.amazonaws.com/role-arn"),
        "{message}"
    );
    controller.assert_logs_hide(&["role-account-value-1", "default-account-value-1"]);
}

/// Emulator credentials for `role_arn` (its account), as a test-side writer.
async fn assumed_role_config(stack: &Stack, role_arn: &str) -> aws_config::SdkConfig {
    let sts = aws_sdk_sts::Client::new(&stack.aws);
    let credentials = sts
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("secret-bridge-tests")
        .send()
        .await
        .expect("AssumeRole in the emulator")
        .credentials
        .expect("temporary credentials");
    stack
        .aws
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    credentials.access_key_id,
                    credentials.secret_access_key,
                    Some(credentials.session_token),
                    None,
                    "tests-assumed-role",
                ),
            ),
        )
        .build()
}
