//! `cryo do`: run a command in a new sandbox over the host's root.

use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

#[derive(clap::Args, Debug)]
pub struct DoArgs {
    /// Working directory inside the sandbox (default: the caller's, as with
    /// `runsc do`; the sandbox's root is the host's).
    #[arg(long)]
    cwd: Option<String>,
    /// Set an environment variable (KEY=VALUE); may be repeated.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Print every system call with its arguments and result.
    #[arg(long)]
    strace: bool,
    /// The sandbox's hostname.
    #[arg(long, default_value = "cryo")]
    hostname: String,
    /// The sandbox's id, for checkpoint and other commands (generated if
    /// not given).
    #[arg(long)]
    id: Option<String>,
    /// The sandbox's memory limit, as a memory cgroup's: BYTES, or with a
    /// K, M or G suffix (powers of 1024). Past it the largest process is
    /// killed (SIGKILL).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    memory: Option<u64>,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// `--memory`'s value: bytes, or K/M/G (KiB, MiB, GiB), at least a page.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 10),
        Some((i, 'm' | 'M')) => (&t[..i], 20),
        Some((i, 'g' | 'G')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes (e.g. 67108864 or 64M)"))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < 4096 {
        return Err(format!("{s:?} is less than a page (4096 bytes)"));
    }
    Ok(bytes)
}

/// Starts the gofer over the host root (read-only: writes go to the
/// Sentry's in-memory upper layer) and returns the Sentry's end of its socket.
pub fn start_gofer() -> anyhow::Result<(std::os::fd::OwnedFd, std::process::Child)> {
    let (sentry_end, gofer_end) = gofer::socketpair().context("creating the gofer socket")?;
    // The gofer's end must survive exec: it is the only fd it inherits on
    // purpose (it closes every other one when it hardens itself).
    nix::fcntl::fcntl(
        gofer_end.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .context("clearing close-on-exec on the gofer socket")?;
    let exe = std::env::current_exe().context("finding the cryo binary")?;
    let child = Command::new(exe)
        .arg("gofer")
        .arg("--root")
        .arg("/")
        .arg("--fd")
        .arg(gofer_end.as_raw_fd().to_string())
        .arg("--read-only")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting the gofer")?;
    drop(gofer_end);
    Ok((sentry_end, child))
}

fn parse_env(pairs: &[String]) -> anyhow::Result<Vec<String>> {
    // The sandbox starts with the caller's environment, as `runsc do` does;
    // --env adds or replaces variables.
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--env {pair:?}: expected KEY=VALUE");
        };
        if k.is_empty() {
            bail!("--env {pair:?}: empty variable name");
        }
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    Ok(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

pub fn run(
    args: DoArgs,
    root: &std::path::Path,
    platform: Option<&str>,
    cpu_features: Option<&str>,
) -> anyhow::Result<i32> {
    let env = parse_env(&args.env)?;
    let cwd = match args.cwd {
        Some(cwd) => cwd,
        None => std::env::current_dir()?.to_string_lossy().into_owned(),
    };
    if !cwd.starts_with('/') {
        bail!("--cwd {cwd:?}: must be an absolute path");
    }
    let id = match args.id {
        Some(id) => {
            crate::container::validate_id(&id)?;
            id
        }
        None => crate::container::generate_id(),
    };
    let (gofer_sock, mut gofer) = start_gofer()?;
    let config = sentry::boot::DoConfig {
        argv: args.command.clone(),
        env,
        cwd,
        hostname: args.hostname,
        strace: args.strace,
        platform: platform.map_or_else(|| platform::default_platform().to_string(), str::to_string),
        cpu_features: cpu_features.unwrap_or("host").to_string(),
        memory_limit: args.memory,
    };
    let result = sentry::boot::boot_do(&config, gofer_sock)
        .map_err(anyhow::Error::new)
        .and_then(|mut task| crate::supervisor::run(&mut task, root, &id, &args.command));
    // The gofer serves until its socket closes, which the task's end did.
    let _ = gofer.wait();
    result
}
