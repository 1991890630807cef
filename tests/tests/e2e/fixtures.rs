//! Setup shared by the tests: a namespace with AWS credentials and a SecretStore of one
//! controller class, so that tests running at the same time never serve each other's resources.

use secret_bridge_tests::kube_helpers::{apply_yaml, ensure_namespace, install_crds, put_secret};
use secret_bridge_tests::{Stack, unique};

pub struct Tenant {
    pub namespace: String,
    /// The controller class of the tenant's store (and of the controller serving it).
    pub class: String,
    pub store: String,
}

impl Tenant {
    /// A fresh namespace with the emulator's keys in Secret `aws-keys` and a SecretStore `aws`
    /// for region `region` served by controller class `class`.
    pub async fn new(stack: &Stack, prefix: &str, region: &str) -> Tenant {
        install_crds(&stack.kube).await;
        let namespace = unique(prefix);
        ensure_namespace(&stack.kube, &namespace).await;
        put_secret(
            &stack.kube,
            &namespace,
            "aws-keys",
            &[
                ("access-key", &stack.env["AWS_ACCESS_KEY_ID"]),
                ("secret-access-key", &stack.env["AWS_SECRET_ACCESS_KEY"]),
            ],
        )
        .await;
        let tenant = Tenant {
            class: namespace.clone(),
            store: "aws".into(),
            namespace,
        };
        apply_yaml(
            &stack.kube,
            &format!(
                r#"
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: {store}
spec:
  controller: {class}
  provider:
    aws:
      service: SecretsManager
      region: {region}
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-keys, key: access-key}}
          secretAccessKeySecretRef: {{name: aws-keys, key: secret-access-key}}
"#,
                store = tenant.store,
                class = tenant.class,
            ),
            &tenant.namespace,
        )
        .await;
        tenant
    }

    /// Applies an ExternalSecret `name` in the tenant's namespace with the given spec body
    /// (YAML lines indented by four spaces, under `spec:` and after `secretStoreRef`).
    pub async fn external_secret(&self, stack: &Stack, name: &str, spec: &str) {
        let yaml = format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: {name}\nspec:\n  secretStoreRef:\n    name: {store}\n    kind: SecretStore\n{spec}",
            store = self.store
        );
        apply_yaml(&stack.kube, &yaml, &self.namespace).await;
    }
}
