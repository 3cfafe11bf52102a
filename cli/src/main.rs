//! `cryo`: the command line. runsc-compatible commands plus cryo's own.

mod checkpoint_cmd;
mod container;
mod control;
mod do_cmd;
mod doctor;
mod gofer_cmd;
mod inspect;
mod logging;
mod restore_cmd;
mod supervisor;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cryo: a user-space kernel sandbox whose state freezes into a statefile.
#[derive(Parser, Debug)]
#[command(name = "cryo", version, about)]
struct Cli {
    /// Directory where sandbox state is kept.
    #[arg(long, global = true, default_value = "/var/run/cryo")]
    root: PathBuf,
    /// Write debug logs to this file.
    #[arg(long, global = true)]
    debug_log: Option<PathBuf>,
    /// The platform that runs application code: systrap or ptrace (default:
    /// the fastest this host runs, see `cryo doctor`; a restore defaults to
    /// the platform the statefile was saved from).
    #[arg(long, global = true, value_name = "NAME")]
    platform: Option<String>,
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
    /// Thaw a statefile into a new sandbox, in the foreground.
    Restore(restore_cmd::RestoreArgs),
    /// Print a statefile's contents (header, types, sections, memory map).
    Inspect {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        statefile: PathBuf,
    },
    /// Check whether this host can run cryo, and say why not.
    Doctor,
    /// Internal: serve a root directory to a Sentry over an inherited socket.
    #[command(hide = true)]
    Gofer(gofer_cmd::GoferArgs),
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
    if matches!(cli.command, Command::Do(_) | Command::Restore(_)) {
        // Before any other thread exists: the sandbox's program gets these.
        if let Err(e) = supervisor::block_forwarded_signals() {
            eprintln!("cryo: {e:#}");
            return ExitCode::from(125);
        }
    }
    if let Err(e) = logging::init(cli.debug_log.as_deref()) {
        eprintln!("cryo: cannot open debug log: {e:#}");
        return ExitCode::from(125);
    }
    // Before any thread is bound to a CPU (the sandbox's task thread is),
    // so checkpoints compress on every core.
    statefile::start_workers();
    let result = match cli.command {
        Command::Do(args) => do_cmd::run(args, &cli.root, cli.platform.as_deref()),
        Command::Checkpoint(args) => checkpoint_cmd::run(args, &cli.root),
        Command::Restore(args) => restore_cmd::run(args, &cli.root, cli.platform.as_deref()),
        Command::Inspect { json, statefile } => inspect::run(&statefile, json),
        Command::Doctor => doctor::run(),
        Command::Gofer(args) => gofer_cmd::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("cryo: {}", one_line(&e));
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
