//! The CloudFormation template `infra/cloudformation/secret-bridge.yaml`, deployed on the
//! emulator as a stack that lives only as long as a test needs it.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use aws_sdk_cloudformation::error::DisplayErrorContext;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use futures::FutureExt;

use crate::stack::workspace_root;
use crate::wait_for;

/// The template, relative to the workspace root.
pub const TEMPLATE: &str = "infra/cloudformation/secret-bridge.yaml";

/// Deploys the template as stack `name`, runs `test` with its outputs, and deletes the stack
/// afterwards, also when `test` panics.
pub async fn with_stack<T>(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    parameters: &[(&str, &str)],
    test: impl AsyncFnOnce(Outputs) -> T,
) -> T {
    let outputs = deploy(cfn, name, parameters).await;
    let result = AssertUnwindSafe(test(outputs)).catch_unwind().await;
    cfn.delete_stack()
        .stack_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteStack {name}: {}", DisplayErrorContext(e)));
    wait_for(
        &format!("stack {name} to be deleted"),
        Duration::from_secs(60),
        || async {
            match cfn.describe_stacks().stack_name(name).send().await {
                Err(_) => Some(()),
                Ok(out) => out
                    .stacks()
                    .iter()
                    .all(|s| s.stack_status() == Some(&StackStatus::DeleteComplete))
                    .then_some(()),
            }
        },
    )
    .await;
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A deployed stack's outputs.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub stack: String,
    pub values: HashMap<String, String>,
}

impl Outputs {
    /// The output `key`; panics naming the stack when it has none.
    pub fn get(&self, key: &str) -> String {
        self.values.get(key).cloned().unwrap_or_else(|| {
            panic!(
                "stack {} has no output {key}: {:?}",
                self.stack, self.values
            )
        })
    }

    pub fn contains(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }
}

/// CreateStack, then DescribeStacks until CREATE_COMPLETE; returns the outputs.
pub async fn deploy(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    parameters: &[(&str, &str)],
) -> Outputs {
    let template =
        std::fs::read_to_string(workspace_root().join(TEMPLATE)).expect("read the template");
    cfn.create_stack()
        .stack_name(name)
        .template_body(template)
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(key, value)| {
                    Parameter::builder()
                        .parameter_key(*key)
                        .parameter_value(*value)
                        .build()
                })
                .collect(),
        ))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStack {name}: {}", DisplayErrorContext(e)));
    let created = wait_for(
        &format!("stack {name} to be CREATE_COMPLETE"),
        Duration::from_secs(60),
        || async {
            let out = cfn
                .describe_stacks()
                .stack_name(name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("DescribeStacks {name}: {}", DisplayErrorContext(e)));
            let described = out.stacks().first()?.clone();
            match described.stack_status() {
                Some(StackStatus::CreateComplete) => Some(described),
                Some(StackStatus::CreateInProgress) | None => None,
                Some(status) => panic!(
                    "stack {name} is {status}: {}",
                    described.stack_status_reason().unwrap_or("no reason given")
                ),
            }
        },
    )
    .await;
    Outputs {
        stack: name.to_owned(),
        values: created
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect(),
    }
}
