//! The lifecycle hooks of config.json (runtime-spec's POSIX-platform
//! hooks): host programs run at points of a container's life, each with
//! the container's state JSON on its stdin. Like runsc, cryo runs every
//! hook in the runtime's own (the host's) namespaces: the container's are
//! inside the Sentry, where no host program can enter.
//!
//! A failing prestart, createRuntime, createContainer or startContainer
//! hook fails the operation; a failing poststart or poststop hook is only
//! a warning, as the spec says.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Prestart => "prestart",
            Stage::CreateRuntime => "createRuntime",
            Stage::CreateContainer => "createContainer",
            Stage::StartContainer => "startContainer",
            Stage::Poststart => "poststart",
            Stage::Poststop => "poststop",
        }
    }

    /// Whether a failure fails the container operation.
    pub fn fatal(self) -> bool {
        !matches!(self, Stage::Poststart | Stage::Poststop)
    }

    fn of(self, hooks: &Hooks) -> Option<&Vec<Hook>> {
        #[allow(deprecated)]
        let prestart = hooks.prestart();
        match self {
            Stage::Prestart => prestart.as_ref(),
            Stage::CreateRuntime => hooks.create_runtime().as_ref(),
            Stage::CreateContainer => hooks.create_container().as_ref(),
            Stage::StartContainer => hooks.start_container().as_ref(),
            Stage::Poststart => hooks.poststart().as_ref(),
            Stage::Poststop => hooks.poststop().as_ref(),
        }
    }
}

/// Why a hook failed; names the stage, its index and its program.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{stage} hook {index} ({path}): cannot run it: {error}")]
    Spawn {
        stage: &'static str,
        index: usize,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{stage} hook {index} ({path}) {how}")]
    Failed {
        stage: &'static str,
        index: usize,
        path: PathBuf,
        how: String,
    },
}

/// Runs the hooks of `stage` in order, each with `state` on stdin; the
/// first failure stops them.
pub fn run(
    hooks: Option<&Hooks>,
    stage: Stage,
    state: &serde_json::Value,
) -> Result<(), HookError> {
    let Some(list) = hooks.and_then(|h| stage.of(h)) else {
        return Ok(());
    };
    let input = state.to_string();
    for (index, hook) in list.iter().enumerate() {
        run_one(hook, &input).map_err(|e| e.at(stage, index, hook.path().clone()))?;
    }
    Ok(())
}

/// Runs the hooks of `stage` and reports a failure as a warning on stderr
/// (poststart, poststop) or returns it.
pub fn run_or_warn(
    hooks: Option<&Hooks>,
    stage: Stage,
    state: &serde_json::Value,
) -> Result<(), HookError> {
    match run(hooks, stage, state) {
        Err(e) if !stage.fatal() => {
            eprintln!("cryo: warning: {e}");
            Ok(())
        }
        r => r,
    }
}

enum Failure {
    Spawn(std::io::Error),
    Failed(String),
}

impl Failure {
    fn at(self, stage: Stage, index: usize, path: PathBuf) -> HookError {
        let stage = stage.name();
        match self {
            Failure::Spawn(error) => HookError::Spawn {
                stage,
                index,
                path,
                error,
            },
            Failure::Failed(how) => HookError::Failed {
                stage,
                index,
                path,
                how,
            },
        }
    }
}

fn run_one(hook: &Hook, input: &str) -> Result<(), Failure> {
    let mut cmd = Command::new(hook.path());
    // args[0] is the program's argv[0], as execve takes it.
    if let Some(args) = hook.args() {
        if let Some((first, rest)) = args.split_first() {
            cmd.arg0(first).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(Failure::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is not a failure.
        let _ = stdin.write_all(input.as_bytes());
    }
    let deadline = hook
        .timeout()
        .and_then(|s| u64::try_from(s).ok())
        .filter(|&s| s > 0)
        .map(|s| Instant::now() + Duration::from_secs(s));
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(Failure::Failed(format!("failed: {status}"))),
            Ok(None) => {}
            Err(e) => return Err(Failure::Failed(format!("cannot be waited for: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::Failed("timed out".into()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
