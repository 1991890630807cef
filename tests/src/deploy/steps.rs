//! The deployment guides' shell commands, run as they are written.
//!
//! A guide (the README's deployment section, `infra/examples/multi-cluster/README.md`) marks the
//! region it documents with `<!-- deploy-steps: begin -->` and `<!-- deploy-steps: end -->`.
//! Inside it, every fenced `sh` block must be preceded by a marker naming it:
//!
//! ```text
//! <!-- deploy-step: cfn-deploy -->
//! <!-- deploy-step: image; not run: needs Docker and a container registry -->
//! ```
//!
//! A test loads the guide, runs its steps in document order with [`DeploySteps::run_through`]
//! (with its own setup and checks in between) and ends with [`DeploySteps::finish`], which fails
//! unless every step was run or is marked `not run`. So a command cannot be added to a guide
//! without being run, and the guide cannot drift from what the tests deploy: the tests have no
//! deployment commands of their own.
//!
//! Steps run with `bash -euo pipefail` in the workspace root, one after another as a reader
//! would paste them into one shell: the variables a step sets (`QUEUE_URL=$(...)`) reach the
//! next steps. The first environment holds the stack's endpoints (`AWS_ENDPOINT_URL`,
//! `KUBECONFIG`, keys), a `PATH` with the stack's `kubectl` and `helm` and the AWS CLI, and the
//! test's values for the variables of the guide's `not run` settings step; the test must give
//! exactly the variables that step sets (checked), nothing more and nothing less.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use crate::Stack;
use crate::stack::workspace_root;

const BEGIN: &str = "<!-- deploy-steps: begin -->";
const END: &str = "<!-- deploy-steps: end -->";
const MARKER: &str = "<!-- deploy-step:";
/// The AWS CLI the steps run (v1 from PyPI; `AWS_ENDPOINT_URL` points it at the emulator).
pub const AWS_CLI_REQ: &str = "awscli==1.45.11";

/// One marked shell block.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub script: String,
    /// Why the tests do not run it (`not run: …`), if they do not.
    pub not_run: Option<String>,
}

/// The marked steps of one guide and how far a test has run them.
pub struct DeploySteps {
    pub guide: String,
    pub steps: Vec<Step>,
    next: usize,
    env: BTreeMap<String, String>,
    ran: Vec<String>,
}

/// Reads the marked steps of `text`; panics naming `guide` on a block without a marker, a
/// marker without a block, a repeated name or a missing begin/end.
pub fn parse(guide: &str, text: &str) -> Vec<Step> {
    let start = text
        .find(BEGIN)
        .unwrap_or_else(|| panic!("{guide} has no {BEGIN}"));
    let end = text[start..]
        .find(END)
        .map(|e| start + e)
        .unwrap_or_else(|| panic!("{guide} has no {END} after {BEGIN}"));
    let mut steps: Vec<Step> = Vec::new();
    let mut pending: Option<(String, Option<String>)> = None;
    let mut lines = text[start + BEGIN.len()..end].lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix(MARKER) {
            let body = rest
                .strip_suffix("-->")
                .unwrap_or_else(|| panic!("{guide}: unterminated marker {trimmed}"))
                .trim();
            let (name, not_run) = match body.split_once(';') {
                Some((name, reason)) => {
                    let reason = reason.trim().strip_prefix("not run:").unwrap_or_else(|| {
                        panic!("{guide}: marker {trimmed}: after ';' write 'not run: <reason>'")
                    });
                    (name.trim(), Some(reason.trim().to_owned()))
                }
                None => (body, None),
            };
            assert!(
                pending.is_none(),
                "{guide}: marker {trimmed} follows a marker without a block"
            );
            assert!(
                !name.is_empty() && !steps.iter().any(|s| s.name == name),
                "{guide}: step name {name:?} is empty or used twice"
            );
            pending = Some((name.to_owned(), not_run));
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            if info.is_empty() {
                assert!(
                    pending.is_none(),
                    "{guide}: the block after a deploy-step marker must be a ```sh block"
                );
                // A block without a language: skip to its end.
                for inner in lines.by_ref() {
                    if inner.trim() == "```" {
                        break;
                    }
                }
                continue;
            }
            let shell = matches!(info, "sh" | "bash" | "shell" | "console");
            let mut body = String::new();
            for inner in lines.by_ref() {
                if inner.trim() == "```" {
                    break;
                }
                body.push_str(inner);
                body.push('\n');
            }
            match (shell, pending.take()) {
                (true, Some((name, not_run))) => steps.push(Step {
                    name,
                    script: body,
                    not_run,
                }),
                (true, None) => panic!(
                    "{guide}: a ```{info} block in the deploy steps has no <!-- deploy-step: NAME --> marker:\n{body}"
                ),
                (false, Some((name, _))) => {
                    panic!("{guide}: deploy-step {name} marks a ```{info} block, not a shell block")
                }
                (false, None) => {}
            }
            continue;
        }
        if !trimmed.is_empty() {
            assert!(
                pending.is_none(),
                "{guide}: a deploy-step marker must be followed directly by its block, found: {trimmed}"
            );
        }
    }
    assert!(pending.is_none(), "{guide}: the last marker has no block");
    assert!(!steps.is_empty(), "{guide}: no deploy steps");
    steps
}

/// The variables a settings script assigns (`NAME=…` or `export NAME=…` at a line's start).
pub fn assigned_variables(script: &str) -> BTreeSet<String> {
    script
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (name, _) = line.split_once('=')?;
            (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .then(|| name.to_owned())
        })
        .collect()
}

impl DeploySteps {
    /// Loads the guide `relative` (to the workspace root). `settings` names its `not run` step
    /// that sets the reader's values; `values` are the test's values for exactly those variables.
    pub async fn load(
        stack: &Stack,
        relative: &str,
        settings: &str,
        values: &[(&str, &str)],
    ) -> DeploySteps {
        let text = std::fs::read_to_string(workspace_root().join(relative))
            .unwrap_or_else(|e| panic!("read {relative}: {e}"));
        let steps = parse(relative, &text);
        let settings_step = steps
            .iter()
            .find(|s| s.name == settings)
            .unwrap_or_else(|| panic!("{relative} has no deploy-step {settings}"));
        assert!(
            settings_step.not_run.is_some(),
            "{relative}: the settings step {settings} must be marked `not run` (the test gives its values)"
        );
        let expected = assigned_variables(&settings_step.script);
        let given: BTreeSet<String> = values.iter().map(|(k, _)| (*k).to_owned()).collect();
        assert_eq!(
            given, expected,
            "{relative}: the test must give exactly the variables that step {settings} sets"
        );

        let mut env: BTreeMap<String, String> = stack
            .process_env()
            .into_iter()
            .chain(
                ["STACK_DIR"]
                    .iter()
                    .filter_map(|k| Some(((*k).to_owned(), stack.env.get(*k)?.clone()))),
            )
            .collect();
        let mut path: Vec<PathBuf> = Vec::new();
        for tool in ["KUBECTL", "HELM"] {
            let binary = stack.env.get(tool).unwrap_or_else(|| {
                panic!("the stack's env file names no {tool}; restart it with `scripts/stack up`")
            });
            path.push(Path::new(binary).parent().expect("tool dir").to_path_buf());
        }
        path.push(aws_cli().await.parent().expect("aws dir").to_path_buf());
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        env.insert(
            "PATH".into(),
            std::env::join_paths(path)
                .expect("PATH")
                .to_string_lossy()
                .into_owned(),
        );
        for key in ["HOME", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"] {
            if let Ok(value) = std::env::var(key) {
                env.insert(key.into(), value);
            }
        }
        // The AWS CLI must not page, prompt or read a profile of the machine.
        env.insert("AWS_PAGER".into(), String::new());
        env.insert("AWS_CONFIG_FILE".into(), "/dev/null".into());
        env.insert("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into());
        for (key, value) in values {
            env.insert((*key).to_owned(), (*value).to_owned());
        }
        DeploySteps {
            guide: relative.to_owned(),
            steps,
            next: 0,
            env,
            ran: vec![settings.to_owned()],
        }
    }

    /// Runs the steps after the last one run, up to and including `name`, skipping those
    /// marked `not run`. Panics with the step's output when it fails.
    pub async fn run_through(&mut self, name: &str) {
        let index = self
            .steps
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("{} has no deploy-step {name}", self.guide));
        assert!(
            index >= self.next,
            "{}: step {name} was already passed; steps run in document order",
            self.guide
        );
        while self.next <= index {
            let step = self.steps[self.next].clone();
            self.next += 1;
            if step.not_run.is_some() {
                continue;
            }
            self.run(&step).await;
            self.ran.push(step.name.clone());
        }
    }

    /// Runs a script of the test's own (setup, checks, cleanup: not a step of the guide) in
    /// the steps' current environment; returns its stdout. Panics when it fails.
    pub async fn shell(&self, script: &str) -> String {
        let output = self.bash(&format!("set -euo pipefail\n{script}")).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "the test's script failed ({}):\n--- script\n{script}\n--- stdout\n{stdout}--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// A variable as the steps left it (for example `QUEUE_URL`).
    pub fn var(&self, name: &str) -> &str {
        self.env.get(name).map(String::as_str).unwrap_or_else(|| {
            panic!(
                "the deploy steps of {} set no variable {name} (so far)",
                self.guide
            )
        })
    }

    /// Asserts that every step ran, except those marked `not run`, which must be exactly
    /// `not_run` (so that marking a step `not run` is a visible change to a test).
    pub fn finish(&self, not_run: &[&str]) {
        let marked: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| s.not_run.is_some())
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            marked, not_run,
            "{}: the steps marked `not run` changed",
            self.guide
        );
        let missing: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| s.not_run.is_none() && !self.ran.contains(&s.name))
            .map(|s| s.name.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "{}: the test did not run the deploy steps {missing:?}",
            self.guide
        );
    }

    /// Runs `script` with bash in the workspace root, in the steps' current environment only.
    async fn bash(&self, script: &str) -> std::process::Output {
        tokio::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .env_clear()
            .envs(&self.env)
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("run bash: {e}"))
    }

    async fn run(&mut self, step: &Step) {
        let state = std::env::temp_dir().join(format!("{}.env", crate::unique("deploy-step")));
        let trace = state.with_extension("trace");
        // Only this user may read it: a step's commands are traced as they ran.
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&trace)
                .unwrap_or_else(|e| panic!("create {}: {e}", trace.display()));
        }
        // `set -a`: what a step assigns stays set for the next step, as in one shell. The
        // trace (to its own file, so the step's output stays as the reader sees it) says which
        // command of a failed step failed.
        let script = format!(
            "exec 7> '{}'\nBASH_XTRACEFD=7\nset -x -euo pipefail -a\n{}\nset +x\nenv -0 > '{}'\n",
            trace.display(),
            step.script,
            state.display()
        );
        let started = std::time::Instant::now();
        let output = self.bash(&script).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!(
            "[deploy-step {} of {}] {:.1} s, exit {}",
            step.name,
            self.guide,
            started.elapsed().as_secs_f64(),
            output.status
        );
        let traced = std::fs::read_to_string(&trace).unwrap_or_default();
        let _ = std::fs::remove_file(&trace);
        assert!(
            output.status.success(),
            "deploy-step {} of {} failed ({}):\n--- script\n{}--- stdout\n{stdout}--- stderr\n{stderr}--- trace\n{traced}",
            step.name,
            self.guide,
            output.status,
            step.script
        );
        let dumped = std::fs::read(&state).unwrap_or_else(|e| {
            panic!(
                "deploy-step {}: read its environment {}: {e}",
                step.name,
                state.display()
            )
        });
        let _ = std::fs::remove_file(&state);
        self.env = dumped
            .split(|b| *b == 0)
            .filter_map(|entry| {
                let entry = String::from_utf8_lossy(entry);
                let (key, value) = entry.split_once('=')?;
                (!matches!(key, "_" | "SHLVL" | "PWD" | "OLDPWD"))
                    .then(|| (key.to_owned(), value.to_owned()))
            })
            .collect();
    }
}

/// The AWS CLI: `$AWS_CLI`, else a venv with [`AWS_CLI_REQ`] under the stack's cache
/// (`$SECRET_BRIDGE_CACHE/awscli`, installed from PyPI on first use).
pub async fn aws_cli() -> PathBuf {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    if let Some(cli) = CLI.get() {
        return cli.clone();
    }
    if let Some(cli) = std::env::var_os("AWS_CLI") {
        return CLI.get_or_init(|| PathBuf::from(cli)).clone();
    }
    let cache = std::env::var_os("SECRET_BRIDGE_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("secret-bridge"))
        })
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/secret-bridge")))
        .expect("HOME is set");
    let venv = cache.join("awscli");
    let cli = venv.join("bin/aws");
    let marker = venv.join(format!("{AWS_CLI_REQ}.installed"));
    if !marker.exists() {
        // One installer at a time, also across test processes.
        let lock = cache.join("awscli.lock");
        std::fs::create_dir_all(&cache).expect("create the cache dir");
        let script = format!(
            "set -eu; exec 9>'{lock}'; flock 9; \
             if [ ! -e '{marker}' ]; then \
               echo 'installing {AWS_CLI_REQ} into {venv} (once)' >&2; \
               rm -rf '{venv}'; python3 -m venv '{venv}'; \
               '{venv}/bin/python' -m pip install --disable-pip-version-check -q '{AWS_CLI_REQ}'; \
               touch '{marker}'; fi",
            lock = lock.display(),
            marker = marker.display(),
            venv = venv.display(),
        );
        let status = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .status()
            .await
            .expect("run bash");
        assert!(
            status.success(),
            "installing {AWS_CLI_REQ} failed; install it by hand and set AWS_CLI to its `aws`"
        );
    }
    CLI.get_or_init(|| cli).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_marked_blocks_and_refuses_unmarked_ones() {
        let text = "intro\n```sh\nnot in the section\n```\n<!-- deploy-steps: begin -->\n\
            <!-- deploy-step: settings; not run: the test sets them -->\n```sh\nexport A=1\nB=\"x y\"  # c\n```\n\
            text\n```yaml\nkey: value\n```\n<!-- deploy-step: one -->\n```sh\necho $A\n```\n<!-- deploy-steps: end -->\n";
        let steps = parse("guide", text);
        assert_eq!(
            steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["settings", "one"]
        );
        assert_eq!(steps[0].not_run.as_deref(), Some("the test sets them"));
        assert_eq!(steps[1].script, "echo $A\n");
        assert_eq!(
            assigned_variables(&steps[0].script),
            BTreeSet::from(["A".to_owned(), "B".to_owned()])
        );

        let unmarked =
            "<!-- deploy-steps: begin -->\n```sh\nrm -rf /\n```\n<!-- deploy-steps: end -->\n";
        assert!(std::panic::catch_unwind(|| parse("guide", unmarked)).is_err());
        let detached = "<!-- deploy-steps: begin -->\n<!-- deploy-step: x -->\ntext\n```sh\nls\n```\n<!-- deploy-steps: end -->\n";
        assert!(std::panic::catch_unwind(|| parse("guide", detached)).is_err());
    }
}
