//! secret-bridge's Kubernetes controller: syncs `external-secrets.io` ExternalSecrets from AWS
//! Secrets Manager into Kubernetes Secrets, refreshed by SQS events and periodic resyncs.

pub mod api;
pub mod aws;
pub mod cluster_external_secret;
pub mod controller;
pub mod credentials;
pub mod eso_trigger;
pub mod find;
pub mod http;
pub mod index;
pub mod metrics;
pub mod namespaces;
pub mod object_cache;
pub mod queue;
pub mod reconcile;
pub mod refresh;
pub mod store;
pub mod store_status;
pub mod stores;
pub mod sync;
pub mod target;
pub mod trigger;

/// The one field manager under which every write to Kubernetes is made (server-side apply).
pub const FIELD_MANAGER: &str = "secret-bridge";

/// Label set on every Secret we write, as ESO sets it; the controller watches only these.
pub const MANAGED_LABEL: &str = "reconcile.external-secrets.io/managed";

/// Why a sync failed. Messages say what is wrong and where, never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ExternalSecret or its store is not valid.
    #[error("{0}")]
    Spec(String),
    /// A field this controller does not implement (another provider, generators…).
    #[error("unsupported field: {0}")]
    Unsupported(String),
    /// The store cannot be used (missing, wrong namespace, bad credentials reference).
    #[error("{0}")]
    Store(String),
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
    #[error(transparent)]
    Mapping(#[from] secret_bridge::mapping::MappingError),
    /// The target Secret belongs to someone else.
    #[error("{0}")]
    Conflict(String),
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }

    /// The `Ready=False` condition reason, as ESO names it.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Unsupported(_) => "Unsupported",
            _ => "SecretSyncedError",
        }
    }

    /// Whether retrying soon may succeed without anyone changing anything (the network, a
    /// throttle, the apiserver, a credentials Secret being replaced). An event whose refresh
    /// failed this way stays in the queue for a retry; other failures are final for the event
    /// (the ExternalSecret's own retries and its status take over), so they are not retried
    /// into the dead-letter queue.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Store(_) | Error::Kube { .. } => true,
            Error::Aws(aws) => {
                !aws.is_deleted()
                    && aws.code != "AccessDeniedException"
                    && aws.code != "DecryptionFailure"
            }
            Error::Spec(_) | Error::Unsupported(_) | Error::Mapping(_) | Error::Conflict(_) => {
                false
            }
        }
    }

    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Spec(_) => "spec",
            Error::Unsupported(_) => "unsupported",
            Error::Store(_) => "store",
            Error::Aws(_) => "aws",
            Error::Mapping(_) => "mapping",
            Error::Conflict(_) => "conflict",
            Error::Kube { .. } => "kubernetes",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
