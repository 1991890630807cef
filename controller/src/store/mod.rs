//! SecretStores and ClusterSecretStores: resolving an ExternalSecret's store and credentials,
//! the stores' own status, and the flood gate between the two.

pub mod conditions;
pub mod flood_gate;
pub mod recheck;
pub mod resolve;
pub mod status;
