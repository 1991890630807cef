//! secret-bridge's Kubernetes controller: syncs `external-secrets.io` ExternalSecrets from AWS
//! Secrets Manager into Kubernetes Secrets, refreshed by SQS events and periodic resyncs.

pub mod api;
pub mod aws;
pub mod cache;
pub mod cluster_external_secret;
mod error;
pub mod events;
pub mod external_secret;
pub mod leader;
pub mod rollout;
pub mod store;
pub mod telemetry;

/// The version and the commit it was built from, as `--version` prints them.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SECRET_BRIDGE_COMMIT"),
    ")"
);

/// The one field manager under which every write to Kubernetes is made (server-side apply).
pub const FIELD_MANAGER: &str = "secret-bridge";

/// Label set on every Secret we write, as ESO sets it; the controller watches only these.
pub const MANAGED_LABEL: &str = "reconcile.external-secrets.io/managed";

pub use error::{ApiError, Error};

pub type Result<T, E = Error> = std::result::Result<T, E>;
