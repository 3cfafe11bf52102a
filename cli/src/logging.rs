//! `--debug-log`: tracing to a file; warnings to stderr otherwise.

use std::path::Path;

use tracing_subscriber::EnvFilter;

pub fn init(debug_log: Option<&Path>) -> anyhow::Result<()> {
    match debug_log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            tracing_subscriber::fmt()
                .with_env_filter(
                    EnvFilter::try_from_env("CRYO_LOG").unwrap_or_else(|_| EnvFilter::new("debug")),
                )
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .init();
        }
        None => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    EnvFilter::try_from_env("CRYO_LOG").unwrap_or_else(|_| EnvFilter::new("error")),
                )
                .with_writer(std::io::stderr)
                .init();
        }
    }
    Ok(())
}

/// Appends a failed command's error to runc's `--log` file, in the form
/// container engines parse (`--log-format json`: one object per line with
/// level, msg and time).
pub fn log_error(path: &Path, format: Option<&str>, msg: &str) {
    log_line(path, format, "error", msg)
}

/// One line of `level` in runc's `--log` format.
pub fn log_line(path: &Path, format: Option<&str>, level: &str, msg: &str) {
    use std::io::Write;
    let time = crate::oci::state::rfc3339_now();
    let line = match format {
        Some("json") => serde_json::json!({"level": level, "msg": msg, "time": time}).to_string(),
        _ => format!("time={time:?} level={level} msg={msg:?}"),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}
