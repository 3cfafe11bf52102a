//! The pool's daemon (`cryo pool daemon`, started by `pool create`): it
//! keeps `size` members ready, restoring one at a time in the background
//! as they are taken, answers the pool commands on `pool.sock`, and
//! watches the image directory: a replaced statefile is copied and
//! restored once; if that works, new sandboxes come from it and the ready
//! ones from the old one are retired, and if not, it is refused (stats say
//! why) and the old one stays.
//!
//! The daemon keeps its own copy of each statefile it uses (in the pool's
//! directory), so a statefile replaced or removed underneath never leaves
//! it without one that loads.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::member::{MemberCommand, MemberReply};
use super::{MemberStats, PoolStats, Reply, Request};
use crate::oci::commands::Globals;

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    #[arg(long)]
    image_path: PathBuf,
    #[arg(long)]
    size: usize,
    #[arg(long)]
    max_memory: Option<u64>,
    #[arg(long)]
    take_signal: Option<i32>,
    #[arg(long)]
    bundle: Option<PathBuf>,
    #[arg(long)]
    share_memory: bool,
    /// The inherited pipe on which `create` waits for "ok" or an error.
    #[arg(long)]
    ready_fd: i32,
    name: String,
}

/// How long a member may take to restore.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the image directory is looked at.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How long a refill waits after a take while the pool still has a ready
/// sandbox: on a small host a restore started at once competes for the
/// CPUs with the sandbox just handed out, whose first answer is what a
/// pool is for.
const REFILL_DELAY: Duration = Duration::from_millis(300);
/// The longest pause between refills that fail.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What identifies a statefile's version on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileIdent {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

fn ident_of(path: &Path) -> Option<FileIdent> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileIdent {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// One statefile the pool took: its copy's image directory, and, with
/// --share-memory, its memory loaded once into a sealed file every member
/// shares until its take copies it in (`sentry::state::load_shared_memory`).
#[derive(Clone, Debug)]
struct Generation {
    n: u64,
    dir: PathBuf,
    source: Option<FileIdent>,
    memory: Option<Arc<std::os::fd::OwnedFd>>,
}

/// Host memory `fd` holds (its blocks).
fn held_bytes(fd: &std::os::fd::OwnedFd) -> u64 {
    nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(fd))
        .map_or(0, |st| u64::try_from(st.st_blocks).unwrap_or(0) * 512)
}

/// A ready member.
struct Member {
    pid: i32,
    sock: UnixStream,
    generation: u64,
    memory_bytes: u64,
    pss_bytes: u64,
}

#[derive(Default)]
struct State {
    target: usize,
    ready: VecDeque<Member>,
    /// The pid of a member being restored now.
    starting: Option<i32>,
    generation: Option<Generation>,
    /// A replacement statefile that did not restore: its identity (so it
    /// is not tried again until it changes) and why.
    refused: Option<(FileIdent, String)>,
    last_error: Option<String>,
    failing_since_success: u32,
    takes: u64,
    refills: u64,
    failures: u64,
    sandbox_memory_bytes: u64,
    /// When the last take handed a sandbox out.
    last_take: Option<Instant>,
    destroyed: bool,
}

struct Pool {
    name: String,
    root: PathBuf,
    image: PathBuf,
    dir: PathBuf,
    max_memory: Option<u64>,
    take_signal: Option<i32>,
    bundle: Option<PathBuf>,
    share_memory: bool,
    platform: Option<String>,
    debug_log: Option<PathBuf>,
    state: Mutex<State>,
    changed: Condvar,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn adopt_ready_fd(fd: i32) -> anyhow::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .with_context(|| format!("--ready-fd {fd}"))?;
    let _ = nix::unistd::close(fd);
    Ok(f)
}

/// Copies the image directory's statefile into the pool's directory as
/// generation `n`.
fn copy_generation(pool: &Pool, n: u64) -> anyhow::Result<Generation> {
    let src = sentry::state::statefile_path(&pool.image);
    let source = ident_of(&src);
    let dir = pool.dir.join(format!("image-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::copy(&src, sentry::state::statefile_path(&dir))
        .with_context(|| format!("copying {}", src.display()))?;
    // An OCI container's checkpoint has its inventory beside it (what
    // `restore --bundle` checks the directory by).
    let inventory = pool.image.join("inventory.img");
    if inventory.is_file() {
        std::fs::copy(&inventory, dir.join("inventory.img"))
            .with_context(|| format!("copying {}", inventory.display()))?;
    }
    let memory = if pool.share_memory {
        let m = sentry::state::load_shared_memory(&dir).map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.to_string().replace(
                    &sentry::state::statefile_path(&dir).display().to_string(),
                    &src.display().to_string(),
                )
            )
        })?;
        Some(Arc::new(m))
    } else {
        None
    };
    Ok(Generation {
        n,
        dir,
        source,
        memory,
    })
}

/// Starts a member restoring `generation` and waits until it is ready
/// (or has failed, with the restore's error).
fn start_member(pool: &Arc<Pool>, generation: &Generation) -> anyhow::Result<Member> {
    let (ours, theirs) = UnixStream::pair().context("creating a member socket")?;
    let mut cmd = Command::new(std::env::current_exe().context("finding the cryo binary")?);
    cmd.arg("--root").arg(&pool.root);
    if let Some(p) = &pool.platform {
        cmd.arg("--platform").arg(p);
    }
    if let Some(l) = &pool.debug_log {
        cmd.arg("--debug-log").arg(l);
    }
    cmd.args(["pool", "member", "--image-path"])
        .arg(&generation.dir);
    if let Some(s) = pool.take_signal {
        cmd.arg("--take-signal").arg(s.to_string());
    }
    if let Some(b) = &pool.bundle {
        cmd.arg("--bundle").arg(b);
    }
    cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("starting a pool member")?;
    let pid = child.id() as i32;
    // Its first message: the statefile's shared memory, if any.
    let shared: Vec<_> = generation.memory.iter().map(|m| m.as_fd()).collect();
    if let Err(e) = super::send(ours.as_fd(), &MemberCommand::Memory, &shared) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e.context("passing the shared memory to a member"));
    }
    pool.lock().starting = Some(pid);
    // Reaped by a thread of its own: a member lives on as a taken sandbox.
    let answer = super::read_line_timeout(&ours, Some(RESTORE_TIMEOUT));
    let answer = answer.and_then(|line| {
        if line.is_empty() {
            bail!("the sandbox process ended while restoring");
        }
        Ok(serde_json::from_str::<MemberReply>(&line)?)
    });
    let result = match answer {
        Ok(MemberReply::Ready { memory_bytes }) => {
            ours.set_read_timeout(None)?;
            Ok(Member {
                pid,
                sock: ours,
                generation: generation.n,
                memory_bytes,
                pss_bytes: super::pss_of_tree(pid),
            })
        }
        // Named as the user knows it, not by the pool's copy.
        Ok(MemberReply::Failed(e)) => Err(anyhow::anyhow!(
            "{}",
            e.replace(
                &sentry::state::statefile_path(&generation.dir)
                    .display()
                    .to_string(),
                &sentry::state::statefile_path(&pool.image)
                    .display()
                    .to_string(),
            )
        )),
        Ok(other) => Err(anyhow::anyhow!(
            "a member answered {other:?} to its restore"
        )),
        Err(e) => Err(e),
    };
    if result.is_err() {
        let _ = child.kill();
    }
    // A member that dies while ready (killed from outside, say) leaves the
    // ready list at once, so no take picks it.
    let reaped = pool.clone();
    std::thread::spawn(move || {
        let _ = child.wait();
        let mut st = reaped.lock();
        st.ready.retain(|m| m.pid != pid);
        reaped.changed.notify_all();
    });
    result
}

/// Ends a ready member: closing its socket retires it, the kill makes
/// sure.
fn retire(m: Member) {
    drop(m.sock);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(m.pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Whether another ready member fits in --max-memory.
fn fits(pool: &Pool, st: &State) -> bool {
    let Some(max) = pool.max_memory else {
        return true;
    };
    let used: u64 = st.ready.iter().map(|m| m.pss_bytes).sum();
    let one = st.ready.iter().map(|m| m.pss_bytes).max().unwrap_or(0);
    used + one <= max
}

/// Looks at the image directory: a statefile not yet tried is copied and
/// restored once, and taken if that works.
fn check_source(pool: &Arc<Pool>) {
    let src = sentry::state::statefile_path(&pool.image);
    let Some(now) = ident_of(&src) else {
        return;
    };
    let (current, n) = {
        let st = pool.lock();
        if st.refused.as_ref().is_some_and(|(i, _)| *i == now) {
            return;
        }
        match &st.generation {
            Some(g) if g.source == Some(now) => return,
            Some(g) => (g.clone(), g.n + 1),
            None => return,
        }
    };
    tracing::info!(pool = %pool.name, "the image directory holds a new statefile");
    let tried = copy_generation(pool, n).and_then(|g| start_member(pool, &g).map(|m| (g, m)));
    let mut st = pool.lock();
    st.starting = None;
    match tried {
        Ok((g, m)) => {
            eprintln!(
                "cryo pool {}: statefile generation {} accepted",
                pool.name, g.n
            );
            st.generation = Some(g);
            st.refused = None;
            st.refills += 1;
            st.sandbox_memory_bytes = m.memory_bytes;
            for old in std::mem::take(&mut st.ready) {
                retire(old);
            }
            if st.destroyed {
                retire(m);
            } else {
                st.ready.push_back(m);
            }
            let _ = std::fs::remove_dir_all(&current.dir);
        }
        Err(e) => {
            let why = crate::one_line(&e);
            eprintln!(
                "cryo pool {}: replacement statefile refused: {why}",
                pool.name
            );
            let _ = std::fs::remove_dir_all(pool.dir.join(format!("image-{n}")));
            st.refused = Some((now, why));
        }
    }
    pool.changed.notify_all();
}

/// Keeps the pool full, one restore at a time.
fn refill_loop(pool: Arc<Pool>) {
    let mut backoff_until: Option<Instant> = None;
    let mut last_watch = Instant::now();
    loop {
        if last_watch.elapsed() >= WATCH_INTERVAL {
            check_source(&pool);
            last_watch = Instant::now();
        }
        let generation = {
            let st = pool.lock();
            if st.destroyed {
                return;
            }
            let now = Instant::now();
            let mut wait = WATCH_INTERVAL;
            let mut due = backoff_until.is_none_or(|t| now >= t);
            if let Some(t) = st.last_take.filter(|_| !st.ready.is_empty()) {
                let settle = (t + REFILL_DELAY).saturating_duration_since(now);
                if !settle.is_zero() {
                    due = false;
                    wait = wait.min(settle);
                }
            }
            let want = st.ready.len() < st.target && fits(&pool, &st) && due;
            if !want {
                let _ = pool.changed.wait_timeout(st, wait).map(|(g, _)| drop(g));
                continue;
            }
            match &st.generation {
                Some(g) => g.clone(),
                None => return,
            }
        };
        let started = start_member(&pool, &generation);
        let mut st = pool.lock();
        st.starting = None;
        match started {
            Ok(m) => {
                st.refills += 1;
                st.last_error = None;
                st.failing_since_success = 0;
                st.sandbox_memory_bytes = m.memory_bytes;
                backoff_until = None;
                let current = st.generation.as_ref().map(|g| g.n);
                if st.destroyed || current != Some(m.generation) || st.ready.len() >= st.target {
                    retire(m);
                } else {
                    st.ready.push_back(m);
                }
            }
            Err(e) => {
                let why = crate::one_line(&e);
                eprintln!("cryo pool {}: refill failed: {why}", pool.name);
                st.failures += 1;
                st.failing_since_success += 1;
                st.last_error = Some(why);
                let wait = Duration::from_millis(250)
                    .saturating_mul(1 << st.failing_since_success.min(5))
                    .min(MAX_BACKOFF);
                backoff_until = Some(Instant::now() + wait);
            }
        }
        pool.changed.notify_all();
    }
}

/// Hands out a ready member as sandbox `id`.
/// What a take asks of the sandbox it gets.
struct TakeSpec {
    id: String,
    env: Vec<String>,
    detach: bool,
}

fn take(pool: &Pool, spec: TakeSpec, timeout: Duration, fds: Vec<std::os::fd::OwnedFd>) -> Reply {
    if fds.len() != 4 {
        return Reply::Error(format!(
            "a take passes 4 files (stdio and a status socket), not {}",
            fds.len()
        ));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let member = match pick(pool, deadline, timeout) {
            Ok(m) => m,
            Err(e) => return Reply::Error(e),
        };
        match hand_out(pool, member, &spec, &fds) {
            Some(reply) => return reply,
            // It was gone before it got the request: nothing of it ran, so
            // the next one is asked.
            None => continue,
        }
    }
}

/// Takes a ready member of the current statefile off the list, waiting
/// for a refill until `deadline`.
fn pick(pool: &Pool, deadline: Instant, timeout: Duration) -> Result<Member, String> {
    let mut st = pool.lock();
    loop {
        if st.destroyed {
            return Err(format!("pool {:?} is being destroyed", pool.name));
        }
        let current = st.generation.as_ref().map(|g| g.n);
        if let Some(i) = st.ready.iter().position(|m| Some(m.generation) == current) {
            if let Some(m) = st.ready.remove(i) {
                // The refill waits a moment (REFILL_DELAY) while others
                // are ready, and starts now if none is.
                st.last_take = Some(Instant::now());
                pool.changed.notify_all();
                return Ok(m);
            }
        }
        if st.failing_since_success > 0 {
            let why = st.last_error.clone().unwrap_or_default();
            return Err(format!(
                "pool {:?} has no ready sandbox: its refill fails: {why}",
                pool.name
            ));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "pool {:?} had no ready sandbox within {}s",
                pool.name,
                timeout.as_secs()
            ));
        }
        st = match pool.changed.wait_timeout(st, deadline - now) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
    }
}

/// Passes the take to `member`; None if it was gone before the request
/// reached it.
fn hand_out(
    pool: &Pool,
    member: Member,
    spec: &TakeSpec,
    fds: &[std::os::fd::OwnedFd],
) -> Option<Reply> {
    let id = spec.id.clone();
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let sent = super::send(
        member.sock.as_fd(),
        &MemberCommand::Take {
            id: id.clone(),
            env: spec.env.clone(),
            detach: spec.detach,
        },
        &borrowed,
    );
    if let Err(e) = sent {
        tracing::warn!(pid = member.pid, error = %e, "a ready member was gone");
        retire(member);
        return None;
    }
    let line = super::read_line_timeout(&member.sock, Some(Duration::from_secs(30)));
    let reset = line
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<std::io::Error>());
    if reset.is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset) {
        // It closed with the request unread (a member dying as it was
        // picked): it never saw the take, so the next one is asked.
        tracing::warn!(
            pid = member.pid,
            "a ready member died before reading its take"
        );
        retire(member);
        return None;
    }
    let answer = line.and_then(|line| {
        if line.is_empty() {
            bail!("the pooled sandbox ended during the take");
        }
        Ok(serde_json::from_str::<MemberReply>(&line)?)
    });
    Some(match answer {
        Ok(MemberReply::Taken { pid }) => {
            let mut st = pool.lock();
            st.takes += 1;
            drop(st);
            drop(member.sock);
            Reply::Taken { id, pid }
        }
        Ok(MemberReply::Refused(e)) => {
            // Nothing changed in it: it is ready for the next take.
            let mut st = pool.lock();
            if st.destroyed {
                retire(member);
            } else {
                st.ready.push_front(member);
            }
            pool.changed.notify_all();
            Reply::Error(e)
        }
        Ok(MemberReply::Broken(e)) => {
            retire(member);
            Reply::Error(format!("the pooled sandbox failed to start: {e}"))
        }
        Ok(other) => {
            retire(member);
            Reply::Error(format!("the pooled sandbox answered {other:?}"))
        }
        Err(e) => {
            retire(member);
            Reply::Error(crate::one_line(&e))
        }
    })
}

fn stats(pool: &Pool) -> PoolStats {
    let st = pool.lock();
    let members: Vec<MemberStats> = st
        .ready
        .iter()
        .map(|m| MemberStats {
            pid: m.pid,
            generation: m.generation,
            pss_bytes: super::pss_of_tree(m.pid),
            memory_file_bytes: m.memory_bytes,
        })
        .collect();
    PoolStats {
        name: pool.name.clone(),
        image_path: pool.image.display().to_string(),
        bundle: pool.bundle.as_ref().map(|b| b.display().to_string()),
        generation: st.generation.as_ref().map_or(0, |g| g.n),
        size: st.target,
        ready: st.ready.len(),
        refilling: st.starting.is_some(),
        takes: st.takes,
        refills: st.refills,
        refill_failures: st.failures,
        last_error: st.last_error.clone(),
        refused_statefile: st.refused.as_ref().map(|(_, e)| e.clone()),
        max_memory_bytes: pool.max_memory,
        pss_bytes: members.iter().map(|m| m.pss_bytes).sum(),
        sandbox_memory_bytes: st.sandbox_memory_bytes,
        shared_memory_bytes: st
            .generation
            .as_ref()
            .and_then(|g| g.memory.as_deref())
            .map_or(0, held_bytes),
        daemon_pid: std::process::id() as i32,
        members,
    }
}

/// Serves one command's connection.
fn serve(pool: &Arc<Pool>, stream: UnixStream) -> anyhow::Result<()> {
    let Some((req, fds)) = super::recv::<Request>(stream.as_fd())? else {
        return Ok(());
    };
    let answer = match req {
        Request::Take {
            id,
            env,
            timeout_secs,
            detach,
        } => take(
            pool,
            TakeSpec { id, env, detach },
            Duration::from_secs(timeout_secs),
            fds,
        ),
        Request::Stats => Reply::Stats(Box::new(stats(pool))),
        Request::Resize { size } => {
            if size == 0 {
                Reply::Error("a pool keeps at least one ready sandbox (destroy it instead)".into())
            } else {
                let mut st = pool.lock();
                st.target = size;
                while st.ready.len() > size {
                    if let Some(m) = st.ready.pop_back() {
                        retire(m);
                    }
                }
                pool.changed.notify_all();
                Reply::Done
            }
        }
        Request::Destroy => {
            destroy(pool);
            let _ = super::send(stream.as_fd(), &Reply::Done, &[]);
            std::process::exit(0);
        }
    };
    super::send(stream.as_fd(), &answer, &[])
}

/// Retires every ready member (and one being restored) and removes the
/// pool's directory; the daemon then exits. Taken sandboxes go on.
fn destroy(pool: &Pool) {
    let mut st = pool.lock();
    st.destroyed = true;
    for m in std::mem::take(&mut st.ready) {
        retire(m);
    }
    if let Some(pid) = st.starting {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    pool.changed.notify_all();
    let _ = std::fs::remove_dir_all(&pool.dir);
}

pub fn run(args: DaemonArgs, g: &Globals) -> anyhow::Result<i32> {
    let mut ready = adopt_ready_fd(args.ready_fd)?;
    let dir = super::pool_dir(&g.root, &args.name);
    let pool = Arc::new(Pool {
        name: args.name.clone(),
        root: g.root.clone(),
        image: args.image_path.clone(),
        dir: dir.clone(),
        max_memory: args.max_memory,
        take_signal: args.take_signal,
        bundle: args.bundle.clone(),
        share_memory: args.share_memory,
        platform: g.platform.clone(),
        debug_log: g.debug_log.clone(),
        state: Mutex::new(State {
            target: args.size,
            ..State::default()
        }),
        changed: Condvar::new(),
    });
    // The first restore decides whether the pool comes up: `create`
    // reports its error.
    let first = copy_generation(&pool, 1).and_then(|g| {
        let m = start_member(&pool, &g)?;
        if let Some(max) = pool.max_memory {
            if m.pss_bytes > max {
                let pss = m.pss_bytes;
                retire(m);
                bail!(
                    "one sandbox of this statefile uses {pss} bytes (PSS), more than --max-memory {max}"
                );
            }
        }
        Ok((g, m))
    });
    let (generation, member) = match first {
        Ok(f) => f,
        Err(e) => {
            let _ = ready.write_all(crate::one_line(&e).as_bytes());
            return Err(e);
        }
    };
    {
        let mut st = pool.lock();
        st.starting = None;
        st.refills = 1;
        st.sandbox_memory_bytes = member.memory_bytes;
        st.generation = Some(generation);
        st.ready.push_back(member);
    }
    let sock_path = super::pool_socket(&g.root, &args.name);
    let listener =
        UnixListener::bind(&sock_path).with_context(|| format!("binding {}", sock_path.display()));
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.write_all(crate::one_line(&e).as_bytes());
            return Err(e);
        }
    };
    std::fs::write(dir.join("daemon.pid"), format!("{}\n", std::process::id()))?;
    {
        let pool = pool.clone();
        std::thread::Builder::new()
            .name("cryo-pool-refill".into())
            .spawn(move || refill_loop(pool))?;
    }
    ready.write_all(b"ok\n")?;
    drop(ready);
    eprintln!(
        "cryo pool {}: up, {} sandboxes from {}",
        args.name,
        args.size,
        args.image_path.display()
    );
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "pool accept failed");
                continue;
            }
        };
        let pool = pool.clone();
        let spawned = std::thread::Builder::new()
            .name("cryo-pool-conn".into())
            .spawn(move || {
                if let Err(e) = serve(&pool, stream) {
                    tracing::warn!(error = %e, "pool request failed");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot serve a pool connection");
        }
    }
    let _ = std::io::stderr().flush();
    Ok(0)
}
