//! Liveness: the loops the controller depends on (the SQS consumer, the controllers) report
//! that they are alive; `/healthz` fails when one has died or has not reported for longer
//! than it promised, so that Kubernetes restarts a stuck process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<&'static str, Loop>>>);

struct Loop {
    last_beat: Instant,
    /// The longest silence that still counts as alive.
    max_silence: Duration,
    stopped: bool,
}

/// A loop's handle: beat while alive; dropped without [`Heartbeat::stop`], the loop counts
/// as dead (it ended or panicked).
pub struct Heartbeat {
    health: Health,
    name: &'static str,
    stopped: bool,
}

impl Health {
    /// Registers a loop that promises to beat at least every `max_silence`.
    pub fn register(&self, name: &'static str, max_silence: Duration) -> Heartbeat {
        self.0.lock().expect("health lock").insert(
            name,
            Loop {
                last_beat: Instant::now(),
                max_silence,
                stopped: false,
            },
        );
        Heartbeat {
            health: self.clone(),
            name,
            stopped: false,
        }
    }

    /// `Err` names the loops that died or stalled.
    pub fn check(&self) -> Result<(), String> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<(), String> {
        let loops = self.0.lock().expect("health lock");
        let failing: Vec<String> = loops
            .iter()
            .filter_map(|(name, state)| {
                if state.stopped {
                    return Some(format!("{name}: stopped"));
                }
                let silence = now.saturating_duration_since(state.last_beat);
                (silence > state.max_silence)
                    .then(|| format!("{name}: no progress for {}s", silence.as_secs()))
            })
            .collect();
        if failing.is_empty() {
            Ok(())
        } else {
            Err(failing.join("; "))
        }
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        if let Some(state) = self
            .health
            .0
            .lock()
            .expect("health lock")
            .get_mut(self.name)
        {
            state.last_beat = Instant::now();
        }
    }

    /// The loop ended as it should (shutdown): not a failure.
    pub fn stop(mut self) {
        self.stopped = true;
        self.health.0.lock().expect("health lock").remove(self.name);
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if !self.stopped
            && let Some(state) = self
                .health
                .0
                .lock()
                .expect("health lock")
                .get_mut(self.name)
        {
            state.stopped = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_or_dead_loop_fails_the_check() {
        let health = Health::default();
        let consumer = health.register("sqs-consumer", Duration::from_secs(60));
        assert!(health.check().is_ok());
        let later = Instant::now() + Duration::from_secs(61);
        let failure = health.check_at(later).unwrap_err();
        assert!(failure.contains("sqs-consumer: no progress"), "{failure}");
        consumer.beat();
        assert!(health.check().is_ok());
        drop(consumer);
        assert_eq!(health.check().unwrap_err(), "sqs-consumer: stopped");
    }

    #[test]
    fn a_loop_stopped_on_shutdown_is_not_a_failure() {
        let health = Health::default();
        health.register("controller", Duration::from_secs(1)).stop();
        assert!(health.check().is_ok());
    }
}
