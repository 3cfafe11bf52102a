//! The x86_64 signal frame (Linux's `struct rt_sigframe`): what a handler
//! finds on its stack, and what rt_sigreturn reads back.
//!
//! ```text
//! frame (16-byte aligned, minus 8, like a call) -> pretcode (sa_restorer)
//!                                                  ucontext (304 bytes)
//!                                                  siginfo  (128 bytes)
//! ...
//! fpstate (64-byte aligned)                     -> XSAVE area, then FP_XSTATE_MAGIC2
//! ```

use platform::{FpState, Registers};

/// `sizeof(struct ucontext)`: flags, link, stack_t, sigcontext, sigmask.
pub const UCONTEXT_SIZE: usize = 8 + 8 + 24 + SIGCONTEXT_SIZE + 8;
const SIGCONTEXT_SIZE: usize = 256;
pub const SIGINFO_SIZE: usize = 128;
/// pretcode + ucontext + siginfo.
pub const FRAME_SIZE: usize = 8 + UCONTEXT_SIZE + SIGINFO_SIZE;
/// The red zone below the stack pointer that a handler must not clobber.
pub const RED_ZONE: u64 = 128;

const UC_FP_XSTATE: u64 = 0x1;
const UC_SIGCONTEXT_SS: u64 = 0x2;
/// The handler asks for its saved ss to be restored as it is.
const UC_STRICT_RESTORE_SS: u64 = 0x4;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Offset of `struct _fpx_sw_bytes` in the FXSAVE area's reserved bytes.
const SW_BYTES: usize = 464;
/// The eflags bits a signal handler may change through its ucontext
/// (Linux's FIX_EFLAGS): CF PF AF ZF SF TF DF OF RF AC.
const FIX_EFLAGS: u64 =
    0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x1_0000 | 0x4_0000;

/// Where the pieces of a frame go, for a stack pointer and XSAVE size.
pub struct FrameLayout {
    pub frame: u64,
    pub fpstate: u64,
    pub fp_len: usize,
}

impl FrameLayout {
    /// Lays out a frame below `sp` (already past the red zone or at the top
    /// of an alternate stack). None if the stack would wrap.
    pub fn below(sp: u64, xsave_len: usize) -> Option<FrameLayout> {
        let fp_len = xsave_len + 4;
        let fpstate = sp.checked_sub(fp_len as u64)? & !63;
        let frame = (fpstate.checked_sub(FRAME_SIZE as u64)? & !15).checked_sub(8)?;
        Some(FrameLayout {
            frame,
            fpstate,
            fp_len,
        })
    }

    pub fn ucontext(&self) -> u64 {
        self.frame + 8
    }

    pub fn siginfo(&self) -> u64 {
        self.frame + 8 + UCONTEXT_SIZE as u64
    }
}

fn put(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn get(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

/// The ucontext of a handler interrupted at `regs`, with the mask to restore
/// and the alternate stack in force.
pub fn encode_ucontext(
    regs: &Registers,
    mask: u64,
    alt_stack: (u64, u32, u64),
    fpstate: u64,
) -> [u8; UCONTEXT_SIZE] {
    let mut b = [0u8; UCONTEXT_SIZE];
    put(&mut b, 0, UC_FP_XSTATE | UC_SIGCONTEXT_SS);
    // uc_link 0; uc_stack.
    put(&mut b, 16, alt_stack.0);
    b[24..28].copy_from_slice(&alt_stack.1.to_le_bytes());
    put(&mut b, 32, alt_stack.2);
    let sc = 40;
    let gprs = [
        regs.r8,
        regs.r9,
        regs.r10,
        regs.r11,
        regs.r12,
        regs.r13,
        regs.r14,
        regs.r15,
        regs.rdi,
        regs.rsi,
        regs.rbp,
        regs.rbx,
        regs.rdx,
        regs.rax,
        regs.rcx,
        regs.rsp,
        regs.rip,
        regs.eflags,
    ];
    for (i, v) in gprs.iter().enumerate() {
        put(&mut b, sc + i * 8, *v);
    }
    // cs, gs, fs, ss as u16s.
    b[sc + 144..sc + 146].copy_from_slice(&(regs.cs as u16).to_le_bytes());
    b[sc + 150..sc + 152].copy_from_slice(&(regs.ss as u16).to_le_bytes());
    // err, trapno, oldmask, cr2 stay zero; fpstate pointer.
    put(&mut b, sc + 184, fpstate);
    put(&mut b, sc + SIGCONTEXT_SIZE, mask);
    b
}

/// The registers a handler starts with: at `handler`, the stack pointer on
/// the frame's return address, `handler(signo, siginfo, ucontext)`, DF and
/// TF clear (as Linux does), and no syscall to restart.
pub fn handler_entry(
    regs: &Registers,
    handler: u64,
    layout: &FrameLayout,
    signo: i32,
) -> Registers {
    let mut new = Registers {
        rip: handler,
        rsp: layout.frame,
        ..*regs
    };
    new.rdi = signo as u64;
    new.rsi = layout.siginfo();
    new.rdx = layout.ucontext();
    new.rax = 0;
    new.eflags &= !(0x400 | 0x100);
    new.orig_rax = u64::MAX;
    new
}

/// Where rt_sigreturn finds the ucontext: the handler's `ret` popped the
/// restorer address, so the stack pointer is on it.
pub fn sigreturn_ucontext(regs: &Registers) -> u64 {
    regs.rsp
}

/// The XSAVE area as a handler sees it, with the software bytes that mark
/// it as extended state, followed by FP_XSTATE_MAGIC2.
pub fn encode_fpstate(fp: &FpState) -> Vec<u8> {
    let mut b = fp.xsave.clone();
    let size = b.len() as u32;
    if b.len() >= SW_BYTES + 16 {
        b[SW_BYTES..SW_BYTES + 4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
        b[SW_BYTES + 4..SW_BYTES + 8].copy_from_slice(&(size + 4).to_le_bytes());
        b[SW_BYTES + 8..SW_BYTES + 16].copy_from_slice(&fp.xstate_bv().to_le_bytes());
        if b.len() >= SW_BYTES + 20 {
            b[SW_BYTES + 16..SW_BYTES + 20].copy_from_slice(&size.to_le_bytes());
        }
    }
    b.extend_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
    b
}

/// What rt_sigreturn restores from a ucontext.
pub struct Restored {
    pub mask: u64,
    pub fpstate: u64,
}

/// A ucontext no return to 64-bit user code can come from: Linux's iret
/// faults on it and the process gets SIGSEGV.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadFrame {
    #[error("code segment {0:#x} is not the 64-bit user segment")]
    CodeSegment(u16),
    #[error("stack segment {0:#x} is not the user data segment")]
    StackSegment(u16),
}

fn get16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// Applies the ucontext a handler returns through to `regs`. Only the bits
/// of eflags a program may set are taken. Linux takes the saved cs (and,
/// with UC_STRICT_RESTORE_SS, ss) with the user privilege level forced;
/// anything but the 64-bit user segments faults on the way out, so such a
/// frame is refused (cryo runs no 32-bit code) and `regs` is left as is.
pub fn decode_ucontext(
    b: &[u8; UCONTEXT_SIZE],
    regs: &mut Registers,
) -> Result<Restored, BadFrame> {
    let sc = 40;
    let cs = get16(b, sc + 144);
    if u64::from(cs | 3) != platform::arch::USER_CS {
        return Err(BadFrame::CodeSegment(cs));
    }
    let ss = get16(b, sc + 150);
    if get(b, 0) & UC_STRICT_RESTORE_SS != 0 && u64::from(ss | 3) != platform::arch::USER_DS {
        return Err(BadFrame::StackSegment(ss));
    }
    let g = |i: usize| get(b, sc + i * 8);
    regs.r8 = g(0);
    regs.r9 = g(1);
    regs.r10 = g(2);
    regs.r11 = g(3);
    regs.r12 = g(4);
    regs.r13 = g(5);
    regs.r14 = g(6);
    regs.r15 = g(7);
    regs.rdi = g(8);
    regs.rsi = g(9);
    regs.rbp = g(10);
    regs.rbx = g(11);
    regs.rdx = g(12);
    regs.rax = g(13);
    regs.rcx = g(14);
    regs.rsp = g(15);
    regs.rip = g(16);
    regs.eflags = (regs.eflags & !FIX_EFLAGS) | (g(17) & FIX_EFLAGS);
    // Not a syscall any more: nothing to restart.
    regs.orig_rax = u64::MAX;
    Ok(Restored {
        mask: get(b, sc + SIGCONTEXT_SIZE),
        fpstate: get(b, sc + 184),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_aligned_like_a_call() {
        let l = FrameLayout::below(0x7fff_0000_0000 - 128, 2696).unwrap();
        assert_eq!(
            (l.frame + 8) % 16,
            0,
            "rsp+8 is 16-aligned at handler entry"
        );
        assert_eq!(l.fpstate % 64, 0);
        assert!(l.siginfo() + SIGINFO_SIZE as u64 <= l.fpstate);
        assert!(FrameLayout::below(100, 2696).is_none());
    }

    #[test]
    fn ucontext_round_trip_keeps_registers_and_mask() {
        let mut regs = Registers::new_user(0x401000, 0x7ffd_0000);
        regs.rax = 7;
        regs.r15 = 15;
        regs.eflags = 0x202;
        let uc = encode_ucontext(&regs, 0b1010, (0, 2, 0), 0x1234);
        let mut back = Registers::new_user(0, 0);
        let r = decode_ucontext(&uc, &mut back).unwrap();
        assert_eq!(
            (back.rax, back.r15, back.rip, back.rsp),
            (7, 15, 0x401000, 0x7ffd_0000)
        );
        assert_eq!(r.mask, 0b1010);
        assert_eq!(r.fpstate, 0x1234);
    }

    #[test]
    fn ucontext_with_a_foreign_segment_is_refused() {
        let regs = Registers::new_user(0x401000, 0x7ffd_0000);
        let good = encode_ucontext(&regs, 0, (0, 2, 0), 0);
        let mut bad_cs = good;
        bad_cs[40 + 144..40 + 146].copy_from_slice(&0u16.to_le_bytes());
        let mut back = Registers::new_user(0, 0);
        assert_eq!(
            decode_ucontext(&bad_cs, &mut back).err(),
            Some(BadFrame::CodeSegment(0))
        );
        assert_eq!(back.rip, 0, "a refused frame changes nothing");
        // USER32_CS: compatibility mode, which cryo does not run.
        bad_cs[40 + 144..40 + 146].copy_from_slice(&0x23u16.to_le_bytes());
        assert!(decode_ucontext(&bad_cs, &mut back).is_err());
        // The privilege level is forced, as Linux does: 0x30 is fine.
        let mut rpl0 = good;
        rpl0[40 + 144..40 + 146].copy_from_slice(&0x30u16.to_le_bytes());
        assert!(decode_ucontext(&rpl0, &mut back).is_ok());
        // ss is only taken with UC_STRICT_RESTORE_SS.
        let mut bad_ss = good;
        bad_ss[40 + 150..40 + 152].copy_from_slice(&0u16.to_le_bytes());
        assert!(decode_ucontext(&bad_ss, &mut back).is_ok());
        bad_ss[0] |= UC_STRICT_RESTORE_SS as u8;
        assert_eq!(
            decode_ucontext(&bad_ss, &mut back).err(),
            Some(BadFrame::StackSegment(0))
        );
    }

    #[test]
    fn handler_entry_passes_the_frame() {
        let mut regs = Registers::new_user(0x401000, 0x7ffd_0000);
        regs.eflags = 0x202 | 0x400 | 0x100;
        regs.orig_rax = 1;
        let l = FrameLayout::below(0x7ffd_0000 - RED_ZONE, 2696).unwrap();
        let h = handler_entry(&regs, 0x402000, &l, 10);
        assert_eq!((h.rip, h.rsp), (0x402000, l.frame));
        assert_eq!((h.rdi, h.rsi, h.rdx), (10, l.siginfo(), l.ucontext()));
        assert_eq!((h.eflags, h.orig_rax, h.rax), (0x202, u64::MAX, 0));
        assert_eq!(
            sigreturn_ucontext(&Registers {
                rsp: l.ucontext(),
                ..h
            }),
            l.ucontext()
        );
    }
}
