//! `cryo`: the command line. runsc-compatible commands plus cryo's own.

mod checkpoint_cmd;
mod confine;
mod container;
mod control;
mod diff;
mod do_cmd;
mod doctor;
mod gofer_cmd;
mod inspect;
mod logging;
mod oci;
mod pool;
mod restore_cmd;
mod supervisor;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cryo: a user-space kernel sandbox whose state freezes into a statefile.
#[derive(Parser, Debug)]
#[command(
    name = "cryo",
    version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: ", "1.0.2"),
    about,
    args_override_self = true
)]
struct Cli {
    /// Directory where sandbox state is kept.
    #[arg(long, global = true, default_value = "/var/run/cryo")]
    root: PathBuf,
    /// Write debug logs to this file.
    #[arg(long, global = true)]
    debug_log: Option<PathBuf>,
    /// Where errors (and, with --debug, debug logs) go, as runc's --log:
    /// container engines read a failed command's error from it.
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// The --log file's format: text or json.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Debug logs (to --log, else stderr).
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for runc compatibility: cryo manages no host cgroups yet.
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility (`spec --rootless` too: the spec
    /// is the same).
    #[arg(long, global = true, value_name = "VALUE", num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    /// The platform that runs application code: systrap or ptrace (default:
    /// the fastest this host runs, see `cryo doctor`; a restore defaults to
    /// the platform the statefile was saved from).
    #[arg(long, global = true, value_name = "NAME")]
    platform: Option<String>,
    /// The CPU features a new sandbox sees (cpuid, the auxv's hwcaps,
    /// /proc/cpuinfo), for `do`, `run` and `create`: host (the default: the
    /// host's CPU as it is), or an x86-64 level (x86-64, x86-64-v2,
    /// x86-64-v3, x86-64-v4) so that its statefile restores on any CPU of
    /// that level. A restore keeps what the statefile recorded.
    #[arg(long, global = true, value_name = "PROFILE")]
    cpu_features: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a command in a new sandbox whose root is the host's, read-only,
    /// with an in-memory upper layer (like `runsc do`).
    Do(do_cmd::DoArgs),
    /// Freeze a running sandbox into a statefile (like `runsc checkpoint`).
    Checkpoint(checkpoint_cmd::CheckpointArgs),
    /// Thaw a statefile into a new sandbox: in the foreground, or with
    /// --bundle as an OCI container (like `runc restore`).
    Restore(restore_cmd::RestoreArgs),
    /// Print a statefile's contents (header, types, sections, memory map).
    Inspect {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        statefile: PathBuf,
    },
    /// What changed between two states of a sandbox (statefiles, image
    /// directories or running sandboxes' ids): processes, files of the
    /// writable layers, descriptors, memory pages, environment, credentials.
    /// Exit status 0: no changes; 1: changes.
    Diff(diff::DiffArgs),
    /// Check whether this host can run cryo, and say why not.
    Doctor,
    /// Internal: serve a root directory to a Sentry over an inherited socket.
    #[command(hide = true)]
    Gofer(gofer_cmd::GoferArgs),
    /// Write a default config.json into a bundle.
    Spec(oci::commands::SpecArgs),
    /// Create a container from a bundle; `start` runs its process.
    Create(oci::commands::CreateArgs),
    /// Run a created container's process.
    Start(oci::commands::IdArgs),
    /// Create and start a container (in the foreground unless --detach).
    Run(oci::commands::RunArgs),
    /// Print a container's OCI state as JSON.
    State(oci::commands::IdArgs),
    /// Send a signal to a container's init (or, with --all, every process).
    Kill(oci::commands::KillArgs),
    /// Remove a stopped container (--force: any container).
    Delete(oci::commands::DeleteArgs),
    /// List the containers under --root.
    List(oci::commands::ListArgs),
    /// List a container's processes.
    Ps(oci::commands::PsArgs),
    /// The container's statistics (runc events).
    Events(oci::commands::EventsArgs),
    /// Freeze every task of a container.
    Pause(oci::commands::IdArgs),
    /// Thaw a paused container.
    Resume(oci::commands::IdArgs),
    /// Run a new process in a running container.
    Exec(oci::commands::ExecArgs),
    /// What this runtime supports, as runc's features JSON.
    Features,
    /// Warm pools: sandboxes restored from one statefile ahead of time,
    /// handed out in milliseconds (create, take, ls, stats, resize,
    /// destroy).
    Pool(pool::PoolArgs),
    /// Internal: the sandbox process of a container.
    #[command(hide = true)]
    Sandbox(oci::sandbox::SandboxArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(name) = &cli.platform {
        // Refused before anything starts, whatever the command.
        if let Err(e) = platform::lookup(name) {
            eprintln!("cryo: --platform: {e}");
            return ExitCode::from(125);
        }
    }
    if let Some(profile) = &cli.cpu_features {
        // Refused before anything starts: a bad name, or a command that
        // boots no sandbox (a restore keeps what its statefile recorded).
        if let Err(e) = sentry::arch::cpuid::Profile::parse(profile) {
            eprintln!("cryo: --cpu-features: {e}");
            return ExitCode::from(125);
        }
        if !matches!(
            cli.command,
            Command::Do(_) | Command::Run(_) | Command::Create(_) | Command::Sandbox(_)
        ) {
            eprintln!(
                "cryo: --cpu-features applies to the commands that boot a sandbox (do, run, create); a restored sandbox keeps the CPU features its statefile recorded"
            );
            return ExitCode::from(125);
        }
    }
    let forwards = match &cli.command {
        Command::Do(_) | Command::Restore(_) | Command::Sandbox(_) | Command::Run(_) => true,
        Command::Pool(p) => p.forwards_signals(),
        _ => false,
    };
    if forwards {
        // Before any other thread exists: the sandbox's program gets these.
        if let Err(e) = supervisor::block_forwarded_signals() {
            eprintln!("cryo: {e:#}");
            return ExitCode::from(125);
        }
    }
    let sandbox_here = match &cli.command {
        Command::Do(_) | Command::Sandbox(_) => true,
        Command::Restore(args) => args.in_foreground(),
        Command::Pool(p) => p.is_sandbox(),
        _ => false,
    };
    if sandbox_here {
        // While this process is one thread: every thread it starts is then
        // in the sandbox's namespaces (see confine).
        confine::enter_namespaces();
    }
    let debug_log = cli
        .debug_log
        .clone()
        .or_else(|| cli.debug.then(|| cli.log.clone()).flatten());
    if let Err(e) = logging::init(debug_log.as_deref()) {
        eprintln!("cryo: cannot open debug log: {e:#}");
        return ExitCode::from(125);
    }
    // Before any thread is bound to a CPU (the sandbox's task thread is),
    // so checkpoints compress on every core. Not in a gofer: it must stay
    // single-threaded to enter a user namespace when it confines itself.
    if !matches!(cli.command, Command::Gofer(_)) {
        statefile::start_workers();
    }
    let globals = oci::commands::Globals {
        root: cli.root.clone(),
        platform: cli.platform.clone(),
        cpu_features: cli.cpu_features.clone(),
        debug_log: debug_log.clone(),
        log: cli.log.clone(),
        log_format: cli.log_format.clone(),
    };
    let _ = (cli.systemd_cgroup, &cli.rootless);
    let result = match cli.command {
        Command::Do(args) => do_cmd::run(
            args,
            &cli.root,
            cli.platform.as_deref(),
            cli.cpu_features.as_deref(),
        ),
        Command::Checkpoint(args) => checkpoint_cmd::run(args, &cli.root),
        Command::Restore(args) => restore_cmd::run(args, &globals),
        Command::Inspect { json, statefile } => inspect::run(&statefile, json),
        Command::Diff(args) => diff::run(args, &cli.root),
        Command::Doctor => doctor::run(),
        Command::Gofer(args) => gofer_cmd::run(args),
        Command::Spec(args) => oci::commands::spec(args),
        Command::Create(args) => oci::commands::create(&globals, args),
        Command::Start(args) => oci::commands::start(&globals, args),
        Command::Run(args) => oci::commands::run(&globals, args),
        Command::State(args) => oci::commands::state(&globals, args),
        Command::Kill(args) => oci::commands::kill(&globals, args),
        Command::Delete(args) => oci::commands::delete(&globals, args),
        Command::List(args) => oci::commands::list(&globals, args),
        Command::Ps(args) => oci::commands::ps(&globals, args),
        Command::Events(args) => oci::commands::events(&globals, args),
        Command::Pause(args) => oci::commands::pause(&globals, args),
        Command::Resume(args) => oci::commands::resume(&globals, args),
        Command::Exec(args) => oci::commands::exec(&globals, args),
        Command::Features => oci::commands::features(),
        Command::Pool(args) => pool::run(args, &globals),
        Command::Sandbox(args) => oci::sandbox::run(
            args,
            &cli.root,
            cli.platform.as_deref(),
            cli.cpu_features.as_deref(),
        ),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("cryo: {}", one_line(&e));
            if let Some(log) = &cli.log {
                logging::log_error(log, cli.log_format.as_deref(), &one_line(&e));
            }
            // 127/126 for a command that is missing or not executable, as
            // shells and runc; 125, like runsc and docker, for errors of
            // cryo itself rather than of the program it runs.
            let command = e
                .downcast_ref::<sentry::boot::BootError>()
                .and_then(|b| b.command_status());
            ExitCode::from(command.unwrap_or(125))
        }
    }
}

/// The error and its causes on one line. Typed errors often already include
/// their cause's text; a cause is only appended when it adds something.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}
