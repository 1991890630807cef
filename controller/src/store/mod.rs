//! SecretStores and ClusterSecretStores: resolving an ExternalSecret's store and credentials,
//! and the stores' own status.

pub mod conditions;
pub mod resolve;
pub mod status;
