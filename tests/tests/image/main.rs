//! The container image on the local stack: its own entrypoint, run with `buildah run` (chroot
//! isolation, host network) as the user the image declares, syncs the tutorial's manifests and
//! follows a rotation by event.
//!
//! `scripts/image test` (which `scripts/test` runs) builds the image first and names it in
//! `SECRET_BRIDGE_IMAGE`; a plain `cargo test` skips this binary's case, which needs the image.

use std::os::unix::fs::{PermissionsExt, chown};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secret_bridge_tests::aws::Aws;
use secret_bridge_tests::kube_helpers::delete_external_secret;
use secret_bridge_tests::stack::workspace_root;
use secret_bridge_tests::{Stack, tutorial, unique, wait_for};
use serde_json::json;

/// The user the image must run as (the chart's `runAsUser`).
const USER: u32 = 65532;

#[tokio::test]
#[ignore = "needs the image: run `scripts/image test`, which builds it"]
async fn image_entrypoint_syncs_the_tutorial_and_follows_a_rotation() {
    let image = std::env::var("SECRET_BRIDGE_IMAGE")
        .expect("SECRET_BRIDGE_IMAGE names the image to test: run `scripts/image test`");
    let stack = Stack::connect().await;
    let aws = Aws::new(&stack.aws);
    tutorial::prepare(&stack).await;
    tutorial::put_aws_secret(&aws).await;
    let name = unique("image");
    let bus = format!("{name}-bus");
    let queue = aws.event_queue(&name, &bus, None, 30).await;

    let container = Container::run(&stack, &image, &["--queue-url", &queue]);
    let pid = wait_for(
        "the controller to run in the container",
        Duration::from_secs(30),
        || async { container.controller_pid() },
    )
    .await;
    assert_eq!(
        uid_of(pid),
        Some(USER),
        "the image's entrypoint runs as {USER}"
    );

    tutorial::apply(&stack).await;
    tutorial::wait_for_password(&stack, tutorial::FIRST_PASSWORD, Duration::from_secs(60)).await;
    let password = unique("image-password");
    let rotated = aws
        .rotate(
            tutorial::SECRET,
            &json!({"username": "bob", "password": password}).to_string(),
        )
        .await;
    aws.publish_label_updated(&bus, tutorial::SECRET, &rotated)
        .await;
    let published = Instant::now();
    tutorial::wait_for_password(&stack, &password, Duration::from_secs(15)).await;
    println!(
        "image: {image} synced the tutorial; a rotation arrived by event {:.0?} after it was published",
        published.elapsed()
    );
    // This container did the work (not another controller on the shared stack).
    let logs = container.logs();
    assert!(
        logs.lines().any(|line| line.contains(" reconciled")
            && line.contains("ExternalSecret.v1.external-secrets.io/app-secret.app")),
        "the container's controller reconciled app/app-secret ({})",
        container.log_path.display()
    );
    for value in [tutorial::FIRST_PASSWORD, password.as_str()] {
        assert!(
            !logs.contains(value),
            "a secret value appears in {}",
            container.log_path.display()
        );
    }

    drop(container);
    delete_external_secret(&stack.kube, "app", "app-secret").await;
    aws.remove_event_queue(&name, &bus, &queue).await;
}

/// A working container of the image, its entrypoint running with the stack's settings;
/// killed and removed when dropped.
struct Container {
    name: String,
    child: Child,
    log_path: PathBuf,
    config: PathBuf,
}

impl Container {
    fn run(stack: &Stack, image: &str, args: &[&str]) -> Container {
        let name = unique("secret-bridge-image-test");
        buildah(&["from", "--quiet", "--name", &name, image]);
        let inspected: serde_json::Value =
            serde_json::from_str(&buildah(&["inspect", "--type", "container", &name]))
                .unwrap_or_else(|e| {
                    let _ = buildah_quiet(&["rm", &name]);
                    panic!("buildah inspect {name}: {e}")
                });
        let image_config = &inspected["OCIv1"]["config"];
        let entrypoint: Vec<String> = image_config["Entrypoint"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|arg| arg.as_str().map(str::to_owned))
            .collect();
        let user = image_config["User"].as_str().unwrap_or_default().to_owned();
        if entrypoint.is_empty() || user != format!("{USER}:{USER}") {
            let _ = buildah_quiet(&["rm", &name]);
            panic!(
                "the image runs its entrypoint as {USER}: entrypoint {entrypoint:?}, user {user:?}"
            );
        }

        // The kubeconfig, readable by the image's user only (through its group).
        let config = std::env::temp_dir().join(&name);
        std::fs::create_dir(&config).expect("create the config directory");
        let kubeconfig = config.join("kubeconfig");
        std::fs::copy(&stack.env["KUBECONFIG"], &kubeconfig).expect("copy the kubeconfig");
        for (path, mode) in [(&config, 0o750), (&kubeconfig, 0o640)] {
            chown(path, Some(0), Some(USER)).expect("chown");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }

        let log_dir = workspace_root().join("target/test-logs");
        std::fs::create_dir_all(&log_dir).expect("create target/test-logs");
        let log_path = log_dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("create the log");
        let mut command = Command::new("buildah");
        command.args(["run", "--isolation", "chroot", "--network", "host"]);
        command.args(["--volume", &format!("{}:/config:ro", config.display())]);
        command.args(["--env", "KUBECONFIG=/config/kubeconfig"]);
        command.args(["--env", "RUST_LOG=info,secret_bridge_controller=debug"]);
        for (key, value) in stack.process_env() {
            if key != "KUBECONFIG" {
                command.args(["--env", &format!("{key}={value}")]);
            }
        }
        command.arg(&name).arg("--").args(&entrypoint).args(args);
        command.args(["--probe-addr", "127.0.0.1:0"]);
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start buildah run");
        Container {
            name,
            child,
            log_path,
            config,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The controller process inside the container: the descendant of `buildah run` whose
    /// executable is the image's binary.
    fn controller_pid(&self) -> Option<u32> {
        self.processes().into_iter().find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.ends_with("usr/local/bin/secret-bridge-controller"))
        })
    }

    /// `buildah run` and its descendants (its helper and the controller), parents first.
    fn processes(&self) -> Vec<u32> {
        let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .filter_map(|pid| Some((pid, parent_of(pid)?)))
                    .collect()
            })
            .unwrap_or_default();
        let mut tree = vec![self.child.id()];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(
                parents
                    .iter()
                    .filter(|(_, p)| *p == parent)
                    .map(|(c, _)| *c),
            );
            i += 1;
        }
        tree
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        for pid in self.processes().into_iter().rev() {
            // Not `faults::sigkill`: a process may be gone by now, which is no failure here.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.wait();
        let _ = buildah_quiet(&["rm", &self.name]);
        let _ = std::fs::remove_dir_all(&self.config);
    }
}

/// Runs buildah; panics with its output unless it succeeds. Returns its standard output.
fn buildah(args: &[&str]) -> String {
    let output = Command::new("buildah")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run buildah (scripts/image installs it): {e}"));
    assert!(
        output.status.success(),
        "buildah {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs buildah for cleanup, ignoring what it says.
fn buildah_quiet(args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    Command::new("buildah")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

/// The parent of `pid` (field 4 of `/proc/<pid>/stat`, after the command in parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The real user id of `pid`.
fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
