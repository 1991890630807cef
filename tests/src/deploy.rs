//! What a reader deploys, exercised on the local stack: the Helm chart, the CloudFormation
//! template, the fan-out Lambda, and the guides' shell steps.

pub mod cloudformation;
pub mod helm;
pub mod lambda;
pub mod steps;
