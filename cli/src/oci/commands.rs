//! The OCI runtime commands (runc's command line): spec, create, start,
//! run, state, kill, delete, list, ps, pause, resume, exec, features.

use super::hooks::{self, Stage};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::bundle;
use super::console;
use super::state::{self, Locked, Record, StateError, Status};
use crate::control::{Connection, ExecSpec, Reply, Request};

/// The global flags a command passes on to the processes it starts.
#[derive(Clone, Debug, Default)]
pub struct Globals {
    pub root: PathBuf,
    pub platform: Option<String>,
    /// `--cpu-features`, for the sandbox process a create starts.
    pub cpu_features: Option<String>,
    pub debug_log: Option<PathBuf>,
    /// runc's --log and --log-format: warnings go there when given (the
    /// caller's stderr is often the container's).
    pub log: Option<PathBuf>,
    pub log_format: Option<String>,
}

impl Globals {
    pub(super) fn apply(&self, cmd: &mut Command) {
        cmd.arg("--root").arg(&self.root);
        if let Some(p) = &self.platform {
            cmd.arg("--platform").arg(p);
        }
        if let Some(c) = &self.cpu_features {
            cmd.arg("--cpu-features").arg(c);
        }
        if let Some(l) = &self.debug_log {
            cmd.arg("--debug-log").arg(l);
        }
    }
}

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct SpecArgs {
    /// Where to write config.json.
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
}

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct CreateArgs {
    /// The bundle directory (holding config.json).
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    /// Write the sandbox process's pid here.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Where to send the terminal's master (needs process.terminal).
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility: cryo's root is the gofer's.
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility: the sandbox has no host keyring.
    #[arg(long)]
    no_new_keyring: bool,
    /// Extra fds to pass (only 0 is supported).
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct RunArgs {
    #[command(flatten)]
    create: CreateArgs,
    /// Return once the container runs, leaving it in the background.
    #[arg(long, short = 'd')]
    detach: bool,
    /// Accepted for runc compatibility.
    #[arg(long)]
    keep: bool,
}

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct IdArgs {
    id: String,
}

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct KillArgs {
    /// Signal every process of the container, not only its init.
    #[arg(long, short = 'a')]
    all: bool,
    id: String,
    /// A name (TERM, SIGTERM) or a number; TERM by default.
    signal: Option<String>,
}

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct DeleteArgs {
    /// Kill a running container first; a missing one is not an error.
    #[arg(long, short = 'f')]
    force: bool,
    id: String,
}

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct ListArgs {
    /// table or json.
    #[arg(long, short = 'f', default_value = "table")]
    format: String,
    /// Only the ids.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct EventsArgs {
    /// Print the container's statistics once and exit.
    #[arg(long)]
    stats: bool,
    /// How often to print them otherwise (runc's duration: 5s, 500ms, 1m).
    #[arg(long, default_value = "5s")]
    interval: String,
    id: String,
}

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct PsArgs {
    /// table or json.
    #[arg(long, short = 'f', default_value = "table")]
    format: String,
    id: String,
    /// ps(1) options runc passes to the host's ps: ignored, the sandbox's
    /// processes are not host processes.
    #[arg(trailing_var_arg = true)]
    ps_args: Vec<String>,
}

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct ExecArgs {
    /// Working directory (default: config.json's process.cwd).
    #[arg(long)]
    cwd: Option<String>,
    /// Set an environment variable (KEY=VALUE); may be repeated.
    #[arg(long, short = 'e', value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// UID[:GID] (numbers).
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// Additional group ids.
    #[arg(long = "additional-gids", short = 'g')]
    additional_gids: Vec<u32>,
    /// A process.json (the `process` of a config.json) to run instead of
    /// the command line.
    #[arg(long, short = 'p')]
    process: Option<PathBuf>,
    /// Return once the process runs; the pid in --pid-file is a host
    /// process that lives as long as it and exits with its status.
    #[arg(long, short = 'd')]
    detach: bool,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Give the process a terminal of the sandbox.
    #[arg(long, short = 't')]
    tty: bool,
    /// Where to send the terminal's master (with --tty).
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    no_new_privs: bool,
    /// Internal: the pipe of a detached exec's parent.
    #[arg(long, hide = true)]
    exec_ready_fd: Option<i32>,
    id: String,
    #[arg(trailing_var_arg = true, value_name = "CMD")]
    command: Vec<String>,
}

/// runc's checkTerminal: a detached process's terminal needs a console
/// socket to go to, and a console socket needs a terminal to carry. (A
/// foreground `run` may still send its terminal over a console socket,
/// which runc refuses: a superset.)
fn check_terminal(
    terminal: bool,
    what: &str,
    detach: bool,
    console_socket: Option<&Path>,
) -> anyhow::Result<()> {
    match (terminal, console_socket) {
        (true, None) if detach => bail!(
            "{what} asks for a terminal but no --console-socket was given to send it to \
             (a detached process's terminal goes to a console socket, as with runc)"
        ),
        (false, Some(p)) => bail!(
            "--console-socket {}: {what} asks for no terminal, so there is none to send",
            p.display()
        ),
        _ => Ok(()),
    }
}

/// A host pty for a container's terminal: its master goes to the console
/// socket, its replica (returned, inheritable) to the sandbox process.
pub(super) fn console_replica(
    sock: console::ConsoleSocket,
    size: Option<super::bundle::ConsoleSize>,
) -> anyhow::Result<std::os::fd::OwnedFd> {
    let pty = console::host_pty(size)?;
    sock.send(&pty.master)?;
    nix::fcntl::fcntl(
        pty.replica.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .context("passing the terminal to the sandbox")?;
    Ok(pty.replica)
}

/// A console socket that is not there, refused before anything is made.
pub(crate) fn check_console_socket(path: &Path) -> anyhow::Result<()> {
    std::fs::metadata(path)
        .map(|_| ())
        .with_context(|| format!("--console-socket {}", path.display()))
}

pub fn spec(args: SpecArgs) -> anyhow::Result<i32> {
    let path = args.bundle.join("config.json");
    if path.exists() {
        bail!("{} exists: remove it first", path.display());
    }
    let text = serde_json::to_string_pretty(&bundle::default_spec())?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(0)
}

/// Writes `pid` to `path` atomically (clients poll for it).
pub(super) fn write_pid_file(path: &Path, pid: i32) -> anyhow::Result<()> {
    let tmp = path.with_extension("cryo-tmp");
    std::fs::write(&tmp, pid.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A pipe whose write end a child inherits (as the returned number).
pub(super) fn ready_pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")?;
    nix::fcntl::fcntl(
        w.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .context("clearing close-on-exec")?;
    Ok((r, w))
}

pub(super) fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    let _ = std::fs::File::from(fd).read_to_string(&mut s);
    s
}

/// Creates the container; returns the sandbox process (a child of this
/// one) once it waits for `start`.
fn create_inner(
    g: &Globals,
    args: &CreateArgs,
    detach: bool,
) -> anyhow::Result<std::process::Child> {
    let bundle = std::fs::canonicalize(&args.bundle)
        .with_context(|| format!("bundle {}", args.bundle.display()))?;
    // The bundle's errors come before the id is claimed.
    let plan = bundle::plan(&bundle)?;
    check_terminal(
        plan.terminal,
        "process.terminal",
        detach,
        args.console_socket.as_deref(),
    )?;
    let mut console_socket = match &args.console_socket {
        Some(p) => Some(console::ConsoleSocket::connect(p)?),
        None => None,
    };
    if args.preserve_fds > 0 {
        bail!(
            "--preserve-fds {}: not supported by cryo yet",
            args.preserve_fds
        );
    }
    let locked = Locked::create(&g.root, &args.id)?;
    let mut record = Record {
        id: args.id.clone(),
        status: Status::Creating,
        pid: 0,
        start_time: 0,
        bundle: bundle.clone(),
        rootfs: plan.rootfs.clone(),
        created: state::rfc3339_now(),
        annotations: plan.annotations.clone(),
        do_sandbox: false,
    };
    let started = (|| -> anyhow::Result<std::process::Child> {
        locked.save(&record)?;
        super::identity::save_in(&locked.dir, &super::identity::Identity::of_plan(&plan))?;
        for w in &plan.warnings {
            match &g.log {
                Some(log) => crate::logging::log_line(log, g.log_format.as_deref(), "warning", w),
                None => eprintln!("cryo: warning: {w}"),
            }
        }
        let replica = match console_socket.take() {
            Some(sock) => Some(console_replica(sock, plan.console_size)?),
            None => None,
        };
        let (r, w) = ready_pipe()?;
        let mut cmd = Command::new(std::env::current_exe().context("finding the cryo binary")?);
        g.apply(&mut cmd);
        cmd.arg("sandbox")
            .arg("--bundle")
            .arg(&bundle)
            .arg("--id")
            .arg(&args.id)
            .arg("--ready-fd")
            .arg(w.as_raw_fd().to_string());
        if let Some(r) = &replica {
            cmd.arg("--console-fd").arg(r.as_raw_fd().to_string());
        }
        let mut child = cmd.spawn().context("starting the sandbox process")?;
        drop(w);
        drop(replica);
        let answer = read_all(r);
        if answer.trim_end() != "ok" {
            let _ = child.kill();
            let _ = child.wait();
            if answer.is_empty() {
                bail!("the sandbox process ended before it was ready");
            }
            bail!("{}", answer.trim_end());
        }
        record.pid = child.id() as i32;
        record.start_time = state::proc_stat(record.pid).map_or(0, |(_, t)| t);
        let spec_hooks = bundle_hooks(&bundle);
        for stage in [
            Stage::Prestart,
            Stage::CreateRuntime,
            Stage::CreateContainer,
        ] {
            if let Err(e) = hooks::run(spec_hooks.as_ref(), stage, &record.oci_state()) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.into());
            }
        }
        record.status = Status::Created;
        locked.save(&record)?;
        if let Some(p) = &args.pid_file {
            write_pid_file(p, record.pid)?;
        }
        Ok(child)
    })();
    match started {
        Ok(child) => Ok(child),
        Err(e) => {
            let _ = locked.remove();
            Err(e)
        }
    }
}

/// The hooks of the bundle's config.json (none if it no longer reads: it
/// was checked when the container was created).
pub(super) fn bundle_hooks(bundle: &Path) -> Option<oci_spec::runtime::Hooks> {
    bundle::load_spec(bundle)
        .ok()
        .and_then(|s| s.hooks().clone())
}

pub fn create(g: &Globals, args: CreateArgs) -> anyhow::Result<i32> {
    // The sandbox lives on, reparented to the caller's reaper.
    create_inner(g, &args, true)?;
    Ok(0)
}

fn connect(locked: &Locked) -> anyhow::Result<Connection> {
    Connection::open(&locked.control_socket())
        .with_context(|| format!("container {:?} does not answer", locked.id))
}

fn expect_done(reply: Reply, what: &str) -> anyhow::Result<()> {
    match reply {
        Reply::Done => Ok(()),
        Reply::Error(e) => bail!("{what}: {e}"),
        other => bail!("{what}: unexpected answer {other:?}"),
    }
}

fn start_locked(locked: &Locked) -> anyhow::Result<()> {
    let mut record = locked.load()?;
    match record.status() {
        Status::Created => {}
        s => bail!(
            "cannot start container {:?}: it is {}",
            locked.id,
            s.as_str()
        ),
    }
    let spec_hooks = bundle_hooks(&record.bundle);
    hooks::run(
        spec_hooks.as_ref(),
        Stage::StartContainer,
        &record.oci_state(),
    )?;
    expect_done(connect(locked)?.call(&Request::Start, &[])?, "start")?;
    record.status = Status::Running;
    locked.save(&record)?;
    hooks::run_or_warn(spec_hooks.as_ref(), Stage::Poststart, &record.oci_state())?;
    Ok(())
}

pub fn start(g: &Globals, args: IdArgs) -> anyhow::Result<i32> {
    start_locked(&Locked::open(&g.root, &args.id)?)?;
    Ok(0)
}

pub fn run(g: &Globals, args: RunArgs) -> anyhow::Result<i32> {
    let mut child = create_inner(g, &args.create, args.detach)?;
    // A foreground terminal on this process's own: raw while the
    // container runs (the sandbox's line discipline edits and echoes).
    let _raw = (!args.detach
        && args.create.console_socket.is_none()
        && bundle::plan(&args.create.bundle).is_ok_and(|p| p.terminal))
    .then(console::RawStdin::new);
    let started = Locked::open(&g.root, &args.create.id)
        .map_err(anyhow::Error::new)
        .and_then(|l| start_locked(&l));
    if let Err(e) = started {
        let _ = child.kill();
        let _ = child.wait();
        if let Ok(l) = Locked::open(&g.root, &args.create.id) {
            let _ = l.remove();
        }
        return Err(e);
    }
    if args.detach {
        return Ok(0);
    }
    forward_to(child.id() as i32);
    let status = child.wait().context("waiting for the sandbox")?;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(125);
    // runc run removes the container when it ends in the foreground.
    if let Ok(l) = Locked::open(&g.root, &args.create.id) {
        let record = l.load().ok();
        let _ = l.remove();
        if let Some(r) = record {
            hooks::run_or_warn(
                bundle_hooks(&r.bundle).as_ref(),
                Stage::Poststop,
                &r.oci_state(),
            )?;
        }
    }
    Ok(code)
}

/// Passes `kill`'s signals sent to `cryo run` on to the sandbox process
/// (which gives them to init). The terminal's (INT, QUIT) reach the
/// sandbox by itself: it is in the same process group.
pub(super) fn forward_to(pid: i32) {
    let mut set = nix::sys::signal::SigSet::empty();
    for s in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGUSR1,
        nix::sys::signal::Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    let _ = std::thread::Builder::new()
        .name("cryo-forward".into())
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
            }
        });
}

pub fn state(g: &Globals, args: IdArgs) -> anyhow::Result<i32> {
    let record = state::peek(&g.root, &args.id)?;
    println!("{}", serde_json::to_string_pretty(&record.oci_state())?);
    Ok(0)
}

/// TERM, SIGTERM, term, 15.
pub fn parse_signal(s: &str) -> anyhow::Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal {s:?}");
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| anyhow::anyhow!("invalid signal {s:?}"))
}

/// Sends `signal` through the control socket; a SIGKILL the sandbox does
/// not take in time kills its host process.
fn signal_container(
    locked: &Locked,
    record: &Record,
    signal: i32,
    all: bool,
) -> anyhow::Result<()> {
    let sent = (|| -> anyhow::Result<()> {
        let mut conn = connect(locked)?;
        conn.set_timeout(Some(Duration::from_secs(5)))?;
        expect_done(conn.call(&Request::Kill { signal, all }, &[])?, "kill")
    })();
    match sent {
        Err(_) if signal == libc::SIGKILL && record.alive() => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(record.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            Ok(())
        }
        other => other,
    }
}

pub fn kill(g: &Globals, args: KillArgs) -> anyhow::Result<i32> {
    let signal = parse_signal(args.signal.as_deref().unwrap_or("TERM"))?;
    let locked = Locked::open(&g.root, &args.id)?;
    let record = locked.load()?;
    match record.status() {
        Status::Stopped | Status::Creating => {
            bail!("container {:?} is not running", args.id)
        }
        _ => signal_container(&locked, &record, signal, args.all)?,
    }
    Ok(0)
}

/// Waits up to `timeout` for the sandbox process to be gone.
fn wait_gone(record: &Record, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while record.alive() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

pub fn delete(g: &Globals, args: DeleteArgs) -> anyhow::Result<i32> {
    let locked = match Locked::open(&g.root, &args.id) {
        Ok(l) => l,
        Err(StateError::NotFound(_)) if args.force => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let record = locked.load()?;
    match record.status() {
        Status::Stopped => {}
        // runc deletes a created container: its init never ran.
        Status::Created | Status::Creating => {
            if record.alive() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(record.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        s if !args.force => bail!(
            "cannot delete container {:?}: it is {} (use --force)",
            args.id,
            s.as_str()
        ),
        _ => {
            let _ = signal_container(&locked, &record, libc::SIGKILL, true);
        }
    }
    if !wait_gone(&record, Duration::from_secs(10)) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(record.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        wait_gone(&record, Duration::from_secs(2));
    }
    let spec = bundle::load_spec(&record.bundle).ok();
    let spec_hooks = spec.as_ref().and_then(|s| s.hooks().clone());
    // A sandbox that was killed left its host cgroup behind.
    if let Some(p) = spec
        .as_ref()
        .and_then(|s| s.linux().as_ref())
        .and_then(|l| l.cgroups_path().as_ref())
    {
        super::cgroup::remove(&p.to_string_lossy());
    }
    locked.remove()?;
    hooks::run_or_warn(spec_hooks.as_ref(), Stage::Poststop, &record.oci_state())?;
    Ok(0)
}

pub fn list(g: &Globals, args: ListArgs) -> anyhow::Result<i32> {
    // `cryo do` sandboxes share --root with another record: not listed.
    let records: Vec<Record> = state::list_ids(&g.root)?
        .iter()
        .filter_map(|id| state::peek(&g.root, id).ok())
        .collect();
    if args.quiet {
        for r in &records {
            println!("{}", r.id);
        }
        return Ok(0);
    }
    match args.format.as_str() {
        "json" => {
            let all: Vec<serde_json::Value> = records.iter().map(Record::oci_state).collect();
            println!("{}", serde_json::to_string(&all)?);
        }
        "table" => {
            println!(
                "{:<20} {:<10} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for r in &records {
                let pid = r.oci_state()["pid"].as_i64().unwrap_or(0);
                println!(
                    "{:<20} {:<10} {:<10} {:<40} {:<32} root",
                    r.id,
                    pid,
                    r.status().as_str(),
                    r.bundle.display(),
                    r.created
                );
            }
        }
        f => bail!("--format {f:?}: expected table or json"),
    }
    Ok(0)
}

fn running(locked: &Locked) -> anyhow::Result<Record> {
    let record = locked.load()?;
    match record.status() {
        Status::Running | Status::Paused => Ok(record),
        s => bail!("container {:?} is {}, not running", locked.id, s.as_str()),
    }
}

/// A runc duration: a number with ns, us, ms, s, m or h.
fn parse_interval(s: &str) -> anyhow::Result<Duration> {
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("--interval {s:?}: not a duration"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("--interval {s:?}: unknown unit {unit:?} (ns, us, ms, s, m, h)"),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        bail!("--interval {s:?}: must be positive");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// One `events` line: runc's stats event (cpu usage in ns, memory in
/// bytes, pids), from the sandbox's own accounting.
fn stats_event(id: &str, s: &crate::control::ContainerStats) -> serde_json::Value {
    serde_json::json!({
        "type": "stats",
        "id": id,
        "data": {
            "cpu": {
                "usage": {
                    "total": s.cpu_user_ns.saturating_add(s.cpu_system_ns),
                    "user": s.cpu_user_ns,
                    "kernel": s.cpu_system_ns,
                },
            },
            "memory": { "usage": { "usage": s.memory_bytes } },
            "pids": { "current": s.tasks, "limit": s.tasks_limit },
        },
    })
}

/// `events`: the container's statistics once (--stats) or every
/// --interval until it stops.
pub fn events(g: &Globals, args: EventsArgs) -> anyhow::Result<i32> {
    let interval = parse_interval(&args.interval)?;
    loop {
        let locked = Locked::open(&g.root, &args.id)?;
        let record = running(&locked)?;
        let stats = match connect(&locked)?.call(&Request::Stats, &[])? {
            Reply::Stats(s) => s,
            Reply::Error(e) => bail!("events: {e}"),
            other => bail!("events: unexpected answer {other:?}"),
        };
        drop(record);
        drop(locked);
        println!("{}", stats_event(&args.id, &stats));
        if args.stats {
            return Ok(0);
        }
        std::thread::sleep(interval);
    }
}

pub fn ps(g: &Globals, args: PsArgs) -> anyhow::Result<i32> {
    let locked = Locked::open(&g.root, &args.id)?;
    running(&locked)?;
    let procs = match connect(&locked)?.call(&Request::Ps, &[])? {
        Reply::Processes(p) => p,
        Reply::Error(e) => bail!("ps: {e}"),
        other => bail!("ps: unexpected answer {other:?}"),
    };
    match args.format.as_str() {
        "json" => {
            let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
            println!("{}", serde_json::to_string(&pids)?);
        }
        "table" => {
            println!("{:>5} {:>5} {:>5} CMD", "PID", "PPID", "UID");
            for p in &procs {
                println!("{:>5} {:>5} {:>5} {}", p.pid, p.ppid, p.uid, p.cmd);
            }
        }
        f => bail!("--format {f:?}: expected table or json"),
    }
    Ok(0)
}

pub fn pause(g: &Globals, args: IdArgs) -> anyhow::Result<i32> {
    let locked = Locked::open(&g.root, &args.id)?;
    let mut record = locked.load()?;
    if record.status() != Status::Running {
        bail!(
            "cannot pause container {:?}: it is {}",
            args.id,
            record.status().as_str()
        );
    }
    expect_done(connect(&locked)?.call(&Request::Pause, &[])?, "pause")?;
    record.status = Status::Paused;
    locked.save(&record)?;
    Ok(0)
}

pub fn resume(g: &Globals, args: IdArgs) -> anyhow::Result<i32> {
    let locked = Locked::open(&g.root, &args.id)?;
    let mut record = locked.load()?;
    if record.status() != Status::Paused {
        bail!(
            "cannot resume container {:?}: it is {}",
            args.id,
            record.status().as_str()
        );
    }
    expect_done(connect(&locked)?.call(&Request::Resume, &[])?, "resume")?;
    record.status = Status::Running;
    locked.save(&record)?;
    Ok(0)
}

/// The process an exec starts: config.json's process, then --process or
/// the command line, --cwd, --env and --user over it.
/// Whether an exec'd process has a terminal, and its first size.
struct ExecTty {
    terminal: bool,
    size: Option<bundle::ConsoleSize>,
}

fn exec_spec(record: &Record, args: &ExecArgs) -> anyhow::Result<(ExecSpec, ExecTty)> {
    let config = bundle::load_spec(&record.bundle)?;
    let base = config
        .process()
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("config.json: process: missing"))?;
    let mut p = match &args.process {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--process {}", path.display()))?;
            let de = &mut serde_json::Deserializer::from_str(&text);
            let process: oci_spec::runtime::Process = serde_path_to_error::deserialize(de)
                .map_err(|e| {
                    anyhow::anyhow!("{}: field {}: {}", path.display(), e.path(), e.inner())
                })?;
            bundle::process_plan(&process)?
        }
        None => {
            if args.command.is_empty() {
                bail!("exec: no command given");
            }
            let mut p = base.clone();
            p.set_args(Some(args.command.clone()));
            bundle::process_plan(&p)?
        }
    };
    let tty = ExecTty {
        terminal: p.terminal || args.tty,
        size: p.console_size,
    };
    check_terminal(
        tty.terminal,
        "exec (--tty or process.terminal)",
        args.detach || args.exec_ready_fd.is_some(),
        args.console_socket.as_deref(),
    )?;
    if let (true, Some(path)) = (tty.terminal, &args.console_socket) {
        check_console_socket(path)?;
    }
    if let Some(cwd) = &args.cwd {
        if !cwd.starts_with('/') {
            bail!("--cwd {cwd:?}: must be an absolute path");
        }
        p.cwd = cwd.clone();
    }
    for pair in &args.env {
        let Some((k, _)) = pair.split_once('=') else {
            bail!("--env {pair:?}: expected KEY=VALUE");
        };
        p.env
            .retain(|e| e.split_once('=').map(|(key, _)| key) != Some(k));
        p.env.push(pair.clone());
    }
    if let Some(user) = &args.user {
        let (u, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let uid: u32 = u
            .parse()
            .with_context(|| format!("--user {user:?}: cryo takes numeric UID[:GID]"))?;
        p.creds.uid = uid;
        p.creds.euid = uid;
        p.creds.suid = uid;
        if let Some(gid) = gid {
            let gid: u32 = gid
                .parse()
                .with_context(|| format!("--user {user:?}: cryo takes numeric UID[:GID]"))?;
            p.creds.gid = gid;
            p.creds.egid = gid;
            p.creds.sgid = gid;
        }
    }
    if !args.additional_gids.is_empty() {
        p.creds.groups = args.additional_gids.clone();
    }
    let spec = ExecSpec {
        args: p.args,
        env: p.env,
        cwd: p.cwd,
        uid: p.creds.uid,
        gid: p.creds.gid,
        groups: p.creds.groups,
        no_new_privs: p.no_new_privs || args.no_new_privs,
        caps: Some(p.creds.caps),
    };
    Ok((spec, tty))
}

/// The files an exec passes: its stdio, or for a terminal the host side
/// the sandbox copies it to (two files, input and output): a new host
/// pty's replica whose master went over the console socket, or this
/// process's own stdin and stdout (made raw while `raw` lives).
fn exec_files(
    args: &ExecArgs,
    tty: &ExecTty,
    raw: &mut Option<console::RawStdin>,
) -> anyhow::Result<Vec<OwnedFd>> {
    if !tty.terminal {
        return own_stdio();
    }
    match &args.console_socket {
        Some(path) => {
            let sock = console::ConsoleSocket::connect(path)?;
            let pty = console::host_pty(tty.size)?;
            sock.send(&pty.master)?;
            drop(pty.master);
            let output = pty.replica.try_clone().context("the terminal")?;
            Ok(vec![pty.replica, output])
        }
        None => {
            *raw = Some(console::RawStdin::new());
            Ok(console::HostSide::own_stdio()?.into_fds().into())
        }
    }
}

/// This process's stdio to pass (a closed one as /dev/null).
fn own_stdio() -> anyhow::Result<Vec<OwnedFd>> {
    let mut out = Vec::new();
    for (fd, write) in [(0, false), (1, true), (2, true)] {
        let open = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok();
        let owned: OwnedFd = if open {
            match fd {
                0 => std::io::stdin().as_fd().try_clone_to_owned()?,
                1 => std::io::stdout().as_fd().try_clone_to_owned()?,
                _ => std::io::stderr().as_fd().try_clone_to_owned()?,
            }
        } else {
            std::fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .open("/dev/null")?
                .into()
        };
        out.push(owned);
    }
    Ok(out)
}

pub fn exec(g: &Globals, args: ExecArgs) -> anyhow::Result<i32> {
    let (spec, socket) = {
        let locked = Locked::open(&g.root, &args.id)?;
        let record = locked.load()?;
        if record.status() != Status::Running {
            bail!(
                "cannot exec in container {:?}: it is {}",
                args.id,
                record.status().as_str()
            );
        }
        (exec_spec(&record, &args)?, locked.control_socket())
    };
    let (spec, tty) = spec;
    if args.detach {
        return exec_detached(g);
    }
    // Not detached: this process stands for the exec'd one.
    let mut ready = match args.exec_ready_fd {
        Some(fd) => Some(adopt(fd)?),
        None => None,
    };
    if let (Some(p), None) = (&args.pid_file, &ready) {
        write_pid_file(p, std::process::id() as i32)?;
    }
    let mut raw = None;
    let stdio = match exec_files(&args, &tty, &mut raw) {
        Ok(s) => s,
        Err(e) => {
            if let Some(mut r) = ready.take() {
                let _ = r.write_all(crate::one_line(&e).as_bytes());
            }
            return Err(e);
        }
    };
    let fds: Vec<BorrowedFd<'_>> = stdio.iter().map(|f| f.as_fd()).collect();
    let mut conn = Connection::open(&socket)
        .with_context(|| format!("container {:?} does not answer", args.id))?;
    let mut reply = conn.call(&Request::Exec(spec), &fds)?;
    drop(fds);
    drop(stdio);
    loop {
        match reply {
            Reply::Started { pid } => {
                tracing::debug!(pid, "exec'd process started");
                if let Some(mut r) = ready.take() {
                    let _ = r.write_all(b"ok\n");
                }
            }
            Reply::Exited { code } => return Ok(code),
            Reply::Error(e) => {
                if let Some(mut r) = ready.take() {
                    let _ = r.write_all(e.as_bytes());
                }
                eprintln!("cryo: exec: {e}");
                // A command that does not exist is followed by its status.
                return match conn.next_reply() {
                    Ok(Reply::Exited { code }) => Ok(code),
                    _ => Ok(125),
                };
            }
            other => bail!("exec: unexpected answer {other:?}"),
        }
        reply = conn.next_reply()?;
    }
}

fn adopt(fd: i32) -> anyhow::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .with_context(|| format!("--exec-ready-fd {fd}"))?;
    let _ = nix::unistd::close(fd);
    Ok(f)
}

/// `exec --detach`: the same exec, not detached, in a child process that
/// stays with the exec'd process; its pid goes to --pid-file once the
/// process runs.
fn exec_detached(g: &Globals) -> anyhow::Result<i32> {
    let (r, w) = ready_pipe()?;
    let mut cmd = Command::new(std::env::current_exe().context("finding the cryo binary")?);
    g.apply(&mut cmd);
    // The original arguments after the global ones, without --detach and
    // --pid-file (this process writes the pid file).
    let argv: Vec<String> = std::env::args().collect();
    let sub = argv.iter().position(|a| a == "exec").unwrap_or(argv.len());
    let mut rest = argv[sub..].iter().peekable();
    let mut pid_file = None;
    let mut child_args = Vec::new();
    let mut past_options = false;
    while let Some(a) = rest.next() {
        if !past_options {
            match a.as_str() {
                "--detach" | "-d" => continue,
                "--pid-file" => {
                    pid_file = rest.next().cloned();
                    continue;
                }
                "--" => past_options = true,
                _ if a.starts_with("--pid-file=") => {
                    pid_file = a.strip_prefix("--pid-file=").map(str::to_string);
                    continue;
                }
                _ if a.starts_with("--detach=") => continue,
                _ => {}
            }
        }
        child_args.push(a.clone());
    }
    child_args.insert(1, format!("--exec-ready-fd={}", w.as_raw_fd()));
    cmd.args(&child_args);
    let mut child = cmd.spawn().context("starting the exec process")?;
    drop(w);
    let answer = read_all(r);
    if answer.trim_end() != "ok" {
        let _ = child.wait();
        bail!("{}", answer.trim_end());
    }
    if let Some(p) = pid_file {
        write_pid_file(Path::new(&p), child.id() as i32)?;
    }
    Ok(0)
}

pub fn features() -> anyhow::Result<i32> {
    let f = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": state::OCI_VERSION,
        "hooks": [],
        "mountOptions": ["bind", "rbind", "ro", "rw", "mode"],
        "linux": {
            "namespaces": ["pid", "mount", "uts", "ipc", "network", "user", "cgroup"],
            "capabilities": [],
            "cgroup": {"v1": false, "v2": false, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": false},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {
            "org.opencontainers.runc.version": env!("CARGO_PKG_VERSION"),
            "dev.cryo.platforms": "systrap,ptrace"
        }
    });
    println!("{}", serde_json::to_string_pretty(&f)?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("usr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("NOPE").is_err());
    }
}
