//! Moving bytes between two open files inside the kernel, for
//! sendfile(2), splice(2), tee(2) and copy_file_range(2) (gVisor's
//! vfs splice.go and Linux's fs/splice.c).
//!
//! Data read from a pipe is reserved and taken out only once written, so
//! a short write on the other side loses nothing; a positional file is read
//! and written at explicit offsets, and the caller stores where each side
//! ended (in the application's offset argument or the file's offset).

use std::sync::Arc;

use super::file::{Interrupt, IoCtx, OpenFile, SeekMode};
use super::pipe::{pipe_of, Pipe};
use crate::errno::Errno;

/// Bytes moved per step.
const STEP: usize = 1 << 20;

/// One side of a transfer.
pub struct Side<'a> {
    pub file: &'a Arc<OpenFile>,
    /// Where to read or write: an explicit position (the application's
    /// offset argument, or the file's own offset for a positional file).
    /// None for a stream (a pipe, a socket, a terminal).
    pub offset: Option<u64>,
}

impl<'a> Side<'a> {
    /// A side at `offset` when the application gave one, else at the
    /// file's own offset if it has one.
    pub fn new(file: &'a Arc<OpenFile>, offset: Option<u64>) -> Side<'a> {
        let offset = offset
            .or_else(|| (file.ops().seek_mode() == SeekMode::Positional).then(|| file.offset()));
        Side { file, offset }
    }
}

/// How a transfer may wait.
#[derive(Clone, Copy)]
pub struct Waits {
    /// Pipe sides never wait (SPLICE_F_NONBLOCK), whatever their own
    /// O_NONBLOCK.
    pub nonblock_pipes: bool,
    /// Once some bytes moved, whether the transfer may still wait for more
    /// (sendfile and copy_file_range go on to `count`; splice and tee
    /// return what was there).
    pub after_progress: bool,
}

/// What a transfer did: bytes moved and where each positional side ended.
pub struct Moved {
    pub bytes: usize,
    pub in_offset: Option<u64>,
    pub out_offset: Option<u64>,
}

/// The pipe behind `file` when it is the end wanted (a read end for
/// input, a write end for output).
pub fn pipe_end(file: &OpenFile, input: bool) -> Option<Arc<Pipe>> {
    let (pipe, readable) = pipe_of(file)?;
    let wanted = if input { readable } else { file.writable() };
    wanted.then_some(pipe)
}

/// Told of each write to a file: the file, where, and the bytes.
pub type Written<'a> = dyn FnMut(&Arc<OpenFile>, u64, &[u8]) + 'a;

/// Moves up to `count` bytes from `input` to `out`; `consume` false keeps
/// the bytes in an input pipe (tee). `written` is told of each write to a
/// file at its position (mapped-file coherence). An error after progress
/// ends the transfer with what moved.
pub fn transfer(
    input: Side<'_>,
    out: Side<'_>,
    count: usize,
    consume: bool,
    waits: Waits,
    interrupt: &Interrupt,
    written: &mut Written<'_>,
) -> Result<Moved, Errno> {
    let in_pipe = pipe_end(input.file, true);
    let out_pipe = pipe_end(out.file, false);
    let mut in_off = input.offset;
    let mut out_off = out.offset;
    let mut buf = vec![0u8; count.min(STEP)];
    let mut done = 0usize;
    while done < count {
        let want = (count - done).min(STEP);
        let may_wait = done == 0 || waits.after_progress;
        let r = read_side(
            input.file,
            in_pipe.as_ref(),
            in_off,
            &mut buf[..want],
            pipe_io(input.file, interrupt, waits, may_wait),
        );
        let n = match r {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let data = &buf[..n];
        let wrote = write_side(
            out.file,
            out_pipe.as_ref(),
            out_off,
            data,
            pipe_io(out.file, interrupt, waits, may_wait),
        );
        if let Some(p) = &in_pipe {
            let used = match (&wrote, consume) {
                (Ok(w), true) => *w,
                _ => 0,
            };
            p.release(used);
        }
        let w = match wrote {
            Ok(w) => w,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        if out_pipe.is_none() {
            let at = out_off.unwrap_or_else(|| out.file.offset().saturating_sub(w as u64));
            written(out.file, at, &data[..w]);
        }
        done += w;
        in_off = in_off.map(|o| o + w as u64);
        out_off = out_off.map(|o| o + w as u64);
        if w < n || n < want || !consume && in_pipe.is_some() {
            // tee copies what the pipe holds once.
            break;
        }
    }
    Ok(Moved {
        bytes: done,
        in_offset: in_off,
        out_offset: out_off,
    })
}

fn pipe_io<'a>(
    file: &OpenFile,
    interrupt: &'a Interrupt,
    waits: Waits,
    may_wait: bool,
) -> IoCtx<'a> {
    IoCtx {
        interrupt,
        nonblock: waits.nonblock_pipes || !may_wait || file.status_flags() & libc::O_NONBLOCK != 0,
    }
}

fn read_side(
    file: &OpenFile,
    pipe: Option<&Arc<Pipe>>,
    offset: Option<u64>,
    buf: &mut [u8],
    pipe_io: IoCtx<'_>,
) -> Result<usize, Errno> {
    match (pipe, offset) {
        (Some(p), _) => p.peek(&pipe_io, buf),
        (None, Some(off)) => {
            let off = i64::try_from(off).map_err(|_| Errno::EINVAL)?;
            file.pread(buf, off, pipe_io.interrupt)
        }
        (None, None) => file.read(buf, pipe_io.interrupt),
    }
}

fn write_side(
    file: &OpenFile,
    pipe: Option<&Arc<Pipe>>,
    offset: Option<u64>,
    data: &[u8],
    pipe_io: IoCtx<'_>,
) -> Result<usize, Errno> {
    match (pipe, offset) {
        (Some(p), _) => p.write_from(&pipe_io, data),
        (None, Some(off)) => {
            let off = i64::try_from(off).map_err(|_| Errno::EINVAL)?;
            file.pwrite(data, off, pipe_io.interrupt)
        }
        (None, None) => file.write(data, pipe_io.interrupt),
    }
}

/// Stores where a positional side ended in the file's own offset (when
/// the application gave no offset of its own).
pub fn settle(file: &OpenFile, given: bool, ended: Option<u64>) {
    if let (false, Some(off)) = (given, ended) {
        if file.ops().seek_mode() == SeekMode::Positional {
            file.set_offset(off);
        }
    }
}

/// Whether two files are one inode (copy_file_range refuses overlapping
/// ranges of one file).
pub fn same_inode(a: &OpenFile, b: &OpenFile) -> bool {
    match (a.stat(), b.stat()) {
        (Ok(x), Ok(y)) => x.dev == y.dev && x.ino == y.ino,
        _ => false,
    }
}
