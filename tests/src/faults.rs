//! Faults the tests inject into processes: SIGKILL a controller, read its peak memory, and
//! kill and restore the stack's kube-apiserver (see [`ApiserverOutage`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::Stack;
use crate::controller::ControllerProcess;
use crate::stack::workspace_root;
use crate::wait::wait_for;

/// The pid of the controller process: the process whose standard output is its log.
/// (`ControllerProcess` keeps its `Child` to itself; its log file names it just as well.)
pub fn controller_pid(controller: &ControllerProcess) -> u32 {
    let log = std::fs::canonicalize(&controller.log_path).expect("the controller's log exists");
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/fd/1"))
                .ok()
                .as_ref()
                == Some(&log)
        })
        .unwrap_or_else(|| panic!("no running process writes {}", log.display()))
}

/// Sends SIGKILL to `pid`: no shutdown, no acknowledgement, no flushing.
pub fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL {pid} failed");
}

/// The peak resident memory of `pid` so far, in KiB (Linux `VmHWM`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is alive (not gone, not a zombie).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(") ")?.1.chars().next()? != 'Z'))
        .unwrap_or(false)
}

/// A small deterministic PRNG (xorshift64*) for fault timings; the seed is printed so that a
/// failing schedule can be replayed with `FAULTS_SEED`.
pub struct Rng(u64);

impl Rng {
    pub fn from_env_or_clock() -> Rng {
        let seed = std::env::var("FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos() as u64
            });
        println!("faults: seed {seed} (replay with FAULTS_SEED={seed})");
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A duration in `[0, max)`.
    pub fn below(&mut self, max: Duration) -> Duration {
        let millis = max.as_millis().max(1) as u64;
        Duration::from_millis(self.next_u64() % millis)
    }
}

/// The stack's kube-apiserver, killed for a while. Dropping it (also when the test panics)
/// starts the apiserver again if it is down, with the command line it had, so the shared stack
/// is never left without one.
///
/// `scripts/stack up` is not the way back: when a component is down it rebuilds the whole stack
/// (new ports, PKI and token; empty etcd and emulator), which would break every other user of
/// it. Restarting the one process with its own command line keeps ports, certificates and data.
pub struct ApiserverOutage {
    command: Vec<String>,
    cwd: PathBuf,
    pid_file: PathBuf,
    log_file: PathBuf,
}

impl ApiserverOutage {
    /// SIGKILLs the running kube-apiserver of the stack in `$STACK_DIR` (default
    /// `<repo>/target/stack`).
    pub fn begin() -> ApiserverOutage {
        let stack_dir = std::env::var_os("STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/stack"));
        let pid_file = stack_dir.join("pids/kube-apiserver.pid");
        let pid = recorded_pid(&pid_file).unwrap_or_else(|| {
            panic!(
                "{} names no running kube-apiserver: is the stack up?",
                pid_file.display()
            )
        });
        let command: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
            .expect("read the apiserver's command line")
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|_| "/".into());
        sigkill(pid);
        for _ in 0..100 {
            if !is_alive(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!is_alive(pid), "the kube-apiserver survived SIGKILL");
        ApiserverOutage {
            command,
            cwd,
            pid_file,
            log_file: stack_dir.join("logs/kube-apiserver.log"),
        }
    }

    /// Starts the apiserver again (same command line, detached, its pid recorded where
    /// `scripts/stack` looks for it) and waits until its `/readyz` answers `ok` (until then
    /// `scripts/stack` would count the stack as down).
    pub async fn end(self, stack: &Stack) {
        self.restart();
        let env = stack.env;
        let authorization = format!("Authorization: Bearer {}", env["KUBE_TOKEN"]);
        let url = format!("{}/readyz", env["KUBE_SERVER"]);
        wait_for(
            "the restarted kube-apiserver to be ready",
            Duration::from_secs(120),
            || async {
                let output = tokio::process::Command::new("curl")
                    .args(["-sS", "-m", "3", "--cacert", &env["KUBE_CA_FILE"]])
                    .args(["-H", &authorization, &url])
                    .output()
                    .await
                    .ok()?;
                (output.stdout == b"ok").then_some(())
            },
        )
        .await;
    }

    fn restart(&self) {
        if recorded_pid(&self.pid_file).is_some() {
            return;
        }
        // Started through a shell that exits at once, in a session of its own: the apiserver
        // outlives this test process and is never its zombie, like the stack's other servers.
        let output = Command::new("sh")
            .arg("-c")
            .arg(r#"log=$1; shift; setsid "$@" >>"$log" 2>&1 </dev/null & echo $!"#)
            .arg("sh")
            .arg(&self.log_file)
            .args(&self.command)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .output()
            .expect("start kube-apiserver");
        let pid: u32 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("the shell prints the apiserver's pid");
        let start_time = start_time(pid).expect("the new kube-apiserver runs");
        std::fs::write(&self.pid_file, format!("{pid} {start_time}\n"))
            .expect("record the apiserver's pid");
    }
}

impl Drop for ApiserverOutage {
    fn drop(&mut self) {
        self.restart();
    }
}

/// The pid in a `scripts/stack` pid file ("PID STARTTIME"), if that process still runs.
pub fn recorded_pid(pid_file: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let mut fields = text.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let recorded = fields.next()?;
    (is_alive(pid) && start_time(pid)? == recorded).then_some(pid)
}

/// Field 22 of `/proc/<pid>/stat` (after the parenthesised command, which may hold spaces).
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(19)
        .map(str::to_owned)
}
