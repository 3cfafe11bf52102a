//! Register transfer between the Sentry's [`Registers`]/[`FpState`] and a
//! traced thread.

use std::sync::OnceLock;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::{FpState, PlatformError, Registers};

/// `NT_X86_XSTATE`: the XSAVE area regset.
const NT_X86_XSTATE: libc::c_int = 0x202;
/// Bigger than any XSAVE area (AMX's is about 11 KiB).
const XSAVE_PROBE_SIZE: usize = 64 << 10;
/// Offset of XSTATE_BV in the XSAVE header.
const XSTATE_BV_OFFSET: usize = 512;

/// The conversions both ways from one list of the fields the two structs
/// share, so that they cannot drift apart.
macro_rules! convert_regs {
    ($($field:ident),* $(,)?) => {
        pub(crate) fn to_libc(r: &Registers) -> libc::user_regs_struct {
            libc::user_regs_struct { $($field: r.$field),* }
        }

        pub(crate) fn from_libc(r: &libc::user_regs_struct) -> Registers {
            Registers { $($field: r.$field),* }
        }
    };
}

convert_regs!(
    r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs,
    eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs,
);

/// PTRACE_GETREGS.
pub(crate) fn get_regs(tid: i32) -> Result<Registers, PlatformError> {
    nix::sys::ptrace::getregs(Pid::from_raw(tid))
        .map(|r| from_libc(&r))
        .map_err(|source| PlatformError::Host {
            op: "PTRACE_GETREGS",
            source,
        })
}

/// PTRACE_SETREGS. `orig_rax` is always written as -1: it only matters to the
/// kernel's syscall-restart logic on the way back to user mode, which must
/// never rewrite an application's registers behind the Sentry's back.
pub(crate) fn set_regs(tid: i32, r: &Registers) -> Result<(), PlatformError> {
    let mut raw = to_libc(r);
    raw.orig_rax = u64::MAX;
    nix::sys::ptrace::setregs(Pid::from_raw(tid), raw).map_err(|source| PlatformError::Host {
        op: "PTRACE_SETREGS",
        source,
    })
}

static XSAVE_SIZE: OnceLock<usize> = OnceLock::new();

/// The size of this host's XSAVE area as ptrace exposes it (learned from the
/// first stub asked).
pub(crate) fn xsave_size(tid: i32) -> Result<usize, PlatformError> {
    if let Some(&size) = XSAVE_SIZE.get() {
        return Ok(size);
    }
    let mut buf = vec![0u8; XSAVE_PROBE_SIZE];
    let size = getregset(tid, &mut buf)?;
    Ok(*XSAVE_SIZE.get_or_init(|| size))
}

fn getregset(tid: i32, buf: &mut [u8]) -> Result<usize, PlatformError> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the kernel writes at most iov_len bytes into `buf`, which is
    // live and exclusively borrowed, and updates `iov`, a live local.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            NT_X86_XSTATE as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec,
        )
    };
    if r < 0 {
        return Err(PlatformError::Host {
            op: "PTRACE_GETREGSET(NT_X86_XSTATE)",
            source: Errno::last(),
        });
    }
    Ok(iov.iov_len.min(buf.len()))
}

/// PTRACE_GETREGSET(NT_X86_XSTATE).
pub(crate) fn get_fp(tid: i32) -> Result<FpState, PlatformError> {
    let size = xsave_size(tid)?;
    let mut xsave = vec![0u8; size];
    let len = getregset(tid, &mut xsave)?;
    xsave.truncate(len);
    Ok(FpState { xsave })
}

/// PTRACE_SETREGSET(NT_X86_XSTATE). A state smaller than the host's area (from
/// a host with fewer features) is padded with zeros: the components it lacks
/// are absent from its XSTATE_BV and so load in their initial state. A
/// larger one is cut to this host's area (`FpState::loadable_in`).
pub(crate) fn set_fp(tid: i32, fp: &FpState) -> Result<(), PlatformError> {
    let size = xsave_size(tid)?;
    let mut buf = padded(&*fp.loadable_in(size)?, size)?;
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the kernel reads at most iov_len bytes from `buf`, which is live.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid,
            NT_X86_XSTATE as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec,
        )
    };
    if r < 0 {
        return Err(PlatformError::Host {
            op: "PTRACE_SETREGSET(NT_X86_XSTATE)",
            source: Errno::last(),
        });
    }
    Ok(())
}

/// `fp` padded to `size` bytes, or `FpStateSize` if it does not fit.
pub(crate) fn padded(fp: &FpState, size: usize) -> Result<Vec<u8>, PlatformError> {
    if fp.xsave.len() > size {
        return Err(PlatformError::FpStateSize {
            got: fp.xsave.len(),
            want: size,
        });
    }
    let mut buf = vec![0u8; size];
    buf[..fp.xsave.len()].copy_from_slice(&fp.xsave);
    Ok(buf)
}

/// The FP state of a fresh thread (as after execve): x87 control word 0x37f,
/// MXCSR 0x1f80, every register zero, in an XSAVE area of `size` bytes.
pub(crate) fn initial_fp(size: usize) -> FpState {
    let mut xsave = vec![0u8; size.max(XSTATE_BV_OFFSET + 64)];
    xsave[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
    xsave[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    // x87 and SSE present (so the control words above are loaded), every
    // other component in its initial state.
    xsave[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8].copy_from_slice(&3u64.to_le_bytes());
    FpState { xsave }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regs_round_trip() {
        let mut r = Registers::new_user(0x1000, 0x2000);
        r.r15 = 1;
        r.gs = 27;
        r.fs_base = 0xdead;
        assert_eq!(from_libc(&to_libc(&r)), r);
    }

    #[test]
    fn padding() {
        let fp = FpState { xsave: vec![1; 10] };
        assert_eq!(
            padded(&fp, 12).unwrap(),
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
        );
        assert!(matches!(
            padded(&fp, 8),
            Err(PlatformError::FpStateSize { got: 10, want: 8 })
        ));
    }

    #[test]
    fn initial_state() {
        let fp = initial_fp(1024);
        assert_eq!(fp.xsave.len(), 1024);
        assert_eq!(fp.xstate_bv(), 3);
    }
}
