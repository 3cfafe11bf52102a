//! The sandbox process of an OCI container (`cryo sandbox`, started by
//! `create`): it boots the bundle's sandbox, tells `create` it is ready,
//! waits for `start`, runs the container's init and exits with its status.
//! Control requests (start, kill, ps, pause, exec, checkpoint) arrive on
//! the container's control socket.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sentry::boot::{ContainerSetup, DoConfig, ProcessSpec};
use sentry::kernel::creds::Credentials;
use sentry::kernel::run::Interruption;
use sentry::kernel::signal::{default_action, DefaultAction, SigInfo, SI_USER};
use sentry::kernel::thread_group::Release;
use sentry::kernel::{Kernel, Task};
use sentry::vfs::namespace::{ExtraMount, MountSource, NamespaceSetup};

use super::bundle::{self, MountPlan};
use super::console;
use crate::control::{self, ContainerStats, ExecSpec, Pending, ProcessInfo, Reply, Request};

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct SandboxArgs {
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long)]
    id: String,
    /// The inherited pipe on which `create` waits for "ok" or an error.
    #[arg(long)]
    ready_fd: i32,
    /// The inherited host replica of the terminal whose master `create`
    /// sent over --console-socket (process.terminal); without it a
    /// terminal copies to this process's own stdin and stdout.
    #[arg(long, hide = true)]
    console_fd: Option<i32>,
    /// Restore the container from the statefile in this image directory
    /// (`cryo restore --bundle`) instead of booting it; `start` lets its
    /// processes go on.
    #[arg(long)]
    restore: Option<PathBuf>,
    /// With --restore: resume before the memory is loaded, the rest
    /// loading in the background (`sentry::mm::lazy`).
    #[arg(long, requires = "restore")]
    lazy: bool,
}

/// How long a pause waits for every task to reach a clean boundary.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Adopts the inherited pipe `fd` without `unsafe`: reopening it through
/// /proc gives a descriptor of the same pipe, and the inherited number is
/// closed so that nothing started later inherits it.
fn adopt_ready_fd(fd: i32) -> anyhow::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .with_context(|| format!("--ready-fd {fd}"))?;
    let _ = nix::unistd::close(fd);
    Ok(f)
}

/// Starts a gofer over `dir` (refusing writes with `read_only`) and
/// returns the Sentry's end of its socket.
pub fn start_gofer(dir: &Path, read_only: bool) -> anyhow::Result<(OwnedFd, std::process::Child)> {
    let (sentry_end, gofer_end) = gofer::socketpair().context("creating a gofer socket")?;
    nix::fcntl::fcntl(
        gofer_end.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .context("clearing close-on-exec on the gofer socket")?;
    let exe = std::env::current_exe().context("finding the cryo binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("gofer")
        .arg("--root")
        .arg(dir)
        .arg("--fd")
        .arg(gofer_end.as_raw_fd().to_string());
    if read_only {
        cmd.arg("--read-only");
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting the gofer for {}", dir.display()))?;
    drop(gofer_end);
    Ok((sentry_end, child))
}

/// Runs the sandbox; returns the container's exit status.
pub fn run(
    args: SandboxArgs,
    root: &Path,
    platform: Option<&str>,
    cpu_features: Option<&str>,
) -> anyhow::Result<i32> {
    let mut ready = adopt_ready_fd(args.ready_fd)?;
    // Before any other host process of the sandbox starts, so that the
    // gofers and stubs are born in it; left and removed when it ends.
    let _cgroup = bundle::plan(&args.bundle)
        .ok()
        .and_then(|p| p.cgroups_path)
        .and_then(|p| super::cgroup::join(&p));
    let mut gofers = Vec::new();
    let booted = match &args.restore {
        Some(image) => restore(&args, image, root, platform, &mut gofers),
        None => boot(&args, root, (platform, cpu_features), &mut gofers),
    }
    .and_then(|(task, listener, console)| {
        // Booted: nothing of the host is needed any more, and every
        // thread started from here on is confined from its start.
        crate::confine::lock_down()?;
        let queue = control::serve(listener, task.interrupt().clone())?;
        Ok((task, queue, console))
    });
    let (mut task, queue, console) = match booted {
        Ok(b) => {
            use std::io::Write;
            ready.write_all(b"ok\n").context("telling create")?;
            drop(ready);
            b
        }
        Err(e) => {
            use std::io::Write;
            let _ = ready.write_all(crate::one_line(&e).as_bytes());
            drop(ready);
            for mut g in gofers {
                let _ = g.kill();
                let _ = g.wait();
            }
            return Err(e);
        }
    };
    // A restored container too waits for `start`: its restore runs the
    // bundle's prestart and createRuntime hooks first, as runc's does
    // before the restored processes go on.
    let code = match wait_for_start(&mut task, &queue) {
        Some(code) => code,
        None => crate::supervisor::run_started(&mut task, &args.id, &queue)?,
    };
    // What the container wrote reaches the host before its end closes.
    if let Some(c) = console {
        c.finish();
    }
    drop(task);
    drop(queue);
    // The gofers end when their sockets close, which the kernel's end did.
    for mut g in gofers {
        let _ = g.wait();
    }
    Ok(code)
}

fn boot(
    args: &SandboxArgs,
    root: &Path,
    (platform, cpu_features): (Option<&str>, Option<&str>),
    gofers: &mut Vec<std::process::Child>,
) -> anyhow::Result<(Task, UnixListener, Option<console::Console>)> {
    let plan = bundle::plan(&args.bundle)?;
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    let host_console = match (plan.terminal, args.console_fd) {
        (true, Some(fd)) => Some(console::HostSide::replica(adopt_console_fd(fd)?)?),
        (true, None) => Some(console::HostSide::own_stdio()?),
        (false, _) => None,
    };
    // The root's writes go to the overlay's upper layer, never the host.
    let (root_sock, g) = start_gofer(&plan.rootfs, true)?;
    gofers.push(g);
    let namespace = namespace_of(&plan, gofers)?;
    let config = DoConfig {
        argv: plan.args.clone(),
        env: plan.env.clone(),
        cwd: plan.cwd.clone(),
        hostname: plan.hostname.clone(),
        strace: false,
        platform: platform.map_or_else(|| platform::default_platform().to_string(), str::to_string),
        cpu_features: cpu_features.unwrap_or("host").to_string(),
        memory_limit: None,
    };
    let setup = ContainerSetup {
        creds: Some(plan.creds.clone()),
        limits: plan.limits.clone(),
        no_new_privs: plan.no_new_privs,
        max_tasks: plan.max_tasks,
        memory_limit: plan.memory_limit,
        namespace,
    };
    let mut task =
        sentry::boot::boot_container(&config, setup, root_sock).map_err(anyhow::Error::new)?;
    let console = match host_console {
        Some(host) => Some(console::init_terminal(&mut task, host)?),
        None => None,
    };
    let listener = control::bind(&root.join(&args.id).join("control.sock"))?;
    Ok((task, listener, console))
}

/// The bundle's root flag and mounts, each bind mount served by a gofer
/// of its own (pushed on `gofers`).
pub(crate) fn namespace_of(
    plan: &bundle::Plan,
    gofers: &mut Vec<std::process::Child>,
) -> anyhow::Result<NamespaceSetup> {
    let mut mounts = Vec::new();
    for m in &plan.mounts {
        mounts.push(match m {
            MountPlan::Tmpfs {
                dest,
                mode,
                options,
                read_only,
            } => ExtraMount {
                dest: dest.as_bytes().to_vec(),
                source: MountSource::Tmpfs {
                    mode: *mode,
                    options: *options,
                },
                read_only: *read_only,
            },
            MountPlan::Bind {
                dest,
                source,
                read_only,
            } => {
                let (sock, g) = start_gofer(source, *read_only)?;
                gofers.push(g);
                let client = gofer::Client::new(sock);
                let fs = if *read_only {
                    sentry::vfs::gofer_fs::GoferHostFs::new(client)
                } else {
                    // Writes to existing files and new files reach the
                    // host (mkdir, unlink and rename are EROFS yet).
                    sentry::vfs::gofer_fs::GoferHostFs::new_writable(client)
                };
                ExtraMount {
                    dest: dest.as_bytes().to_vec(),
                    source: MountSource::Host(Arc::new(fs)),
                    read_only: *read_only,
                }
            }
            MountPlan::BindFile {
                dest,
                dir,
                name,
                read_only,
            } => {
                // The gofer serves the file's directory; the Sentry walks to
                // the one file and mounts only it.
                let (sock, g) = start_gofer(dir, *read_only)?;
                gofers.push(g);
                let client = gofer::Client::new(sock);
                let fs = if *read_only {
                    sentry::vfs::gofer_fs::GoferHostFs::new(client)
                } else {
                    sentry::vfs::gofer_fs::GoferHostFs::new_writable(client)
                };
                ExtraMount {
                    dest: dest.as_bytes().to_vec(),
                    source: MountSource::HostFile {
                        fs: Arc::new(fs),
                        name: name.as_bytes().to_vec(),
                    },
                    read_only: *read_only,
                }
            }
        });
    }
    Ok(NamespaceSetup {
        root_read_only: plan.root_read_only,
        mounts,
    })
}

/// Restores the container checkpointed in `image` with the bundle's root
/// and mounts (the restore command checked they are the ones its
/// application saw).
fn restore(
    args: &SandboxArgs,
    image: &Path,
    root: &Path,
    platform: Option<&str>,
    gofers: &mut Vec<std::process::Child>,
) -> anyhow::Result<(Task, UnixListener, Option<console::Console>)> {
    let plan = bundle::plan(&args.bundle)?;
    let (root_sock, g) = start_gofer(&plan.rootfs, true)?;
    gofers.push(g);
    let container = sentry::state::ContainerRestore {
        namespace: namespace_of(&plan, gofers)?,
        max_tasks: plan.max_tasks,
        memory_limit: plan.memory_limit,
        stdio: None,
        memory: None,
        lazy: args.lazy,
    };
    let task = sentry::state::restore_container(image, root_sock, container, false, platform)
        .map_err(anyhow::Error::new)?;
    // A restored terminal gets its new host side (the restore command
    // sent the master over the console socket).
    let console = match args.console_fd {
        Some(fd) => {
            let host = console::HostSide::replica(adopt_console_fd(fd)?)?;
            Some(console::attach_restored_to(task.kernel(), host)?)
        }
        None => None,
    };
    let listener = control::bind(&root.join(&args.id).join("control.sock"))?;
    Ok((task, listener, console))
}

/// Adopts the inherited host replica `fd` like the ready pipe, reopened
/// with O_NOCTTY: it must not become this process's controlling terminal.
fn adopt_console_fd(fd: i32) -> anyhow::Result<std::os::fd::OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{fd}"))
        .with_context(|| format!("--console-fd {fd}"))?;
    let _ = nix::unistd::close(fd);
    Ok(f.into())
}

/// Answers requests until `start` (None: run init) or a fatal `kill` of
/// the container that never started (its status).
fn wait_for_start(task: &mut Task, queue: &Receiver<Pending>) -> Option<i32> {
    while let Ok(p) = queue.recv() {
        let answer = match p.request {
            Request::Start => {
                let _ = p.reply.send(Reply::Done);
                return None;
            }
            Request::Kill { signal, .. } => {
                if let Err(e) = check_signal(signal) {
                    Reply::Error(e)
                } else if matches!(
                    default_action(signal),
                    DefaultAction::Terminate | DefaultAction::CoreDump
                ) || signal == libc::SIGKILL
                {
                    let _ = p.reply.send(Reply::Done);
                    let _ = p.delivered.recv_timeout(Duration::from_secs(1));
                    return Some(128 + signal);
                } else {
                    Reply::Done
                }
            }
            Request::Ps => Reply::Processes(ps(task.kernel())),
            Request::Stats => Reply::Stats(stats(task.kernel())),
            _ => Reply::Error("the container is created but not started".into()),
        };
        let _ = p.reply.send(answer);
    }
    // The control thread is gone: nothing can start the container.
    Some(125)
}

fn check_signal(signal: i32) -> Result<(), String> {
    if (1..=64).contains(&signal) {
        Ok(())
    } else {
        Err(format!("invalid signal {signal}"))
    }
}

/// Handles a request other than a checkpoint while the container runs.
pub fn handle_running(
    task: &mut Task,
    request: Request,
    files: Vec<OwnedFd>,
    reply: Sender<Reply>,
    queue: &Receiver<Pending>,
) {
    let answer = match request {
        Request::Start => Reply::Error("the container is already started".into()),
        Request::Kill { signal, all } => kill(task.kernel(), signal, all),
        Request::Ps => Reply::Processes(ps(task.kernel())),
        Request::Stats => Reply::Stats(stats(task.kernel())),
        Request::Exec(spec) => return exec(task.kernel().clone(), spec, files, reply),
        Request::Pause => return pause(task, reply, queue),
        Request::Resume => Reply::Error("the container is not paused".into()),
        Request::Checkpoint { .. } => Reply::Error("checkpoint handled elsewhere".into()),
    };
    let _ = reply.send(answer);
}

fn kill(kernel: &Kernel, signal: i32, all: bool) -> Reply {
    if let Err(e) = check_signal(signal) {
        return Reply::Error(e);
    }
    // As from kill(2) outside the sandbox's pid namespace.
    let info = SigInfo {
        signo: signal,
        code: SI_USER,
        addr: 0,
        pid: 0,
        uid: 0,
    };
    let groups = if all {
        kernel.pids.thread_groups()
    } else {
        kernel.pids.thread_group(1).into_iter().collect()
    };
    for tg in groups.iter().filter(|tg| !tg.is_zombie()) {
        tg.signal_process(info);
    }
    Reply::Done
}

fn stats(kernel: &Kernel) -> ContainerStats {
    let (user, system) = kernel.cpu_time();
    ContainerStats {
        cpu_user_ns: user,
        cpu_system_ns: system,
        memory_bytes: kernel.memory_file.resident_bytes(),
        tasks: kernel.pids.task_count() as u64,
        tasks_limit: kernel.max_tasks as u64,
    }
}

fn ps(kernel: &Kernel) -> Vec<ProcessInfo> {
    kernel
        .pids
        .thread_groups()
        .iter()
        .filter(|tg| !tg.is_zombie())
        .map(|tg| ProcessInfo {
            pid: tg.tgid(),
            ppid: tg.links().parent,
            uid: tg.leader_uid(),
            cmd: tg
                .image()
                .argv
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect()
}

/// Freezes every task (the checkpoint's stop) until `resume`, answering
/// ps and kill meanwhile; a SIGKILL thaws them so they can die.
fn pause(task: &mut Task, reply: Sender<Reply>, queue: &Receiver<Pending>) {
    let kernel = task.kernel().clone();
    kernel.freeze_itimers(true);
    if let Err(e) = kernel.stop_tasks(task.tid(), PAUSE_TIMEOUT) {
        kernel.freeze_itimers(false);
        let _ = reply.send(Reply::Error(format!("cannot pause: {e}")));
        return;
    }
    let _ = reply.send(Reply::Done);
    drop(reply);
    while let Ok(p) = queue.recv() {
        let (answer, thaw) = match p.request {
            Request::Resume => (Reply::Done, true),
            Request::Kill { signal, all } => (kill(&kernel, signal, all), signal == libc::SIGKILL),
            Request::Ps => (Reply::Processes(ps(&kernel)), false),
            Request::Stats => (Reply::Stats(stats(&kernel)), false),
            Request::Pause => (
                Reply::Error("the container is already paused".into()),
                false,
            ),
            _ => (Reply::Error("the container is paused".into()), false),
        };
        let _ = p.reply.send(answer);
        if thaw {
            break;
        }
    }
    kernel.release_tasks(Release::Continue);
}

/// Starts an exec'd process on a host thread of its own (the one its
/// address space belongs to) and reports its start and its end.
fn exec(kernel: Arc<Kernel>, spec: ExecSpec, files: Vec<OwnedFd>, reply: Sender<Reply>) {
    let spawned = std::thread::Builder::new()
        .name("cryo-exec".into())
        .spawn(move || {
            // Two files: the host side of a terminal (see exec_terminal).
            let (stdio, terminal) = match exec_stdio(&kernel, files) {
                Ok(s) => s,
                Err(e) => {
                    let _ = reply.send(Reply::Error(e));
                    return;
                }
            };
            let pspec = ProcessSpec {
                argv: spec.args,
                env: spec.env,
                cwd: spec.cwd,
                creds: {
                    let mut c = Credentials::with_ids(spec.uid, spec.gid, spec.groups);
                    if let Some(caps) = spec.caps {
                        c.caps = caps;
                    }
                    c
                },
                limits: Vec::new(),
                no_new_privs: spec.no_new_privs,
            };
            let mut task = match sentry::boot::spawn_process(&kernel, &pspec, stdio) {
                Ok(t) => t,
                Err(e) => {
                    // As a shell: 127 for a command not found in PATH too.
                    let code = match e {
                        sentry::boot::BootError::CommandNotFound(_) => Some(127),
                        _ => e.command_status(),
                    };
                    let _ = reply.send(Reply::Error(e.to_string()));
                    if let Some(code) = code {
                        let _ = reply.send(Reply::Exited { code: code.into() });
                    }
                    return;
                }
            };
            let pid = task.tgid();
            // Its own session, led by it, with the terminal (runc's
            // setsid and TIOCSCTTY).
            let console = terminal.map(|(t, host)| {
                t.control(task.tg().links());
                t.attach(host)
            });
            let _ = reply.send(Reply::Started { pid });
            let status = task.run(&mut |_| Interruption::Continue);
            if let Some(c) = console {
                c.finish();
            }
            drop(task);
            sentry::boot::reap_process(&kernel, pid);
            let _ = reply.send(match status {
                Ok(Some(s)) => Reply::Exited {
                    code: s.shell_code(),
                },
                Ok(None) => Reply::Exited { code: 0 },
                Err(e) => Reply::Error(format!("process {pid} failed: {e}")),
            });
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start an exec thread");
    }
}

type ExecTerminal = (console::SandboxTerminal, console::HostSide);
type Stdio = Vec<(u32, Arc<sentry::vfs::OpenFile>)>;

/// An exec's descriptors 0, 1 and 2: the three passed, or, when two are
/// passed (the host side of a terminal: input and output), a new sandbox
/// terminal's replica.
fn exec_stdio(
    kernel: &Arc<Kernel>,
    files: Vec<OwnedFd>,
) -> Result<(Stdio, Option<ExecTerminal>), String> {
    if files.len() != 2 {
        return donated(files).map(|s| (s, None));
    }
    let mut it = files.into_iter();
    let (Some(input), Some(output)) = (it.next(), it.next()) else {
        return Err("an exec's terminal passes 2 files".into());
    };
    let host = console::HostSide::from_fds(input, output);
    let term = console::SandboxTerminal::new(kernel, &host).map_err(|e| e.to_string())?;
    Ok((term.stdio(), Some((term, host))))
}

/// The passed stdio as the process's descriptors 0, 1 and 2.
fn donated(files: Vec<OwnedFd>) -> Result<Vec<(u32, Arc<sentry::vfs::OpenFile>)>, String> {
    if files.len() != 3 {
        return Err(format!("an exec passes 3 stdio files, not {}", files.len()));
    }
    let mut out = Vec::new();
    for (i, fd) in files.into_iter().enumerate() {
        let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
            .map_err(|e| format!("stdio {i}: {e}"))?;
        let file = sentry::vfs::donated::open_donated_fd(fd, i as u32, flags & libc::O_ACCMODE)
            .map_err(|e| format!("stdio {i}: {e}"))?;
        out.push((i as u32, file));
    }
    Ok(out)
}
