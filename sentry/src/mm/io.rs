//! Copy-in and copy-out: how syscall handlers read and write application
//! memory. Addresses are translated through the VMAs to memory-file offsets
//! and the bytes copied through the Sentry's own mapping of the memory file,
//! with the application's permissions checked (EFAULT otherwise), as Linux's
//! copy_from_user/copy_to_user. A write just below the stack grows it, as
//! a fault in the kernel would; reads only need `&self`. A write into a
//! private page shared copy-on-write gives this address space its own copy
//! first, as the write fault would.

use std::os::fd::BorrowedFd;

use super::file::MappableFile;
use super::manager::MemoryManager;
use super::memory_file::MF_PAGE_SIZE;
use crate::errno::Errno;

/// Linux's UIO_MAXIOV: the most iovecs one readv/writev takes.
pub const UIO_MAXIOV: usize = 1024;

/// One `struct iovec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoVec {
    pub base: u64,
    pub len: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Read,
    Write,
    /// Mapped is enough (the loader, ptrace PEEK/POKE).
    Any,
}

/// Why a translation stopped.
enum Miss {
    /// Not allowed or out of range.
    Fault,
    /// Nothing mapped at this address (maybe a stack-growth access).
    Hole(u64),
}

type Pieces = Vec<(u64, std::ops::Range<usize>)>;

/// Moves bytes piece by piece, `step(item, done, want)` moving the `want`
/// bytes of one piece after `done` and returning its count, and stops at a
/// short piece (EOF, a short pipe), as the kernel's own copy loops do; an
/// error after some bytes moved ends it with those, and the count moved.
pub fn until_short<T>(
    pieces: impl IntoIterator<Item = (T, usize)>,
    mut step: impl FnMut(T, usize, usize) -> Result<usize, Errno>,
) -> Result<usize, Errno> {
    let mut done = 0usize;
    for (item, want) in pieces {
        let n = match step(item, done, want) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n;
        if n < want {
            break;
        }
    }
    Ok(done)
}

impl MemoryManager {
    /// The memory-file pieces of `[addr, addr + len)`, in order, each as
    /// (memory-file offset, range within the caller's buffer), after checking
    /// each piece's VMA allows `need`.
    fn translate(&self, addr: u64, len: usize, need: Need) -> Result<Pieces, Miss> {
        let len64 = u64::try_from(len).map_err(|_| Miss::Fault)?;
        addr.checked_add(len64)
            .filter(|e| *e <= self.top)
            .ok_or(Miss::Fault)?;
        let mut out = Vec::new();
        let mut done = 0usize;
        while done < len {
            let cur = addr + done as u64;
            let v = self.vma_at(cur).ok_or(Miss::Hole(cur))?;
            let ok = match need {
                Need::Read => v.prot.read,
                Need::Write => v.prot.write,
                Need::Any => true,
            };
            if !ok {
                return Err(Miss::Fault);
            }
            let n = usize::try_from(v.end - cur)
                .unwrap_or(usize::MAX)
                .min(len - done);
            let to = cur + n as u64;
            let mut pos = cur;
            for p in self.backing_of(v, cur, to) {
                // Every page of a VMA is backed; a gap would be a bug, and
                // copying around it would lose bytes silently.
                if p.start != pos {
                    return Err(Miss::Fault);
                }
                let (a, b) = ((p.start - addr) as usize, (p.end - addr) as usize);
                out.push((p.off, a..b));
                pos = p.end;
            }
            if pos != to {
                return Err(Miss::Fault);
            }
            done += n;
        }
        Ok(out)
    }

    /// Like `translate`, growing the stack into holes just below it, as a
    /// kernel-mode fault on a write would (reads never grow it: untouched
    /// stack reads as zero in Linux, and readers only hold `&self`).
    fn translate_growing(&mut self, addr: u64, len: usize, need: Need) -> Result<Pieces, Errno> {
        loop {
            match self.translate(addr, len, need) {
                Ok(p) => return Ok(p),
                Err(Miss::Fault) => return Err(Errno::EFAULT),
                // Each growth maps the hole or fails, so this terminates.
                Err(Miss::Hole(at)) => self.grow_stack(at).map_err(|_| Errno::EFAULT)?,
            }
        }
    }

    fn copy_in_as(&self, addr: u64, buf: &mut [u8], need: Need) -> Result<(), Errno> {
        let pieces = self
            .translate(addr, buf.len(), need)
            .map_err(|_| Errno::EFAULT)?;
        for (off, r) in pieces {
            self.mf.read_at(off, &mut buf[r])?;
        }
        Ok(())
    }

    /// The pieces to write `[addr, addr + len)` through, after growing the
    /// stack and breaking copy-on-write sharing there.
    fn translate_for_write(&mut self, addr: u64, len: usize, need: Need) -> Result<Pieces, Errno> {
        let pieces = self.translate_growing(addr, len, need)?;
        // `translate_growing` checked the range fits.
        let end = addr + len as u64;
        // A page with no file page gets one first, as the kernel's own
        // fault would give it (or EFAULT where the application's is SIGBUS):
        // the write-back must not take it for untouched.
        let page = self.layout.page_size;
        for (s, e) in self.nopage_ranges(addr & !(page - 1), end) {
            for at in (s..e).step_by(page as usize) {
                self.resolve_nopage(at).map_err(|_| Errno::EFAULT)?;
            }
        }
        if len == 0 || !self.break_cow_range(addr, end)? {
            return Ok(pieces);
        }
        self.translate(addr, len, need).map_err(|_| Errno::EFAULT)
    }

    fn copy_out_as(&mut self, addr: u64, data: &[u8], need: Need) -> Result<(), Errno> {
        for (off, r) in self.translate_for_write(addr, data.len(), need)? {
            self.mf.write_at(off, &data[r])?;
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes from application address `addr` (copy_from_user).
    pub fn copy_in(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.copy_in_as(addr, buf, Need::Read)
    }

    /// Copies `data` to application address `addr` (copy_to_user).
    pub fn copy_out(&mut self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        self.copy_out_as(addr, data, Need::Write)
    }

    /// Like [`copy_in`](Self::copy_in), ignoring protections (ptrace PEEK,
    /// /proc/pid/mem): only that the range is mapped.
    pub fn copy_in_force(&self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.copy_in_as(addr, buf, Need::Any)
    }

    /// Like [`copy_out`](Self::copy_out), ignoring protections (the loader,
    /// ptrace POKE). Private file mappings stay private: the file is untouched.
    pub fn copy_out_force(&mut self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        self.copy_out_as(addr, data, Need::Any)
    }

    /// Reads up to `len` bytes of host file `fd` at `at` straight into
    /// application memory at `addr` (a read(2) of a host file): the count
    /// read, short at the file's end; EFAULT, before anything is read,
    /// unless the whole range is writable.
    pub fn copy_out_from_fd(
        &mut self,
        addr: u64,
        len: usize,
        fd: BorrowedFd<'_>,
        at: u64,
    ) -> Result<usize, Errno> {
        let pieces = match self.translate_for_write(addr, len, Need::Write) {
            Ok(p) => p,
            // Linux copies until the first page it cannot write to and
            // returns what it copied: the bytes before that page are read.
            Err(e) => match self.writable_len(addr, len) {
                0 => return Err(e),
                n => self.translate_for_write(addr, n, Need::Write)?,
            },
        };
        let mf = &self.mf;
        until_short(
            pieces.into_iter().map(|(off, r)| (off, r.len())),
            |off, done, want| mf.fill_from_fd(off, want, fd, at + done as u64),
        )
    }

    /// How many bytes from `addr` (at most `len`) a copy-out can write, in
    /// whole pages but for the first and last: where a fault would stop it
    /// (a read(2) stops there with what it copied, leaving the rest unread).
    pub fn writable_len(&mut self, addr: u64, len: usize) -> usize {
        if self.translate_growing(addr, len, Need::Write).is_ok() {
            return len;
        }
        let mut done = 0usize;
        while done < len {
            let cur = addr + done as u64;
            let to_page_end = (MF_PAGE_SIZE - cur % MF_PAGE_SIZE) as usize;
            let n = to_page_end.min(len - done);
            if self.translate_growing(cur, n, Need::Write).is_err() {
                break;
            }
            done += n;
        }
        done
    }

    /// Writes `len` zero bytes at `addr` (clear_user); `force` ignores protections.
    pub fn zero_out(&mut self, addr: u64, len: u64, force: bool) -> Result<(), Errno> {
        let len = usize::try_from(len).map_err(|_| Errno::EFAULT)?;
        let need = if force { Need::Any } else { Need::Write };
        for (off, r) in self.translate_for_write(addr, len, need)? {
            self.mf.zero(off, r.len() as u64)?;
        }
        Ok(())
    }

    /// Atomically replaces the u32 at application address `addr` with
    /// `new` if it holds `current`, as a futex operation does; the value
    /// found. EINVAL unless `addr` is 4-aligned, EFAULT unless writable.
    pub fn compare_exchange_u32(
        &mut self,
        addr: u64,
        current: u32,
        new: u32,
    ) -> Result<u32, Errno> {
        if !addr.is_multiple_of(4) {
            return Err(Errno::EINVAL);
        }
        // Four aligned bytes never straddle a page, so one piece.
        let pieces = self.translate_growing(addr, 4, Need::Write)?;
        let (off, _) = pieces.first().cloned().ok_or(Errno::EFAULT)?;
        self.mf.compare_exchange_u32(off, current, new)
    }

    /// Reads `N` bytes.
    pub fn read_bytes<const N: usize>(&self, addr: u64) -> Result<[u8; N], Errno> {
        let mut b = [0u8; N];
        self.copy_in(addr, &mut b)?;
        Ok(b)
    }

    pub fn read_u32(&self, addr: u64) -> Result<u32, Errno> {
        self.read_bytes::<4>(addr).map(u32::from_le_bytes)
    }

    pub fn read_u64(&self, addr: u64) -> Result<u64, Errno> {
        self.read_bytes::<8>(addr).map(u64::from_le_bytes)
    }

    pub fn write_u32(&mut self, addr: u64, v: u32) -> Result<(), Errno> {
        self.copy_out(addr, &v.to_le_bytes())
    }

    pub fn write_u64(&mut self, addr: u64, v: u64) -> Result<(), Errno> {
        self.copy_out(addr, &v.to_le_bytes())
    }

    /// Reads a NUL-terminated string (without the NUL). ENAMETOOLONG when no
    /// NUL is found in the first `max_len` bytes (pass PATH_MAX for paths).
    /// Reads page by page, so a string ending just before unmapped memory is fine.
    pub fn read_c_string(&self, addr: u64, max_len: usize) -> Result<Vec<u8>, Errno> {
        let page = self.layout.page_size;
        let mut out = Vec::new();
        let mut cur = addr;
        while out.len() < max_len {
            let to_page_end = page - (cur % page);
            let n = usize::try_from(to_page_end)
                .unwrap_or(usize::MAX)
                .min(max_len - out.len());
            let mut chunk = vec![0u8; n];
            self.copy_in(cur, &mut chunk)?;
            if let Some(nul) = chunk.iter().position(|b| *b == 0) {
                out.extend_from_slice(&chunk[..nul]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
            cur = cur.checked_add(n as u64).ok_or(Errno::EFAULT)?;
        }
        Err(Errno::ENAMETOOLONG)
    }

    /// Reads a NULL-terminated array of string pointers (argv, envp), at
    /// most `max_count` of them, each at most `max_len` bytes.
    pub fn read_string_array(
        &self,
        addr: u64,
        max_count: usize,
        max_len: usize,
    ) -> Result<Vec<Vec<u8>>, Errno> {
        let mut out = Vec::new();
        if addr == 0 {
            return Ok(out);
        }
        loop {
            let at = addr
                .checked_add(8 * out.len() as u64)
                .ok_or(Errno::EFAULT)?;
            let p = self.read_u64(at)?;
            if p == 0 {
                return Ok(out);
            }
            if out.len() >= max_count {
                return Err(Errno::E2BIG);
            }
            let s = self.read_c_string(p, max_len).map_err(|e| {
                if e == Errno::ENAMETOOLONG {
                    Errno::E2BIG
                } else {
                    e
                }
            })?;
            out.push(s);
        }
    }

    /// Reads `count` iovecs (readv/writev). EINVAL for more than
    /// [`UIO_MAXIOV`] or lengths whose sum overflows ssize_t.
    pub fn read_iovecs(&self, addr: u64, count: u64) -> Result<Vec<IoVec>, Errno> {
        let count = usize::try_from(count).map_err(|_| Errno::EINVAL)?;
        if count > UIO_MAXIOV {
            return Err(Errno::EINVAL);
        }
        let mut raw = vec![0u8; count * 16];
        self.copy_in(addr, &mut raw)?;
        let mut total: u64 = 0;
        let mut out = Vec::with_capacity(count);
        for c in raw.chunks_exact(16) {
            let mut b = [0u8; 8];
            b.copy_from_slice(&c[..8]);
            let base = u64::from_le_bytes(b);
            b.copy_from_slice(&c[8..]);
            let len = u64::from_le_bytes(b);
            total = total
                .checked_add(len)
                .filter(|t| *t <= i64::MAX as u64)
                .ok_or(Errno::EINVAL)?;
            out.push(IoVec { base, len });
        }
        Ok(out)
    }

    /// Copies `data` out across `iovs` in order; returns the bytes copied
    /// (less than `data.len()` if the iovecs are shorter). A fault after some
    /// bytes were copied returns the count so far, as Linux does.
    pub fn copy_out_iovecs(&mut self, iovs: &[IoVec], data: &[u8]) -> Result<usize, Errno> {
        let mut done = 0usize;
        for iov in iovs {
            if done == data.len() {
                break;
            }
            let n = usize::try_from(iov.len)
                .unwrap_or(usize::MAX)
                .min(data.len() - done);
            if let Err(e) = self.copy_out(iov.base, &data[done..done + n]) {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            done += n;
        }
        Ok(done)
    }

    /// Gathers up to `max` bytes from `iovs`, in order.
    pub fn copy_in_iovecs(&self, iovs: &[IoVec], max: usize) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        for iov in iovs {
            if out.len() >= max {
                break;
            }
            let n = usize::try_from(iov.len)
                .unwrap_or(usize::MAX)
                .min(max - out.len());
            let at = out.len();
            out.resize(at + n, 0);
            if let Err(e) = self.copy_in(iov.base, &mut out[at..]) {
                out.truncate(at);
                if at > 0 {
                    break;
                }
                return Err(e);
            }
        }
        Ok(out)
    }
}

impl MemoryManager {
    /// Reflects a write(2) of `data` at `offset` of `file` in every shared
    /// mapping of that file, as Linux's page cache makes them coherent.
    pub fn file_written(&self, file: &dyn MappableFile, offset: u64, data: &[u8]) {
        let id = file.identity();
        let end = offset.saturating_add(data.len() as u64);
        for vma in self.vmas() {
            let Some(backing) = vma
                .file
                .as_ref()
                // A direct mapping already holds the written bytes.
                .filter(|b| vma.shared && !vma.direct && b.file.identity() == id)
            else {
                continue;
            };
            let (map_start, map_end) = (backing.offset, backing.offset.saturating_add(vma.len()));
            let (lo, hi) = (offset.max(map_start), end.min(map_end));
            if lo >= hi {
                continue;
            }
            let src = &data[(lo - offset) as usize..(hi - offset) as usize];
            // The range lies inside the VMA, whose pages are all backed.
            let _ = self.write_backed(vma, vma.start + (lo - map_start), src);
        }
    }
}
