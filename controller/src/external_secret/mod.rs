//! The ExternalSecret controller: when to refresh, reading AWS, the Secret to write (a pure
//! plan), writing it, and the status it reports.

pub mod controller;
pub mod fetch;
pub mod find;
pub mod intake;
mod orphans;
pub mod pacer;
pub mod plan;
pub mod reconcile;
pub mod refresh;
pub mod status;
pub mod target;
