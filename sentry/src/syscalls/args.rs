//! Typed access to the six raw syscall arguments.

use crate::errno::Errno;

/// The raw arguments of a syscall, in ABI order.
#[derive(Clone, Copy, Debug)]
pub struct Args(pub [u64; 6]);

impl Args {
    pub fn raw(&self, i: usize) -> u64 {
        self.0[i]
    }

    /// An `int` argument: the low 32 bits, sign-extended, as the kernel reads it.
    pub fn int(&self, i: usize) -> i32 {
        self.0[i] as u32 as i32
    }

    pub fn uint(&self, i: usize) -> u32 {
        self.0[i] as u32
    }

    /// A file descriptor argument.
    pub fn fd(&self, i: usize) -> i32 {
        self.int(i)
    }

    /// A user-space address.
    pub fn addr(&self, i: usize) -> u64 {
        self.0[i]
    }

    /// A `size_t` that will be used as a buffer length: bounded so a hostile
    /// length cannot make the Sentry allocate without limit.
    pub fn len(&self, i: usize, max: usize) -> Result<usize, Errno> {
        let v = usize::try_from(self.0[i]).map_err(|_| Errno::EINVAL)?;
        Ok(v.min(max))
    }

    /// An `off_t` (signed 64-bit).
    pub fn off(&self, i: usize) -> i64 {
        self.0[i] as i64
    }
}
