//! End-to-end tests on the real local stack (`scripts/stack up`): kube-apiserver + etcd +
//! controller-manager and the moto AWS emulator, with the controller run as a process.
//! One test binary, so its tests run in parallel; each uses its own names, queue and bus.
//! What they share (tenants, builders, waits, deployments) is in `secret_bridge_tests`.

mod accelerator;
mod cleanup;
mod cloudformation;
mod cloudformation_operations;
mod cluster_external_secret;
mod conformance;
mod crds;
mod delivery;
mod emulator;
mod errors;
mod flood_gate;
mod helm;
mod helm_release;
mod install_crds;
mod migration;
mod monitoring;
mod multi_cluster;
mod queue;
mod readme_deploy;
mod refresh_floor;
mod regions;
mod rollout;
mod signals;
mod stores;
mod target;
mod tutorial;
