//! A tenant: a namespace with the emulator's keys and a SecretStore of one controller class,
//! so that tests running at the same time never serve each other's resources. Dropping it
//! deletes its namespaces (see [`crate::cleanup`]), also when the test panics.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Client;

use crate::cleanup::Leftovers;
use crate::controller::ControllerProcess;
use crate::kube_helpers::{ensure_namespace, install_crds, put_secret};
use crate::manifest::{self, ACCESS_KEY, KEYS_SECRET, Manifest, SECRET_ACCESS_KEY};
use crate::wait::wait_for_secret_value;
use crate::{Stack, unique};

pub struct Tenant {
    pub namespace: String,
    /// The controller class of the tenant's store (and of the controller serving it).
    pub class: String,
    /// The name of the tenant's SecretStore.
    pub store: String,
    kube: Client,
    /// The tenant's namespaces, deleted on drop.
    leftovers: Leftovers,
}

impl Tenant {
    /// A fresh namespace with the emulator's keys in Secret [`KEYS_SECRET`] and a SecretStore
    /// `aws` for region `region` served by controller class `class` (the namespace's name).
    pub async fn new(stack: &Stack, prefix: &str, region: &str) -> Tenant {
        install_crds(&stack.kube).await;
        let namespace = unique(prefix);
        let leftovers = Leftovers::default();
        leftovers.namespace(&namespace);
        ensure_namespace(&stack.kube, &namespace).await;
        put_keys(stack, &namespace).await;
        let tenant = Tenant {
            class: namespace.clone(),
            store: "aws".into(),
            namespace,
            kube: stack.kube.clone(),
            leftovers,
        };
        tenant
            .secret_store(&tenant.store)
            .region(region)
            .static_keys()
            .apply(&tenant.kube, &tenant.namespace)
            .await;
        tenant
    }

    /// Creates another namespace `name` for the test, deleted with the tenant's.
    pub async fn other_namespace(&self, name: &str) {
        self.leftovers.namespace(name);
        ensure_namespace(&self.kube, name).await;
    }

    /// Deletes the namespace `name`, which the test creates itself, with the tenant's.
    pub fn adopt_namespace(&self, name: &str) {
        self.leftovers.namespace(name);
    }

    /// A SecretStore `name` of the tenant's class, without auth yet (not applied).
    pub fn secret_store(&self, name: &str) -> manifest::Store {
        manifest::Store::secret_store(name).controller(&self.class)
    }

    /// A ClusterSecretStore `name` of the tenant's class, without auth yet (not applied).
    pub fn cluster_secret_store(&self, name: &str) -> manifest::Store {
        manifest::Store::cluster_secret_store(name).controller(&self.class)
    }

    /// An ExternalSecret `name` reading through the tenant's SecretStore (not applied).
    pub fn external_secret(&self, name: &str) -> manifest::ExternalSecret {
        manifest::ExternalSecret::new(name).secret_store(&self.store)
    }

    /// Applies `manifest` in the tenant's namespace.
    pub async fn apply(&self, manifest: &impl Manifest) {
        manifest.apply(&self.kube, &self.namespace).await;
    }

    /// Waits until the Secret `name` of the tenant's namespace has `expected` under `key`;
    /// returns its data.
    pub async fn wait_for_value(
        &self,
        name: &str,
        key: &str,
        expected: &str,
        timeout: Duration,
    ) -> BTreeMap<String, String> {
        wait_for_secret_value(&self.kube, &self.namespace, name, key, expected, timeout).await
    }

    /// The controller serving the tenant's class, with `args` after `--controller-class`; its
    /// log is `target/test-logs/<namespace>.log`.
    pub fn start_controller(&self, stack: &Stack, args: &[&str]) -> ControllerProcess {
        let mut all = vec!["--controller-class", self.class.as_str()];
        all.extend_from_slice(args);
        ControllerProcess::start(stack, &self.namespace, &all)
    }
}

/// Writes the emulator's keys into Secret [`KEYS_SECRET`] of `namespace`.
pub async fn put_keys(stack: &Stack, namespace: &str) {
    put_secret(
        &stack.kube,
        namespace,
        KEYS_SECRET,
        &[
            (ACCESS_KEY, &stack.env["AWS_ACCESS_KEY_ID"]),
            (SECRET_ACCESS_KEY, &stack.env["AWS_SECRET_ACCESS_KEY"]),
        ],
    )
    .await;
}
