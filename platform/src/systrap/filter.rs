//! The stub's seccomp programs (classic BPF over `struct seccomp_data`).
//!
//! Every stub thread runs the leader's filter; application threads stack
//! the application filter on it. For a syscall made from outside the stub
//! code page both say TRAP (SIGSYS: the Sentry handles it); from inside the
//! code page each allows its own few syscalls and kills the whole stub for
//! any other (an application that jumps into the stub code). Seccomp takes
//! the most restrictive answer of all stacked filters, so an application
//! thread can only ever make the application filter's syscalls:
//! futex (wait and wake only), rt_sigreturn and exit.

/// `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&self.code.to_le_bytes());
        b[2] = self.jt;
        b[3] = self.jf;
        b[4..8].copy_from_slice(&self.k.to_le_bytes());
        b
    }
}

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JGT_K: u16 = 0x25;
const AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(crate) const RET_TRAP: u32 = 0x0003_0000;
pub(crate) const RET_ALLOW: u32 = 0x7fff_0000;

/// `struct seccomp_data` offsets.
const NR: u32 = 0;
const ARCH: u32 = 4;
const IP_LO: u32 = 8;
const IP_HI: u32 = 12;
const ARG0_LO: u32 = 16;
const ARG1_LO: u32 = 16 + 8;

/// The syscalls the leader makes (from the stub code page), besides
/// write(2) to its completion eventfd.
pub(crate) const LEADER_SYSCALLS: &[u32] = &[
    libc::SYS_mmap as u32,
    libc::SYS_munmap as u32,
    libc::SYS_mprotect as u32,
    libc::SYS_futex as u32,
    libc::SYS_clone as u32,
    libc::SYS_exit as u32,
    libc::SYS_exit_group as u32,
    libc::SYS_seccomp as u32,
    libc::SYS_sigaltstack as u32,
    libc::SYS_rt_sigprocmask as u32,
    libc::SYS_rt_sigreturn as u32,
];

/// The zygote's filter allows these from the stub code page besides the
/// leader's (its stubs inherit it, and seccomp stacks filters, so it must
/// let through what the leader and the new stub's set-up make): its own
/// recvmsg, clone, close, write of the answer and exit, and the new stub's
/// prctl(PR_SET_PDEATHSIG), getppid, dup3 and mseal.
pub(crate) const ZYGOTE_EXTRA_SYSCALLS: &[u32] = &[
    libc::SYS_recvmsg as u32,
    libc::SYS_write as u32,
    libc::SYS_close as u32,
    libc::SYS_dup3 as u32,
    libc::SYS_prctl as u32,
    libc::SYS_getppid as u32,
    462, // mseal
];

/// The zygote's filter: what the zygote and its stubs' leaders make, from
/// the stub code page only; any syscall from elsewhere traps, as in every
/// stub.
pub(crate) fn zygote_program(code: u64, len: u64) -> Result<Vec<Insn>, String> {
    let mut all: Vec<u32> = LEADER_SYSCALLS.to_vec();
    all.extend_from_slice(ZYGOTE_EXTRA_SYSCALLS);
    program(code, len, &all, false)
}

/// The syscalls an application thread's stub code makes; futex is limited
/// to FUTEX_WAIT and FUTEX_WAKE.
pub(crate) const APP_SYSCALLS: &[u32] = &[libc::SYS_rt_sigreturn as u32, libc::SYS_exit as u32];

/// A filter that traps every syscall made outside `(code, code + len]` (the
/// instruction pointer seccomp sees is the one after the `syscall`) and,
/// inside it, allows `allowed` (plus futex wait/wake when `futex`) and
/// kills the process for anything else.
pub(crate) fn program(
    code: u64,
    len: u64,
    allowed: &[u32],
    futex: bool,
) -> Result<Vec<Insn>, String> {
    program_with_write(code, len, allowed, futex, None)
}

/// [`program`] that also allows write(2) to fd `write_fd` (and no other).
pub(crate) fn program_with_write(
    code: u64,
    len: u64,
    allowed: &[u32],
    futex: bool,
    write_fd: Option<u32>,
) -> Result<Vec<Insn>, String> {
    let end = code + len;
    if code >> 32 != end >> 32 {
        return Err(format!(
            "stub code {code:#x}..{end:#x} crosses a 4 GiB boundary"
        ));
    }
    let ld = |k| Insn {
        code: LD_W_ABS,
        jt: 0,
        jf: 0,
        k,
    };
    let ret = |k| Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k,
    };
    // Layout (BPF only jumps forward): an 8-instruction header, one jeq per
    // allowed syscall, [futex jeq], [write jeq], KILL, [futex check: 5],
    // [write check: 5], TRAP, ALLOW. Jumps count from the next instruction.
    let base = 8usize;
    let n = allowed.len() + usize::from(futex) + usize::from(write_fd.is_some());
    let kill = base + n;
    let futex_check = kill + 1;
    let write_check = futex_check + if futex { 5 } else { 0 };
    let trap = write_check + if write_fd.is_some() { 5 } else { 0 };
    let allow = trap + 1;
    let rel = |from: usize, to: usize| -> Result<u8, String> {
        u8::try_from(to - from - 1).map_err(|_| "seccomp jump too far".to_string())
    };
    let mut p = vec![
        ld(ARCH),
        Insn {
            code: JEQ_K,
            jt: 0,
            jf: rel(1, trap)?,
            k: AUDIT_ARCH_X86_64,
        },
        ld(IP_HI),
        Insn {
            code: JEQ_K,
            jt: 0,
            jf: rel(3, trap)?,
            k: (code >> 32) as u32,
        },
        ld(IP_LO),
        // ip <= code: trap (a syscall instruction ending at `code` lies
        // below the page); ip > end: trap.
        Insn {
            code: JGE_K,
            jt: 0,
            jf: rel(5, trap)?,
            k: code as u32 + 1,
        },
        Insn {
            code: JGT_K,
            jt: rel(6, trap)?,
            jf: 0,
            k: end as u32,
        },
        ld(NR),
    ];
    debug_assert_eq!(p.len(), base);
    for (i, &nr) in allowed.iter().enumerate() {
        let at = base + i;
        p.push(Insn {
            code: JEQ_K,
            jt: rel(at, allow)?,
            jf: 0,
            k: nr,
        });
    }
    if futex {
        let at = base + allowed.len();
        p.push(Insn {
            code: JEQ_K,
            jt: rel(at, futex_check)?,
            jf: 0,
            k: libc::SYS_futex as u32,
        });
    }
    if write_fd.is_some() {
        let at = p.len();
        p.push(Insn {
            code: JEQ_K,
            jt: rel(at, write_check)?,
            jf: 0,
            k: libc::SYS_write as u32,
        });
    }
    p.push(ret(RET_KILL_PROCESS));
    if futex {
        // op & FUTEX_CMD_MASK must be FUTEX_WAIT (0) or FUTEX_WAKE (1);
        // FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME may be set.
        let at = p.len();
        debug_assert_eq!(at, futex_check);
        p.push(ld(ARG1_LO));
        p.push(Insn {
            code: AND_K,
            jt: 0,
            jf: 0,
            k: !(128u32 | 256),
        });
        p.push(Insn {
            code: JEQ_K,
            jt: rel(at + 2, allow)?,
            jf: 0,
            k: libc::FUTEX_WAIT as u32,
        });
        p.push(Insn {
            code: JEQ_K,
            jt: rel(at + 3, allow)?,
            jf: 0,
            k: libc::FUTEX_WAKE as u32,
        });
        p.push(ret(RET_KILL_PROCESS));
    }
    if let Some(fd) = write_fd {
        // arg0 (both halves) must be the fd.
        let at = p.len();
        debug_assert_eq!(at, write_check);
        p.push(ld(ARG0_LO));
        p.push(Insn {
            code: JEQ_K,
            jt: 0,
            jf: 2,
            k: fd,
        });
        p.push(ld(ARG0_LO + 4));
        p.push(Insn {
            code: JEQ_K,
            jt: rel(at + 3, allow)?,
            jf: 0,
            k: 0,
        });
        p.push(ret(RET_KILL_PROCESS));
    }
    debug_assert_eq!(p.len(), trap);
    p.push(ret(RET_TRAP));
    p.push(ret(RET_ALLOW));
    if p.len() > super::shared::CTL_FILTER_MAX {
        return Err("seccomp program too long".into());
    }
    Ok(p)
}

/// Runs `prog` on a `seccomp_data`, for tests: the classic BPF subset the
/// programs above use.
#[cfg(test)]
pub(crate) fn run(prog: &[Insn], nr: u32, arch: u32, ip: u64, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            NR => nr,
            ARCH => arch,
            IP_LO => ip as u32,
            IP_HI => (ip >> 32) as u32,
            o if (16..64).contains(&o) => {
                let a = args[((o - 16) / 8) as usize];
                if o % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            o => panic!("load of {o}"),
        }
    };
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => acc = word(i.k),
            AND_K => acc &= i.k,
            RET_K => return i.k,
            JEQ_K | JGE_K | JGT_K => {
                let taken = match i.code {
                    JEQ_K => acc == i.k,
                    JGE_K => acc >= i.k,
                    _ => acc > i.k,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            c => panic!("opcode {c:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: u64 = 0x7fff_4000_0000;

    #[test]
    fn application_filter() {
        let p = program(CODE, 0x1000, APP_SYSCALLS, true).unwrap();
        let x86 = AUDIT_ARCH_X86_64;
        let getpid = libc::SYS_getpid as u32;
        let mmap = libc::SYS_mmap as u32;
        let futex = libc::SYS_futex as u32;
        let exit = libc::SYS_exit as u32;
        // Outside the stub: everything traps.
        for ip in [
            0x40_1000,
            CODE - 1,
            CODE,
            CODE + 0x1001,
            CODE + (1 << 32) + 8,
        ] {
            assert_eq!(run(&p, getpid, x86, ip, [0; 6]), RET_TRAP, "{ip:#x}");
            assert_eq!(run(&p, mmap, x86, ip, [0; 6]), RET_TRAP);
        }
        // A 32-bit syscall traps wherever it comes from.
        assert_eq!(run(&p, 20, 0x4000_0003, CODE + 2, [0; 6]), RET_TRAP);
        // Inside: only the stub's own syscalls.
        assert_eq!(run(&p, exit, x86, CODE + 2, [0; 6]), RET_ALLOW);
        assert_eq!(run(&p, mmap, x86, CODE + 2, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(
            run(&p, getpid, x86, CODE + 0x1000, [0; 6]),
            RET_KILL_PROCESS
        );
        for op in [0u64, 1, 128, 129] {
            assert_eq!(
                run(&p, futex, x86, CODE + 2, [0, op, 0, 0, 0, 0]),
                RET_ALLOW,
                "{op}"
            );
        }
        for op in [2u64, 3, 4, 5, 6, 9, 10, 13, 130] {
            assert_eq!(
                run(&p, futex, x86, CODE + 2, [0, op, 0, 0, 0, 0]),
                RET_KILL_PROCESS,
                "futex op {op}"
            );
        }
    }

    #[test]
    fn leader_filter() {
        let p = program(CODE, 0x1000, LEADER_SYSCALLS, false).unwrap();
        let x86 = AUDIT_ARCH_X86_64;
        for &nr in LEADER_SYSCALLS {
            assert_eq!(run(&p, nr, x86, CODE + 0x10, [0; 6]), RET_ALLOW);
        }
        assert_eq!(
            run(&p, libc::SYS_execve as u32, x86, CODE + 0x10, [0; 6]),
            RET_KILL_PROCESS
        );
        assert_eq!(
            run(&p, libc::SYS_execve as u32, x86, 0x1000, [0; 6]),
            RET_TRAP
        );
    }

    #[test]
    fn the_leader_writes_only_its_eventfd() {
        let p = program_with_write(CODE, 0x1000, LEADER_SYSCALLS, false, Some(7)).unwrap();
        let x86 = AUDIT_ARCH_X86_64;
        let write = libc::SYS_write as u32;
        assert_eq!(run(&p, write, x86, CODE + 8, [7, 0, 8, 0, 0, 0]), RET_ALLOW);
        for fd in [1u64, 6, 8, 7 + (1 << 32)] {
            assert_eq!(
                run(&p, write, x86, CODE + 8, [fd, 0, 8, 0, 0, 0]),
                RET_KILL_PROCESS,
                "{fd}"
            );
        }
        assert_eq!(run(&p, write, x86, 0x1000, [7, 0, 8, 0, 0, 0]), RET_TRAP);
        assert_eq!(
            run(&p, libc::SYS_mmap as u32, x86, CODE + 8, [0; 6]),
            RET_ALLOW
        );
    }

    #[test]
    fn code_across_4g_is_refused() {
        assert!(program(0x1_ffff_f000, 0x1000, APP_SYSCALLS, true).is_err());
    }
}
