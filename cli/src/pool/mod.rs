//! `cryo pool`: warm pools (README, "Warm pools"). A pool is one daemon
//! process under `--root` (`ROOT/.pools/NAME/`) that keeps N sandboxes
//! restored from a statefile and held at the instant of its checkpoint
//! (everything loaded, no task running), each a child process of its own
//! (a *member*, `member.rs`), and refills in the background as they are
//! taken (`daemon.rs`). `take` hands one out: the member becomes a running
//! sandbox with its own id under --root, its saved stdio the taker's.
//!
//! The commands talk to the daemon over `pool.sock` with JSON lines (files
//! passed with SCM_RIGHTS), as `control.rs` does with a sandbox.

mod daemon;
mod member;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::oci::commands::Globals;

#[derive(clap::Args, Debug)]
pub struct PoolArgs {
    #[command(subcommand)]
    command: PoolCommand,
}

#[derive(clap::Subcommand, Debug)]
enum PoolCommand {
    /// Start a pool daemon keeping --size sandboxes restored from the
    /// statefile in --image-path, ready to be taken.
    Create(CreateArgs),
    /// Hand out one of the pool's sandboxes as a running sandbox (its
    /// stdio this command's; waits for it unless --detach).
    Take(TakeArgs),
    /// List the pools under --root.
    Ls(FormatArgs),
    /// A pool's statistics: ready sandboxes, takes, refills, memory.
    Stats(NamedFormatArgs),
    /// Change how many ready sandboxes a pool keeps.
    Resize(ResizeArgs),
    /// Stop a pool: its ready sandboxes end (taken ones go on).
    Destroy(NameArg),
    /// Internal: the pool's daemon.
    #[command(hide = true)]
    Daemon(daemon::DaemonArgs),
    /// Internal: one pooled sandbox.
    #[command(hide = true)]
    Member(member::MemberArgs),
}

impl PoolArgs {
    /// Whether this process is a sandbox (a pool's member), which enters
    /// its namespaces while it is one thread and locks down when taken.
    pub fn is_sandbox(&self) -> bool {
        matches!(self.command, PoolCommand::Member(_))
    }

    /// Whether this command stands for a sandbox and so passes it the
    /// usual signals (main blocks them before any thread starts).
    pub fn forwards_signals(&self) -> bool {
        match &self.command {
            PoolCommand::Take(t) => !t.detach,
            PoolCommand::Member(_) => true,
            _ => false,
        }
    }
}

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
struct CreateArgs {
    /// Directory holding the statefile (checkpoint.cryo). Replacing it
    /// later (`cryo checkpoint --force`) changes the pool's statefile once
    /// the new one restores.
    #[arg(long)]
    image_path: PathBuf,
    /// The OCI bundle of the checkpointed container (as `cryo restore
    /// --bundle`): the pool's sandboxes are containers of it, their root
    /// and mounts the bundle's, and a take makes each an OCI container.
    #[arg(long, short = 'b')]
    bundle: Option<PathBuf>,
    /// How many ready sandboxes the pool keeps.
    #[arg(long)]
    size: usize,
    /// The most memory (PSS of their processes) the ready sandboxes may
    /// use together, in bytes or with a K, M or G suffix: the pool keeps
    /// fewer than --size ready rather than go over it.
    #[arg(long, value_name = "BYTES")]
    max_memory: Option<String>,
    /// The signal each take sends to every process of the handed-out
    /// sandbox that has a handler for it (README, "Warm pools": how a
    /// program notices it was cloned), e.g. SIGUSR2.
    #[arg(long, value_name = "SIGNAL")]
    take_signal: Option<String>,
    /// Load the statefile's memory once, into a sealed file the ready
    /// sandboxes share (each holds none of it of its own until its take,
    /// which copies it in: takes get slower by that copy).
    #[arg(long)]
    share_memory: bool,
    /// The pool's name.
    name: String,
}

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
struct TakeArgs {
    /// The sandbox's id under --root (generated if not given).
    #[arg(long)]
    id: Option<String>,
    /// KEY=VALUE the sandbox reads in /proc/cryo/environ; may be repeated.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Give the sandbox a new terminal whose master goes to this socket
    /// (as runc's --console-socket), instead of this command's stdio.
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Return once the sandbox runs, printing its id; it goes on in the
    /// background.
    #[arg(long, short = 'd')]
    detach: bool,
    /// How long to wait for a ready sandbox when none is (seconds).
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    name: String,
}

#[derive(clap::Args, Debug)]
struct FormatArgs {
    /// text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

#[derive(clap::Args, Debug)]
struct NamedFormatArgs {
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
    name: String,
}

#[derive(clap::Args, Debug)]
struct ResizeArgs {
    #[arg(long)]
    size: usize,
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
    name: String,
}

#[derive(clap::Args, Debug)]
struct NameArg {
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
    name: String,
}

/// A command's request to the daemon.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Request {
    /// Passes the sandbox's stdin, stdout, stderr and the socket its status
    /// goes to.
    Take {
        id: String,
        env: Vec<String>,
        timeout_secs: u64,
        /// The taker returns at once: a container's record stays for
        /// `delete` after it ends.
        #[serde(default)]
        detach: bool,
    },
    Stats,
    Resize {
        size: usize,
    },
    Destroy,
}

/// The daemon's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Reply {
    Taken { id: String, pid: i32 },
    Stats(Box<PoolStats>),
    Done,
    Error(String),
}

/// What a taken sandbox's member writes on the taker's status socket when
/// the sandbox ends.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Status {
    Exited { code: i32 },
}

/// One ready sandbox, for stats.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MemberStats {
    /// The member's host pid.
    pub pid: i32,
    /// The statefile generation it was restored from.
    pub generation: u64,
    /// PSS of the member and every process under it (stubs, gofer).
    pub pss_bytes: u64,
    /// What its own memory file holds (a held sandbox: nothing of the
    /// statefile's memory, which it shares until its take).
    pub memory_file_bytes: u64,
}

/// `pool stats`: what the daemon knows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PoolStats {
    pub name: String,
    /// The image directory the pool watches.
    pub image_path: String,
    /// The OCI bundle its containers come from (None: `cryo do` sandboxes).
    pub bundle: Option<String>,
    /// Statefiles the pool took so far (1: the first; each accepted
    /// replacement adds one).
    pub generation: u64,
    pub size: usize,
    pub ready: usize,
    /// A sandbox being restored now.
    pub refilling: bool,
    pub takes: u64,
    /// Sandboxes restored since the pool was created (the first one too).
    pub refills: u64,
    pub refill_failures: u64,
    /// Why the last refill failed, until one succeeds again.
    pub last_error: Option<String>,
    /// A replacement statefile that did not restore, and why.
    pub refused_statefile: Option<String>,
    pub max_memory_bytes: Option<u64>,
    /// PSS of every ready sandbox together.
    pub pss_bytes: u64,
    /// What the last restored member's memory file held when it was ready.
    pub sandbox_memory_bytes: u64,
    /// With --share-memory: the statefile's memory, loaded once and shared
    /// by every ready sandbox until its take copies it into its own
    /// memory file.
    pub shared_memory_bytes: u64,
    /// The daemon's host pid.
    pub daemon_pid: i32,
    pub members: Vec<MemberStats>,
}

/// `ROOT/.pools`: a dot name, which no container id can be.
fn pools_dir(root: &Path) -> PathBuf {
    root.join(".pools")
}

fn pool_dir(root: &Path, name: &str) -> PathBuf {
    pools_dir(root).join(name)
}

fn pool_socket(root: &Path, name: &str) -> PathBuf {
    pool_dir(root, name).join("pool.sock")
}

fn check_name(name: &str) -> anyhow::Result<()> {
    crate::container::validate_id(name)
        .map_err(|_| anyhow::anyhow!("invalid pool name {name:?}: use 1-128 characters [A-Za-z0-9_.-], starting with a letter or digit"))
}

/// Largest message either side sends.
const MAX_MESSAGE: usize = 256 * 1024;

fn send<T: Serialize>(sock: BorrowedFd<'_>, v: &T, fds: &[BorrowedFd<'_>]) -> anyhow::Result<()> {
    let mut msg = serde_json::to_string(v)?;
    msg.push('\n');
    if msg.len() > MAX_MESSAGE {
        bail!("pool message of {} bytes is too large", msg.len());
    }
    crate::control::send_with_fds(sock, msg.as_bytes(), fds)
}

/// One message and the files passed with it (None: the peer closed).
fn recv<T: for<'de> Deserialize<'de>>(
    sock: BorrowedFd<'_>,
) -> anyhow::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    match gofer::wire::recv(sock, &mut buf)? {
        gofer::wire::Received::Message { len, fds } => {
            let v = serde_json::from_slice(buf[..len].trim_ascii_end())
                .context("a malformed pool message")?;
            Ok(Some((v, fds)))
        }
        gofer::wire::Received::Truncated => bail!("a pool message over {MAX_MESSAGE} bytes"),
        gofer::wire::Received::Eof => Ok(None),
    }
}

/// Connects to pool `name`'s daemon.
fn connect(root: &Path, name: &str) -> anyhow::Result<UnixStream> {
    check_name(name)?;
    let path = pool_socket(root, name);
    UnixStream::connect(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            anyhow::anyhow!("no pool named {name:?} under {}", root.display())
        }
        _ => anyhow::Error::new(e).context(format!("connecting to {}", path.display())),
    })
}

/// Sends `req` to pool `name` and reads the reply.
fn call(root: &Path, name: &str, req: &Request, fds: &[BorrowedFd<'_>]) -> anyhow::Result<Reply> {
    let sock = connect(root, name)?;
    send(sock.as_fd(), req, fds)?;
    let mut line = String::new();
    BufReader::new(&sock)
        .take(MAX_MESSAGE as u64)
        .read_line(&mut line)?;
    if line.is_empty() {
        bail!("pool {name:?} closed the connection without answering");
    }
    let reply: Reply = serde_json::from_str(&line).context("a malformed reply from the pool")?;
    if let Reply::Error(e) = reply {
        bail!("pool {name:?}: {e}");
    }
    Ok(reply)
}

pub fn run(args: PoolArgs, g: &Globals) -> anyhow::Result<i32> {
    match args.command {
        PoolCommand::Create(a) => create(a, g),
        PoolCommand::Take(a) => take(a, g),
        PoolCommand::Ls(a) => ls(a, g),
        PoolCommand::Stats(a) => {
            let stats = stats_of(&g.root, &a.name)?;
            print_stats(&[stats], &a.format, false);
            Ok(0)
        }
        PoolCommand::Resize(a) => {
            call(&g.root, &a.name, &Request::Resize { size: a.size }, &[])?;
            if a.format == "json" {
                println!("{}", serde_json::json!({"name": a.name, "size": a.size}));
            }
            Ok(0)
        }
        PoolCommand::Destroy(a) => {
            call(&g.root, &a.name, &Request::Destroy, &[])?;
            if a.format == "json" {
                println!("{}", serde_json::json!({"name": a.name, "destroyed": true}));
            }
            Ok(0)
        }
        PoolCommand::Daemon(a) => daemon::run(a, g),
        PoolCommand::Member(a) => member::run(a, g),
    }
}

/// Parses `N`, `NK`, `NM` or `NG` (binary units) into bytes.
fn parse_bytes(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("--max-memory {s:?}: expected a number of bytes"))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => bail!("--max-memory {s:?}: unknown unit {unit:?} (use K, M or G)"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("--max-memory {s:?} is too large"))
}

/// Parses a signal's name (`SIGUSR2`, `USR2`) or number.
fn parse_signal(s: &str) -> anyhow::Result<i32> {
    let signo = if let Ok(n) = s.parse::<i32>() {
        n
    } else {
        let name = s.to_ascii_uppercase();
        let name = if name.starts_with("SIG") {
            name
        } else {
            format!("SIG{name}")
        };
        name.parse::<nix::sys::signal::Signal>()
            .map_err(|_| anyhow::anyhow!("--take-signal {s:?}: not a signal"))? as i32
    };
    if !(1..=64).contains(&signo) {
        bail!("--take-signal {s:?}: not a signal");
    }
    if signo == libc::SIGKILL || signo == libc::SIGSTOP {
        bail!("--take-signal {s:?}: a program cannot handle it");
    }
    Ok(signo)
}

fn create(a: CreateArgs, g: &Globals) -> anyhow::Result<i32> {
    check_name(&a.name)?;
    let max_memory = a.max_memory.as_deref().map(parse_bytes).transpose()?;
    let take_signal = a.take_signal.as_deref().map(parse_signal).transpose()?;
    if a.size == 0 {
        bail!("--size 0: a pool keeps at least one ready sandbox");
    }
    let image = std::path::absolute(&a.image_path)
        .with_context(|| format!("--image-path {}", a.image_path.display()))?;
    let statefile = sentry::state::statefile_path(&image);
    if !statefile.is_file() {
        bail!("no statefile in {}", image.display());
    }
    let bundle = match &a.bundle {
        Some(b) => {
            let b = std::fs::canonicalize(b).with_context(|| format!("bundle {}", b.display()))?;
            let plan = crate::oci::bundle::plan(&b)?;
            if plan.terminal {
                bail!("the bundle's process has a terminal (process.terminal): pools of containers with a terminal are not supported yet");
            }
            crate::oci::restore::check_image(&image, &plan)?;
            Some(b)
        }
        None => None,
    };
    let dir = pool_dir(&g.root, &a.name);
    std::fs::create_dir_all(pools_dir(&g.root))
        .with_context(|| format!("creating {}", pools_dir(&g.root).display()))?;
    if let Err(e) = std::fs::create_dir(&dir) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(e).with_context(|| format!("creating {}", dir.display()));
        }
        if UnixStream::connect(pool_socket(&g.root, &a.name)).is_ok() {
            bail!("a pool named {:?} already exists", a.name);
        }
        // A daemon that died left its directory: reclaimed.
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing stale {}", dir.display()))?;
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let started = (|| -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .context("opening the pool's daemon.log")?;
        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&wr),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )?;
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        global_args(g, &mut cmd);
        cmd.args(["pool", "daemon", "--image-path"])
            .arg(&image)
            .arg("--size")
            .arg(a.size.to_string())
            .arg("--ready-fd")
            .arg(std::os::fd::AsRawFd::as_raw_fd(&wr).to_string());
        if let Some(m) = max_memory {
            cmd.arg("--max-memory").arg(m.to_string());
        }
        if let Some(s) = take_signal {
            cmd.arg("--take-signal").arg(s.to_string());
        }
        if let Some(b) = &bundle {
            cmd.arg("--bundle").arg(b);
        }
        if a.share_memory {
            cmd.arg("--share-memory");
        }
        cmd.arg(&a.name);
        use std::os::unix::process::CommandExt;
        // Its own process group: a terminal's ^C to this command does not
        // reach the daemon or its sandboxes.
        cmd.process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        let child = cmd.spawn().context("starting the pool daemon")?;
        drop(wr);
        let mut answer = String::new();
        let _ = std::fs::File::from(rd).read_to_string(&mut answer);
        // The daemon lives on, reparented once this command exits.
        drop(child);
        match answer.trim_end() {
            "ok" => Ok(()),
            "" => bail!(
                "the pool daemon ended before the pool was up (see {})",
                dir.join("daemon.log").display()
            ),
            e => bail!("{e}"),
        }
    })();
    if let Err(e) = started {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(0)
}

/// The global flags a command started for the pool keeps.
fn global_args(g: &Globals, cmd: &mut std::process::Command) {
    cmd.arg("--root").arg(&g.root);
    if let Some(p) = &g.platform {
        cmd.arg("--platform").arg(p);
    }
    if let Some(l) = &g.debug_log {
        cmd.arg("--debug-log").arg(l);
    }
}

fn parse_env(pairs: &[String]) -> anyhow::Result<Vec<String>> {
    for pair in pairs {
        match pair.split_once('=') {
            Some((k, _)) if !k.is_empty() && !k.contains('\0') && !pair.contains('\0') => {}
            Some(_) => bail!("--env {pair:?}: empty variable name"),
            None => bail!("--env {pair:?}: expected KEY=VALUE"),
        }
    }
    Ok(pairs.to_vec())
}

fn take(a: TakeArgs, g: &Globals) -> anyhow::Result<i32> {
    check_name(&a.name)?;
    let env = parse_env(&a.env)?;
    let id = match a.id {
        Some(id) => {
            crate::container::validate_id(&id)?;
            id
        }
        None => crate::container::generate_id(),
    };
    // The console's replica stands for all three stdio fds.
    let replica = match &a.console_socket {
        Some(p) => {
            crate::oci::commands::check_console_socket(p)?;
            let sock = crate::oci::console::ConsoleSocket::connect(p)?;
            let pty = crate::oci::console::host_pty(None)?;
            // Cooked before the master leaves: what its owner types at
            // once already goes through the line discipline.
            cooked(&pty.replica)?;
            sock.send(&pty.master)?;
            Some(pty.replica)
        }
        None => None,
    };
    let (mine, theirs) = UnixStream::pair().context("creating the status socket")?;
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let stdio: [BorrowedFd<'_>; 3] = match &replica {
        Some(r) => [r.as_fd(), r.as_fd(), r.as_fd()],
        None => [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()],
    };
    let req = Request::Take {
        id: id.clone(),
        env,
        timeout_secs: a.timeout,
        detach: a.detach,
    };
    let fds = [stdio[0], stdio[1], stdio[2], theirs.as_fd()];
    // Until a sandbox is handed out, a signal ends this command (a wait
    // for a ready sandbox can be interrupted); then it goes to the sandbox.
    let target = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    if !a.detach {
        forward_signals_to(target.clone());
    }
    let reply = call(&g.root, &a.name, &req, &fds)?;
    drop(theirs);
    drop(replica);
    let pid = match reply {
        Reply::Taken { pid, .. } => pid,
        other => bail!("pool {:?}: unexpected answer {other:?}", a.name),
    };
    if a.detach {
        println!("{id}");
        return Ok(0);
    }
    target.store(pid, std::sync::atomic::Ordering::SeqCst);
    let mut line = String::new();
    BufReader::new(&mine)
        .take(MAX_MESSAGE as u64)
        .read_line(&mut line)?;
    match serde_json::from_str::<Status>(&line) {
        Ok(Status::Exited { code }) => Ok(code),
        Err(_) if line.is_empty() => {
            bail!("sandbox {id:?} (process {pid}) ended without reporting its status")
        }
        Err(e) => bail!("sandbox {id:?}: a malformed status: {e}"),
    }
}

/// `stty sane` on a new terminal: a container's terminal is raw on the
/// host because its Sentry keeps the line discipline, but a pooled
/// sandbox's stdio is the host terminal itself, so the host's line
/// discipline is the one its program gets.
fn cooked(tty: &OwnedFd) -> anyhow::Result<()> {
    use nix::sys::termios::{
        tcgetattr, tcsetattr, ControlFlags, InputFlags, LocalFlags, OutputFlags, SetArg,
    };
    let mut t = tcgetattr(tty.as_fd()).context("reading the terminal's modes")?;
    t.input_flags |= InputFlags::ICRNL | InputFlags::IXON | InputFlags::BRKINT;
    t.output_flags |= OutputFlags::OPOST | OutputFlags::ONLCR;
    t.control_flags |= ControlFlags::CREAD | ControlFlags::CS8;
    t.local_flags |= LocalFlags::ISIG
        | LocalFlags::ICANON
        | LocalFlags::ECHO
        | LocalFlags::ECHOE
        | LocalFlags::ECHOK
        | LocalFlags::IEXTEN;
    tcsetattr(tty.as_fd(), SetArg::TCSANOW, &t).context("setting the terminal's modes")?;
    Ok(())
}

/// Passes the signals main blocked on to the sandbox's process once
/// `target` names it, which gives them to its program (as `cryo restore`
/// does for its own); before that, a signal ends this command as it would
/// have without the block.
fn forward_signals_to(target: std::sync::Arc<std::sync::atomic::AtomicI32>) {
    let set = crate::supervisor::forwarded_signals();
    let spawned = std::thread::Builder::new()
        .name("cryo-take-signals".into())
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                let pid = target.load(std::sync::atomic::Ordering::SeqCst);
                if pid == 0 {
                    std::process::exit(128 + sig as i32);
                }
                if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot forward signals to the sandbox");
    }
}

fn stats_of(root: &Path, name: &str) -> anyhow::Result<PoolStats> {
    match call(root, name, &Request::Stats, &[])? {
        Reply::Stats(s) => Ok(*s),
        other => bail!("pool {name:?}: unexpected answer {other:?}"),
    }
}

fn ls(a: FormatArgs, g: &Globals) -> anyhow::Result<i32> {
    let mut names: Vec<String> = match std::fs::read_dir(pools_dir(&g.root)) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| check_name(n).is_ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).context("reading the pools directory"),
    };
    names.sort();
    let mut all = Vec::new();
    for n in names {
        // A pool whose daemon is gone is left out (create reclaims it).
        if let Ok(s) = stats_of(&g.root, &n) {
            all.push(s);
        }
    }
    print_stats(&all, &a.format, true);
    Ok(0)
}

fn mib(b: u64) -> String {
    format!("{:.1}MiB", b as f64 / f64::from(1 << 20))
}

fn print_stats(all: &[PoolStats], format: &str, list: bool) {
    if format == "json" {
        let text = if list {
            serde_json::to_string_pretty(all)
        } else {
            serde_json::to_string_pretty(&all[0])
        };
        println!("{}", text.unwrap_or_default());
        return;
    }
    if list {
        println!(
            "{:<20} {:>5} {:>5} {:>6} {:>10}  IMAGE",
            "NAME", "SIZE", "READY", "TAKES", "PSS"
        );
        for s in all {
            println!(
                "{:<20} {:>5} {:>5} {:>6} {:>10}  {}",
                s.name,
                s.size,
                s.ready,
                s.takes,
                mib(s.pss_bytes),
                s.image_path
            );
        }
        return;
    }
    let mut out = std::io::stdout().lock();
    for s in all {
        let _ = writeln!(out, "name: {}", s.name);
        let _ = writeln!(out, "image: {} (generation {})", s.image_path, s.generation);
        if let Some(b) = &s.bundle {
            let _ = writeln!(out, "bundle: {b}");
        }
        let _ = writeln!(out, "size: {}", s.size);
        let _ = writeln!(
            out,
            "ready: {}{}",
            s.ready,
            if s.refilling { " (+1 refilling)" } else { "" }
        );
        let _ = writeln!(out, "takes: {}", s.takes);
        let _ = writeln!(out, "refills: {} ({} failed)", s.refills, s.refill_failures);
        if let Some(e) = &s.last_error {
            let _ = writeln!(out, "last refill error: {e}");
        }
        if let Some(e) = &s.refused_statefile {
            let _ = writeln!(out, "refused statefile: {e}");
        }
        if let Some(m) = s.max_memory_bytes {
            let _ = writeln!(out, "max memory: {}", mib(m));
        }
        let _ = writeln!(out, "pss of ready sandboxes: {}", mib(s.pss_bytes));
        if s.ready > 0 {
            let _ = writeln!(
                out,
                "pss per ready sandbox: {}",
                mib(s.pss_bytes / s.ready as u64)
            );
        }
        let _ = writeln!(
            out,
            "shared memory (the statefile's, one copy): {}",
            mib(s.shared_memory_bytes)
        );
        let held: u64 = s.members.iter().map(|m| m.memory_file_bytes).sum();
        let _ = writeln!(out, "memory files of ready sandboxes: {}", mib(held));
    }
}

/// Reads one line from `sock` with a timeout (None: the peer closed).
fn read_line_timeout(sock: &UnixStream, timeout: Option<Duration>) -> anyhow::Result<String> {
    sock.set_read_timeout(timeout)?;
    let mut line = String::new();
    BufReader::new(sock)
        .take(MAX_MESSAGE as u64)
        .read_line(&mut line)?;
    Ok(line)
}

/// PSS of process `pid` and every process under it, in bytes, from their
/// /proc/PID/smaps_rollup (a process that is gone counts nothing).
pub fn pss_of_tree(pid: i32) -> u64 {
    let mut children: std::collections::HashMap<i32, Vec<i32>> = Default::default();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // The fields after the command (which may hold spaces).
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut total = 0;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        total += pss_of(p);
        if let Some(c) = children.get(&p) {
            todo.extend(c);
        }
    }
    total
}

fn pss_of(pid: i32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_signals_parse() {
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("2K").unwrap(), 2048);
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("12X").is_err());
        assert!(parse_bytes("99999999999999G").is_err());
        assert_eq!(parse_signal("SIGUSR2").unwrap(), libc::SIGUSR2);
        assert_eq!(parse_signal("usr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("34").unwrap(), 34);
        assert!(parse_signal("KILL").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn env_pairs_are_checked() {
        assert!(parse_env(&["A=1".into(), "B=".into()]).is_ok());
        assert!(parse_env(&["=1".into()]).is_err());
        assert!(parse_env(&["A".into()]).is_err());
    }

    #[test]
    fn pss_counts_this_process() {
        assert!(pss_of_tree(std::process::id() as i32) > 0);
        assert_eq!(pss_of(-1), 0);
    }
}
