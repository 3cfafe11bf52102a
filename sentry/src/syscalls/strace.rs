//! `--strace`: every syscall with decoded arguments and its result, on the
//! Sentry's stderr, like runsc's strace.

use std::fmt::Write;

use super::table::{Arg, Entry};
use super::{Args, SysResult};
use crate::kernel::Task;

/// How many bytes of a buffer or path are shown.
const SHOWN: usize = 64;

fn quote(bytes: &[u8], truncated: bool) -> String {
    let mut s = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    if truncated {
        s.push_str("...");
    }
    s
}

fn buffer(task: &Task, addr: u64, len: u64) -> String {
    let shown = len.min(SHOWN as u64) as usize;
    let mut buf = vec![0u8; shown];
    match task.mm().copy_in(addr, &mut buf) {
        Ok(()) => quote(&buf, len as usize > shown),
        Err(_) => format!("{addr:#x}"),
    }
}

fn format_arg(task: &Task, kind: Arg, args: &Args, i: usize, result: &SysResult) -> String {
    let v = args.raw(i);
    match kind {
        // 32-bit int arguments (fds, AT_FDCWD) arrive zero-extended.
        Arg::Dec if v >> 32 == 0 => format!("{}", v as u32 as i32),
        Arg::Dec => format!("{}", v as i64),
        Arg::Hex => format!("{v:#x}"),
        Arg::Oct => format!("{v:#o}"),
        Arg::Path => match task.mm().read_c_string(v, 4096) {
            Ok(s) => quote(&s[..s.len().min(SHOWN * 4)], s.len() > SHOWN * 4),
            Err(_) => format!("{v:#x}"),
        },
        Arg::InBuf(len_arg) => buffer(task, v, args.raw(len_arg)),
        Arg::OutBuf => match result {
            Ok(n) if *n > 0 => buffer(task, v, *n),
            _ => format!("{v:#x}"),
        },
    }
}

pub fn print(task: &Task, nr: u64, entry: Option<&Entry>, args: &Args, result: &SysResult) {
    let mut line = format!("[{:>4}] ", task.tid());
    match entry {
        Some(e) => {
            line.push_str(e.name);
            line.push('(');
            let parts: Vec<String> = e
                .args
                .iter()
                .enumerate()
                .map(|(i, &k)| format_arg(task, k, args, i, result))
                .collect();
            line.push_str(&parts.join(", "));
            line.push(')');
        }
        None => {
            let name = crate::arch::syscall_name(nr).unwrap_or("unknown");
            let _ = write!(
                line,
                "{name}#{nr}({:#x}, {:#x}, {:#x}, ...)",
                args.raw(0),
                args.raw(1),
                args.raw(2)
            );
        }
    }
    match result {
        Ok(v) => {
            let _ = write!(line, " = {} ({v:#x})", *v as i64);
        }
        Err(e) => {
            let _ = write!(
                line,
                " = -1 {} ({})",
                e.name(),
                std::io::Error::from_raw_os_error(e.0)
            );
        }
    }
    eprintln!("{line}");
}
