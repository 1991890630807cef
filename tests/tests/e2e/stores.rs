//! Which namespaces may use a store: a SecretStore only its own, a ClusterSecretStore the
//! namespaces its `conditions` allow (by name, by label selector, by regular expression).

use std::time::Duration;

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::*;
use secret_bridge_tests::{ControllerProcess, Stack, unique, wait_for};

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
    // Relabelled into the selector, the namespace is allowed at the next retry: the
    // controller's Namespace cache follows label changes.
    apply_yaml(
        kube,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {denied}\n  labels: {{team: green}}\n"),
        a,
    )
    .await;
    wait_for_secret_value(
        kube,
        &denied,
        "app",
        "value",
        "store-isolation-value-1",
        Duration::from_secs(60),
    )
    .await;
    controller.assert_logs_hide(&["store-isolation-value-1"]);
}

/// The account of the roles below: secrets written there are readable only with credentials
/// of that account, which the emulator hands out for an assumed role. A secret of the same
/// name in the default account holds another value, so the synced value shows which
/// credentials were used.
const ROLE_ACCOUNT: &str = "111122223333";
/// An account holding no secret: reading with its credentials alone finds nothing.
const HOP_ACCOUNT: &str = "444455556666";

#[tokio::test]
async fn irsa_and_assumed_roles_read_as_the_role() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let tenant = Tenant::new(&stack, "irsa", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    // A namespace without credentials or ServiceAccounts, allowed to use a ClusterSecretStore
    // whose ServiceAccount lives in the tenant's namespace.
    let consumer = unique("irsa-consumer");
    ensure_namespace(kube, &consumer).await;
    let cluster_store = unique("irsa-cluster");
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
  name: hop
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::{HOP_ACCOUNT}:role/irsa-hop
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: no-role
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: irsa-role
spec:
  controller: {class}
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      role: arn:aws:iam::{ROLE_ACCOUNT}:role/reader
      externalID: tenant-7
      auth:
        jwt:
          serviceAccountRef: {{name: hop, audiences: [secret-bridge-tests]}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: {cluster_store}
spec:
  controller: {class}
  conditions:
    - namespaces: [{consumer}]
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      auth:
        jwt:
          serviceAccountRef: {{name: reader, namespace: {ns}}}
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
    for store in [
        "irsa",
        "irsa-role",
        "no-role",
        "chain",
        tenant.store.as_str(),
    ] {
        apply_yaml(
            kube,
            &format!(
                "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: via-{store}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: {store}, kind: SecretStore}}\n  data:\n    - secretKey: value\n      remoteRef: {{key: {name}}}\n"
            ),
            ns,
        )
        .await;
    }
    apply_yaml(
        kube,
        &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: via-cluster\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: {cluster_store}, kind: ClusterSecretStore}}\n  data:\n    - secretKey: value\n      remoteRef: {{key: {name}}}\n"
        ),
        &consumer,
    )
    .await;
    let controller = ControllerProcess::start(
        &stack,
        &tenant.namespace,
        &["--controller-class", &tenant.class],
    );

    // IRSA in the hop account, then `role` (with its external ID) into the role account.
    wait_for_secret_value(
        kube,
        ns,
        "via-irsa-role",
        "value",
        "role-account-value-1",
        TIMEOUT,
    )
    .await;
    wait_for_secret_value(
        kube,
        &consumer,
        "via-cluster",
        "value",
        "role-account-value-1",
        TIMEOUT,
    )
    .await;
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

#[tokio::test]
async fn store_status_reports_validation_as_eso() {
    let stack = Stack::connect().await;
    let kube = &stack.kube;
    let tenant = Tenant::new(&stack, "store-status", "us-east-1").await;
    let ns = tenant.namespace.as_str();
    let referent = unique("status-referent");
    let bad_regex = unique("status-regex");
    let other_class = unique("status-other-class");
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
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: irsa
spec:
  controller: {class}
  refreshInterval: 2
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
  name: missing-keys
spec:
  controller: {class}
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: nowhere, key: access-key}}
          secretAccessKeySecretRef: {{name: nowhere, key: secret-access-key}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: vault
spec:
  controller: {class}
  provider:
    vault: {{server: "https://vault.example"}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: other-class
spec:
  controller: {other_class}
  provider:
    aws: {{service: SecretsManager, region: us-east-1}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: {referent}
spec:
  controller: {class}
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-keys, key: access-key}}
          secretAccessKeySecretRef: {{name: aws-keys, key: secret-access-key}}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata:
  name: {bad_regex}
spec:
  controller: {class}
  conditions:
    - namespaceRegexes: ["("]
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-keys, key: access-key, namespace: {ns}}}
          secretAccessKeySecretRef: {{name: aws-keys, key: secret-access-key, namespace: {ns}}}
"#,
            class = tenant.class
        ),
        ns,
    )
    .await;
    let controller = ControllerProcess::start(
        &stack,
        &tenant.namespace,
        &["--controller-class", &tenant.class],
    );

    let ready = wait_for_store(kube, "SecretStore", Some(ns), &tenant.store).await;
    assert_eq!(
        ready,
        StoreReady::new("True", "Valid", "store validated"),
        "static keys"
    );
    let ready = wait_for_store(kube, "SecretStore", Some(ns), "irsa").await;
    assert_eq!(
        ready,
        StoreReady::new("True", "Valid", "store validated"),
        "IRSA"
    );
    let ready = wait_for_store(kube, "SecretStore", Some(ns), "missing-keys").await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidProviderConfig")
    );
    assert!(
        ready.message.starts_with("unable to create client: ")
            && ready
                .message
                .contains(&format!("Secret {ns}/nowhere not found")),
        "{}",
        ready.message
    );
    let ready = wait_for_store(kube, "SecretStore", Some(ns), "vault").await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Unsupported"),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("spec.provider.vault"),
        "{}",
        ready.message
    );
    let ready = wait_for_store(kube, "ClusterSecretStore", None, &referent).await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "ValidationUnknown"),
        "{}",
        ready.message
    );
    let ready = wait_for_store(kube, "ClusterSecretStore", None, &bad_regex).await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidStoreConfiguration"),
        "{}",
        ready.message
    );
    // The failure is also a Warning Event on the store.
    wait_for(
        "a Warning event on SecretStore missing-keys",
        TIMEOUT,
        || async {
            let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(kube.clone(), ns)
                .list(&Default::default())
                .await
                .ok()?;
            events
                .items
                .iter()
                .any(|e| {
                    e.involved_object.name.as_deref() == Some("missing-keys")
                        && e.type_.as_deref() == Some("Warning")
                        && e.reason.as_deref() == Some("InvalidProviderConfig")
                })
                .then_some(())
        },
    )
    .await;
    // Re-validated every refreshInterval seconds, without rewriting an unchanged status.
    let before = store_object(kube, "SecretStore", Some(ns), "irsa").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let logs = controller.logs();
    assert!(
        logs.matches("store credentials verified").count() >= 3,
        "the IRSA store is re-validated every 2 s"
    );
    let after = store_object(kube, "SecretStore", Some(ns), "irsa").await;
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "an unchanged status is not written again"
    );
    // A store of another controller class is left alone.
    let other = store_object(kube, "SecretStore", Some(ns), "other-class").await;
    assert!(other.data.get("status").is_none(), "{:?}", other.data);
}

#[derive(Debug, PartialEq, Eq)]
struct StoreReady {
    status: String,
    reason: String,
    message: String,
}

impl StoreReady {
    fn new(status: &str, reason: &str, message: &str) -> Self {
        StoreReady {
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
        }
    }
}

async fn store_object(
    kube: &kube::Client,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> DynamicObject {
    let gvk = GroupVersionKind::gvk("external-secrets.io", "v1", kind);
    let resource = ApiResource::from_gvk(&gvk);
    let api = match namespace {
        Some(ns) => Api::<DynamicObject>::namespaced_with(kube.clone(), ns, &resource),
        None => Api::<DynamicObject>::all_with(kube.clone(), &resource),
    };
    api.get(name).await.expect("read the store")
}

/// The store's `Ready` condition once it has one; also checks `capabilities: ReadOnly`.
async fn wait_for_store(
    kube: &kube::Client,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> StoreReady {
    wait_for(
        &format!("{kind} {name} Ready condition"),
        TIMEOUT,
        || async {
            let store = store_object(kube, kind, namespace, name).await;
            let status = store.data.get("status")?;
            assert_eq!(status["capabilities"], "ReadOnly");
            let ready = status["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?;
            let text = |key: &str| ready[key].as_str().unwrap_or_default().to_owned();
            Some(StoreReady {
                status: text("status"),
                reason: text("reason"),
                message: text("message"),
            })
        },
    )
    .await
}
