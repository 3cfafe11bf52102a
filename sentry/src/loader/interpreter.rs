//! `#!` scripts (Linux's binfmt_script): the first line names an
//! interpreter and at most one argument; the interpreter runs with the
//! script's path in place of argv[0].

use std::sync::Arc;

use super::{read_full, LoadError, MAX_SCRIPT_DEPTH};
use crate::mm::{MappableFile, OpenFn};

/// Linux's BINPRM_BUF_SIZE: how much of the first line is read.
const LINE_MAX: usize = 256;

/// The ELF file a chain of `#!` lines led to.
pub(super) struct Resolved {
    pub file: Arc<dyn MappableFile>,
    pub path: String,
    /// The argv to run it with.
    pub argv: Vec<Vec<u8>>,
}

/// Follows `#!` lines from `path` to an ELF file. Anything that is neither
/// `#!` nor ELF is refused here (ENOEXEC).
pub(super) fn resolve(
    open: &OpenFn<'_>,
    path: &str,
    mut argv: Vec<Vec<u8>>,
) -> Result<Resolved, LoadError> {
    let mut path = path.to_string();
    for _ in 0..=MAX_SCRIPT_DEPTH {
        let file = open(&path).map_err(|errno| LoadError::Open {
            path: path.clone(),
            errno,
        })?;
        let mut head = [0u8; LINE_MAX];
        let n = read_full(file.as_ref(), 0, &mut head).map_err(|errno| LoadError::Read {
            path: path.clone(),
            errno,
        })?;
        let head = &head[..n];
        if head.starts_with(b"\x7fELF") {
            return Ok(Resolved { file, path, argv });
        }
        if !head.starts_with(b"#!") {
            return Err(LoadError::NotExecutable { path });
        }
        let (interp, arg) =
            parse_line(head, n == LINE_MAX).map_err(|why| LoadError::BadScript {
                path: path.clone(),
                why,
            })?;
        // interp [arg] script-path argv[1..]
        let mut new_argv = vec![interp.clone()];
        new_argv.extend(arg);
        new_argv.push(path.clone().into_bytes());
        new_argv.extend(argv.drain(..).skip(1));
        argv = new_argv;
        path = String::from_utf8(interp).map_err(|_| LoadError::BadScript {
            path: path.clone(),
            why: "interpreter path is not UTF-8",
        })?;
    }
    Err(LoadError::TooManyInterpreters {
        path,
        max: MAX_SCRIPT_DEPTH,
    })
}

/// Splits a `#!` line into the interpreter and its optional single argument
/// (everything after the interpreter, trimmed, spaces included, as Linux).
/// `full` says the buffer was filled, so a line without a newline may be cut.
fn parse_line(head: &[u8], full: bool) -> Result<(Vec<u8>, Option<Vec<u8>>), &'static str> {
    let body = &head[2..];
    let line = match body.iter().position(|b| *b == b'\n') {
        Some(end) => &body[..end],
        None if full => {
            // Linux accepts a cut line only if the interpreter name ended
            // before the cut; the argument would be truncated, so refuse.
            return Err("first line longer than 256 bytes");
        }
        None => body,
    };
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let line = trim(line, is_space);
    if line.is_empty() {
        return Err("no interpreter named");
    }
    let interp_end = line.iter().position(is_space).unwrap_or(line.len());
    let interp = line[..interp_end].to_vec();
    let rest = trim(&line[interp_end..], is_space);
    let arg = (!rest.is_empty()).then(|| rest.to_vec());
    if interp.contains(&0) || arg.as_ref().is_some_and(|a| a.contains(&0)) {
        return Err("NUL byte in the #! line");
    }
    Ok((interp, arg))
}

fn trim(s: &[u8], is_space: impl Fn(&u8) -> bool) -> &[u8] {
    let start = s.iter().position(|b| !is_space(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_like_linux() {
        assert_eq!(
            parse_line(b"#!/bin/sh\necho", false),
            Ok((b"/bin/sh".to_vec(), None))
        );
        assert_eq!(
            parse_line(b"#! /usr/bin/env  python3 -u \n", false),
            Ok((b"/usr/bin/env".to_vec(), Some(b"python3 -u".to_vec())))
        );
        assert_eq!(
            parse_line(b"#!/bin/sh\t-e", false),
            Ok((b"/bin/sh".to_vec(), Some(b"-e".to_vec())))
        );
        assert!(parse_line(b"#!   \n", false).is_err());
        assert!(parse_line(b"#!/bin/sh -x", true).is_err());
        assert!(parse_line(b"#!/bin/s\0h\n", false).is_err());
    }
}
