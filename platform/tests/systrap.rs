//! The systrap platform running real machine code in stubs.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use platform::systrap::{SystrapAddressSpace, SystrapPlatform};
use platform::{
    Access, AddressSpace, Context, CpuState, Event, FpState, Platform, PlatformError, Prot,
    Registers,
};

const SYS_WRITE: u64 = 1;
const SYS_GETPID: u64 = 39;
const SYS_EXIT: u64 = 60;
const SEGV_MAPERR: i32 = 1;
const SEGV_ACCERR: i32 = 2;

struct Fx {
    mem: OwnedFd,
    platform: SystrapPlatform,
    aspace: Arc<dyn AddressSpace>,
    ctx: Box<dyn Context>,
    state: CpuState,
}

impl Fx {
    fn new(code: &Asm) -> Fx {
        let mem = memfd(16 * PAGE);
        write_at(&mem, CODE_OFF, &code.0);
        let platform = SystrapPlatform::new(mem.as_fd()).expect("platform");
        let aspace = platform.new_address_space().expect("address space");
        aspace.map(CODE, PAGE, CODE_OFF, Prot::READ_EXEC).expect("map code");
        aspace.map(DATA, PAGE, DATA_OFF, Prot::READ_WRITE).expect("map data");
        let ctx = platform.new_context().expect("context");
        let state = CpuState {
            regs: Registers::new_user(CODE, DATA + PAGE),
        };
        Fx { mem, platform, aspace, ctx, state }
    }

    fn switch(&mut self) -> Event {
        self.ctx.switch(self.aspace.as_ref(), &mut self.state).expect("switch")
    }

    fn sys(&self) -> &SystrapAddressSpace {
        self.aspace.as_any().downcast_ref().expect("systrap")
    }
}

#[test]
fn getpid_then_exit() {
    let code = Asm::new().mov_eax(39).syscall().mov_edi_eax().mov_eax(60).syscall().int3();
    let mut f = Fx::new(&code);
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.syscall_nr(), SYS_GETPID);
    assert_eq!(f.state.regs.rip, CODE + 7, "rip after the syscall instruction");
    f.state.regs.set_return(1234);
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.syscall_nr(), SYS_EXIT);
    assert_eq!(f.state.regs.syscall_args()[0], 1234);
    match f.switch() {
        Event::Fault { signo: libc::SIGTRAP, .. } => {}
        e => panic!("expected SIGTRAP, got {e:?}"),
    }
}
