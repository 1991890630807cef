//! The controller's `/metrics` (Prometheus text format), read as numbers: a test waits for a
//! counter to move before it asserts what must not have changed.

use std::time::Duration;

use crate::controller::ControllerProcess;
use crate::wait::wait_for;

/// Messages the SQS consumer deleted after every reconcile they asked for succeeded.
pub const SQS_DELETED: &str = r#"secret_bridge_sqs_messages_total{result="deleted"}"#;
/// Messages the SQS consumer received.
pub const SQS_RECEIVED: &str = r#"secret_bridge_sqs_messages_total{result="received"}"#;
/// Messages left in the queue for a retry.
pub const SQS_KEPT: &str = r#"secret_bridge_sqs_messages_total{result="kept"}"#;
/// Messages the consumer could not read.
pub const SQS_UNREADABLE: &str = r#"secret_bridge_sqs_messages_total{result="unreadable"}"#;
/// Messages received for the last time before SQS moves them to the dead-letter queue.
pub const SQS_DEAD_LETTERED: &str = r#"secret_bridge_sqs_messages_total{result="dead_lettered"}"#;

/// One scrape of `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics {
            text: text.to_owned(),
        }
    }

    /// The value of `sample`, written as it appears (`name{label="value"}`); 0 when absent,
    /// as a counter that was never incremented is not exported.
    pub fn value(&self, sample: &str) -> f64 {
        self.text
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .map(|value| {
                value
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{sample} is not a number ({value}): {e}"))
            })
            .unwrap_or(0.0)
    }

    /// Panics, showing the scrape, unless `sample` is `expected`.
    pub fn assert_value(&self, sample: &str, expected: f64) {
        assert_eq!(self.value(sample), expected, "{sample}:\n{}", self.text);
    }

    /// Panics, showing the scrape, unless the counter `sample` counted at least once.
    pub fn assert_counted(&self, sample: &str) {
        assert!(
            self.value(sample) >= 1.0,
            "{sample} never counted:\n{}",
            self.text
        );
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl ControllerProcess {
    /// Scrapes the controller's `/metrics`; panics unless it answers 200.
    pub async fn metrics(&self) -> Metrics {
        let (status, body) = self.probe_get("/metrics").await;
        assert_eq!(status, 200, "GET /metrics: {body}");
        Metrics::parse(&body)
    }

    /// Waits until `sample` is at least `at_least`; returns its value then.
    pub async fn wait_for_metric(&self, sample: &str, at_least: f64, timeout: Duration) -> f64 {
        wait_for(
            &format!("{sample} >= {at_least} on the controller's /metrics"),
            timeout,
            || async {
                let value = self.metrics().await.value(sample);
                (value >= at_least).then_some(value)
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_sample_by_its_name_and_labels() {
        let metrics = Metrics::parse(
            "# HELP secret_bridge_sqs_messages SQS messages by outcome\n\
             secret_bridge_sqs_messages_total{result=\"received\"} 3\n\
             secret_bridge_sqs_messages_total{result=\"deleted\"} 2\n\
             secret_bridge_reconciles_total{result=\"success\"} 7\n",
        );
        assert_eq!(metrics.value(SQS_RECEIVED), 3.0);
        assert_eq!(metrics.value(SQS_DELETED), 2.0);
        assert_eq!(
            metrics.value(r#"secret_bridge_sqs_messages_total{result="kept"}"#),
            0.0
        );
        assert_eq!(metrics.value("secret_bridge_reconciles_total"), 0.0);
    }
}
