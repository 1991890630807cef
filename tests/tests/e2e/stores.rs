//! Which namespaces may use a store: a SecretStore only its own, a ClusterSecretStore the
//! namespaces its `conditions` allow (by name, by label selector, by regular expression).

use std::time::Duration;

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::{apply_value, apply_yaml, external_secret, secret_data};
use secret_bridge_tests::manifest::{self, Manifest};
use secret_bridge_tests::wait::{wait_for_event, wait_for_ready, wait_for_secret_value};
use secret_bridge_tests::{Stack, Tenant, unique, wait_for};
use serde_json::json;

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
    for ns in [&by_label, &by_regex, &denied, &other] {
        tenant.adopt_namespace(ns);
    }
    apply_yaml(
        kube,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {by_label}\n  labels: {{team: blue}}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {by_regex}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {denied}\n  labels: {{team: red}}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {other}\n"
        ),
        a,
    )
    .await;
    let store = unique("limited");
    tenant
        .cluster_secret_store(&store)
        .static_keys_in(a)
        .allow_namespaces(&[a])
        .condition(json!({"namespaceSelector": {"matchExpressions": [
            {"key": "team", "operator": "In", "values": ["blue", "green"]},
        ]}}))
        .allow_namespace_regexes(&["^store-regex-ok-"])
        .apply(kube, a)
        .await;
    let secret = unique("store-value");
    aws.upsert_secret(&secret, "store-isolation-value-1").await;
    let controller = tenant.start_controller(&stack, &[]);

    let app = manifest::ExternalSecret::new("app")
        .refresh_interval("1h")
        .data("value", &secret);
    for ns in [a, &by_label, &by_regex, &denied] {
        app.clone()
            .cluster_secret_store(&store)
            .apply(kube, ns)
            .await;
    }
    // The SecretStore of namespace A, named from namespace B.
    app.secret_store(&tenant.store).apply(kube, &other).await;

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
    // Namespace B has no SecretStore of that name: nothing proves its ExternalSecret is ours,
    // so the controller (it has a class) leaves it alone. It was reconciled with the others.
    let untouched = external_secret(kube, &other, "app")
        .await
        .expect("ExternalSecret app in namespace B");
    assert!(
        untouched.ready_condition().is_none(),
        "no status on an ExternalSecret whose store is not found: {:?}",
        untouched.status
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
    tenant.other_namespace(&consumer).await;
    let cluster_store = unique("irsa-cluster");
    let name = unique("irsa-secret");
    let default_account = Aws::new(&stack.aws);
    default_account
        .upsert_secret(&name, "default-account-value-1")
        .await;
    let role_account =
        assumed_role_config(&stack, &format!("arn:aws:iam::{ROLE_ACCOUNT}:role/writer")).await;
    let role_account = Aws::new(&role_account);
    role_account
        .upsert_secret(&name, "role-account-value-1")
        .await;

    for (account, role) in [
        (
            "reader",
            Some(format!("arn:aws:iam::{ROLE_ACCOUNT}:role/irsa-reader")),
        ),
        (
            "hop",
            Some(format!("arn:aws:iam::{HOP_ACCOUNT}:role/irsa-hop")),
        ),
        ("no-role", None),
    ] {
        apply_service_account(kube, ns, account, role.as_deref()).await;
    }
    let store = |name: &str| tenant.secret_store(name);
    let reader = format!("arn:aws:iam::{ROLE_ACCOUNT}:role/reader");
    for store in [
        store("irsa-role")
            .role(&reader, Some("tenant-7"))
            .service_account_for("hop", None, &["secret-bridge-tests"]),
        tenant
            .cluster_secret_store(&cluster_store)
            .allow_namespaces(&[&consumer])
            .service_account("reader", Some(ns)),
        store("irsa").service_account("reader", None),
        store("no-role").service_account("no-role", None),
        tenant
            .secret_store("chain")
            .static_keys()
            .additional_roles(&[&format!("arn:aws:iam::{ROLE_ACCOUNT}:role/hop")])
            .role(&reader, Some("tenant-42"))
            .session_tag("team", "blue"),
    ] {
        store.apply(kube, ns).await;
    }
    for store in [
        "irsa",
        "irsa-role",
        "no-role",
        "chain",
        tenant.store.as_str(),
    ] {
        manifest::ExternalSecret::new(&format!("via-{store}"))
            .secret_store(store)
            .refresh_interval("1h")
            .data("value", &name)
            .apply(kube, ns)
            .await;
    }
    manifest::ExternalSecret::new("via-cluster")
        .cluster_secret_store(&cluster_store)
        .refresh_interval("1h")
        .data("value", &name)
        .apply(kube, &consumer)
        .await;
    let controller = tenant.start_controller(&stack, &[]);

    // IRSA in the hop account, then `role` (with its external ID) into the role account.
    tenant
        .wait_for_value("via-irsa-role", "value", "role-account-value-1", TIMEOUT)
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
    tenant
        .wait_for_value("via-irsa", "value", "role-account-value-1", TIMEOUT)
        .await;
    tenant
        .wait_for_value("via-chain", "value", "role-account-value-1", TIMEOUT)
        .await;
    // The static keys alone read the default account's secret.
    let default_store = format!("via-{}", tenant.store);
    tenant
        .wait_for_value(&default_store, "value", "default-account-value-1", TIMEOUT)
        .await;
    let (_, message) = wait_for_ready(kube, ns, "via-no-role", "False", TIMEOUT).await;
    assert!(
        message.contains("an IAM role must be associated with ServiceAccount")
            && message.contains("eks.amazonaws.com/role-arn"),
        "{message}"
    );
    controller.assert_logs_hide(&["role-account-value-1", "default-account-value-1"]);
}

/// A ServiceAccount `name`, with the IRSA annotation when it has a role.
async fn apply_service_account(kube: &kube::Client, ns: &str, name: &str, role_arn: Option<&str>) {
    let mut account =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}});
    if let Some(role_arn) = role_arn {
        account["metadata"]["annotations"] = json!({"eks.amazonaws.com/role-arn": role_arn});
    }
    apply_value(kube, account, ns).await;
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
    let role = format!("arn:aws:iam::{ROLE_ACCOUNT}:role/irsa-reader");
    apply_service_account(kube, ns, "reader", Some(&role)).await;
    let store = |name: &str| tenant.secret_store(name);
    for store in [
        store("irsa")
            .refresh_interval(2)
            .service_account("reader", None),
        store("missing-keys").static_keys_from("nowhere", None),
        store("vault").provider(json!({"vault": {"server": "https://vault.example"}})),
        manifest::Store::secret_store("other-class").controller(&other_class),
        // Keys without a namespace: a ClusterSecretStore reads them from the namespace of
        // each ExternalSecret, which validation cannot know.
        tenant.cluster_secret_store(&referent).static_keys(),
        tenant
            .cluster_secret_store(&bad_regex)
            .static_keys_in(ns)
            .allow_namespace_regexes(&["("]),
    ] {
        store.apply(kube, ns).await;
    }
    let controller = tenant.start_controller(&stack, &[]);

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
    let event = wait_for_event(kube, ns, "missing-keys", "InvalidProviderConfig", TIMEOUT).await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    // Re-validated every refreshInterval seconds, without rewriting an unchanged status. Two
    // re-validations after the first read: the status write of the first, if any, is done
    // by the time the second is logged.
    let irsa_verified = || {
        controller
            .logs()
            .lines()
            .filter(|l| {
                l.contains("store credentials verified") && l.contains(r#"SecretStore "irsa""#)
            })
            .count()
    };
    let before = store_object(kube, "SecretStore", Some(ns), "irsa").await;
    let verified_before = irsa_verified();
    wait_for(
        "the IRSA store to be re-validated twice (every 2 s)",
        Duration::from_secs(6),
        || async { (irsa_verified() >= verified_before + 2).then_some(()) },
    )
    .await;
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
