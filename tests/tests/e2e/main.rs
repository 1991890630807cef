//! End-to-end tests on the real local stack (`scripts/stack up`): kube-apiserver + etcd +
//! controller-manager and the moto AWS emulator, with the controller run as a process.
//! One test binary, so its tests run in parallel; each uses its own names, queue and bus.

mod accelerator;
mod cloudformation;
mod conformance;
mod delivery;
mod emulator;
mod errors;
mod fixtures;
mod helm;
mod multi_cluster;
mod queue;
mod regions;
mod stores;
mod target;
mod tutorial;
