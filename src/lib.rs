//! Core of secret-bridge: the domain, free of any Kubernetes or Lambda runtime and of network access.
//!
//! - [`event`]: what an SQS message body says about a Secrets Manager change.
//! - [`secret_id`]: secret names, full and partial ARNs, and how they compare.
//! - [`matching`]: the index from secret names to the ExternalSecrets that read them.
//! - [`mapping`]: turning a Secrets Manager value into Kubernetes Secret data (ESO semantics).
//! - [`normalized`]: the compact message the fan-out Lambda sends to cluster queues.
//! - [`duration`]: Go-style durations, as ESO's `refreshInterval` uses them.
//! - [`decoding`], [`conversion`], [`rewrite`], [`go_regex`]: what ESO does to the values and keys
//!   read (`decodingStrategy`, `conversionStrategy`, `nullBytePolicy`, `rewrite`), with Go's rules.
//! - [`template`]: ESO's Go-template engine, with a memory and time budget per render.
//! - `aws` (feature `aws`, not part of the domain): the AWS SDK plumbing that the controller,
//!   the Lambda and the tests share.

#[cfg(feature = "aws")]
pub mod aws;
pub mod conversion;
pub mod decoding;
pub mod duration;
pub mod event;
pub mod go_regex;
pub mod mapping;
pub mod matching;
pub mod normalized;
pub mod rewrite;
pub mod secret_id;
pub mod template;
