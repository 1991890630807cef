//! The event path: the SQS consumer, matching an event to the ExternalSecrets that read its
//! secret, and the refreshes it triggers (reconciles, or ESO's force-sync in accelerator mode).

pub mod consumer;
pub mod eso_trigger;
pub mod matching;
pub mod triggers;
