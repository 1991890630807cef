//! What the bench reads from the controller process: its memory (Linux /proc) and its
//! Prometheus histograms (/metrics).

use std::path::PathBuf;
use std::time::Duration;

use secret_bridge_tests::faults::recorded_pid;
use secret_bridge_tests::stack::workspace_root;

/// Resident memory now and at its peak, in KiB (`VmRSS`, `VmHWM`), and the anonymous part of
/// it now (`RssAnon`: the heap and stacks, without the binary's code pages, which are
/// file-backed, shared and reclaimable; about 22 MiB of the release controller).
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
    /// `None` on kernels without `RssAnon` (before 4.5).
    pub anon_kib: Option<u64>,
}

/// The controller started for `class`: the only process whose command line is the controller
/// binary with that (unique) `--controller-class`. `ControllerProcess` keeps its pid private.
pub fn controller_pid(class: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_controller = args
                .first()
                .is_some_and(|a| a.ends_with(b"secret-bridge-controller"));
            let serves_class = args.windows(2).any(|w| w[1] == class.as_bytes());
            (is_controller && serves_class).then_some(pid)
        })
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:"),
    })
}

/// `120.5 / 130.2 MiB (anonymous 98.0)` (RSS / peak), `?` when unknown.
pub fn rss(memory: Option<Memory>) -> String {
    memory
        .map(|m| {
            let anon = m
                .anon_kib
                .map(|kib| format!(" (anonymous {:.1})", kib as f64 / 1024.0))
                .unwrap_or_default();
            format!(
                "{:.1} / {:.1} MiB{anon}",
                m.rss_kib as f64 / 1024.0,
                m.peak_kib as f64 / 1024.0
            )
        })
        .unwrap_or_else(|| "?".into())
}

/// CPU time (user + system, in seconds) used so far by the local stack's processes and the
/// controller, by name: where the time of a phase went.
#[derive(Debug, Clone, Default)]
pub struct Cpu(Vec<(String, f64)>);

impl Cpu {
    /// The CPU time of each process `scripts/stack` started for this stack (its pid files in
    /// `$STACK_DIR/pids`, default `target/stack/pids`, named by them) and of `controller`.
    pub fn now(controller: Option<u32>) -> Cpu {
        let stack_dir = std::env::var_os("STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/stack"));
        let mut used: Vec<(String, f64)> = std::fs::read_dir(stack_dir.join("pids"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let path = entry.path();
                let name = path.file_name()?.to_str()?.strip_suffix(".pid")?.to_owned();
                let seconds = cpu_seconds(recorded_pid(&path)?)?;
                Some((name, seconds))
            })
            .collect();
        if let Some(seconds) = controller.and_then(cpu_seconds) {
            used.push(("controller".into(), seconds));
        }
        Cpu(used)
    }

    /// What was used since `earlier`: a process absent then counts from zero, and one that
    /// was restarted in between (less time than before) is left out.
    pub fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu(self
            .0
            .iter()
            .filter_map(|(name, seconds)| {
                let before = earlier
                    .0
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0.0, |(_, s)| *s);
                (*seconds >= before).then(|| (name.clone(), seconds - before))
            })
            .collect())
    }
}

/// `moto 81.2 s, kube-apiserver 30.1 s, …`, busiest first.
impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut used = self.0.clone();
        used.sort_by(|a, b| b.1.total_cmp(&a.1));
        let text: Vec<String> = used
            .iter()
            .map(|(name, s)| format!("{name} {s:.1} s"))
            .collect();
        f.write_str(&text.join(", "))
    }
}

/// `/proc` counts CPU time in clock ticks of 1/100 s (USER_HZ) on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU time of `pid` (fields 14 and 15 of `/proc/PID/stat`, after the
/// parenthesised command name, which may hold spaces).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS_PER_SECOND)
}

/// A Prometheus histogram: cumulative bucket counts by upper bound, sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// Reads histogram `name` from the text exposition format (missing: empty).
    pub fn parse(text: &str, name: &str) -> Histogram {
        let mut histogram = Histogram::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or(0.0);
            if let Some(labels) = series.strip_prefix(&format!("{name}_bucket{{")) {
                let bound = labels
                    .split("le=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .map(|le| le.parse().unwrap_or(f64::INFINITY))
                    .unwrap_or(f64::INFINITY);
                histogram.buckets.push((bound, value as u64));
            } else if series == format!("{name}_sum") {
                histogram.sum = value;
            } else if series == format!("{name}_count") {
                histogram.count = value as u64;
            }
        }
        histogram
    }

    /// The observations made since `earlier` (a scrape of the same process).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let before = |bound: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, c)| *c)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(bound, count)| (*bound, count.saturating_sub(before(*bound))))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count.saturating_sub(earlier.count),
        }
    }

    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_secs_f64(self.sum / self.count as f64))
    }

    /// The `q` quantile, interpolated linearly inside its bucket as Prometheus's
    /// `histogram_quantile` does; only as precise as the buckets.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = q * self.count as f64;
        let mut lower = (0.0, 0u64);
        for &(bound, cumulative) in &self.buckets {
            if cumulative as f64 >= rank {
                if bound.is_infinite() {
                    return Some(Duration::from_secs_f64(lower.0));
                }
                let in_bucket = (cumulative - lower.1) as f64;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower.1 as f64) / in_bucket
                } else {
                    1.0
                };
                return Some(Duration::from_secs_f64(
                    lower.0 + (bound - lower.0) * fraction,
                ));
            }
            lower = (bound, cumulative);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "# TYPE secret_bridge_event_lag_seconds histogram\n\
        secret_bridge_event_lag_seconds_sum 0.2\n\
        secret_bridge_event_lag_seconds_count 10\n\
        secret_bridge_event_lag_seconds_bucket{le=\"0.01\"} 0\n\
        secret_bridge_event_lag_seconds_bucket{le=\"0.025\"} 8\n\
        secret_bridge_event_lag_seconds_bucket{le=\"0.05\"} 10\n\
        secret_bridge_event_lag_seconds_bucket{le=\"+Inf\"} 10\n";

    #[test]
    fn reads_and_interpolates_a_histogram() {
        let h = Histogram::parse(SCRAPE, "secret_bridge_event_lag_seconds");
        assert_eq!(h.count, 10);
        assert_eq!(h.mean(), Some(Duration::from_millis(20)));
        // 5 of the 8 observations in (10 ms, 25 ms].
        let p50 = h.quantile(0.5).unwrap().as_secs_f64();
        assert!((p50 - 0.019375).abs() < 1e-9, "{p50}");
        assert_eq!(h.since(&h).count, 0);
        assert_eq!(h.since(&Histogram::default()), h);
    }
}
