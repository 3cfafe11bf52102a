use thiserror::Error;

/// What can go wrong in a platform.
#[derive(Debug, Error)]
pub enum PlatformError {
    #[error("{op} failed: {source}")]
    Host {
        op: &'static str,
        source: nix::Error,
    },
    #[error("stub process {pid} died unexpectedly ({how})")]
    StubDied { pid: i32, how: String },
    #[error("injected {syscall} in stub failed with errno {errno}")]
    Injected { syscall: &'static str, errno: i32 },
    #[error("address space belongs to another platform")]
    ForeignAddressSpace,
    #[error("host has no usable address space layout: {0}")]
    Layout(String),
    #[error("FP state of {got} bytes does not fit this host's {want}-byte XSAVE area")]
    FpStateSize { got: usize, want: usize },
    #[error("unexpected stop of stub {pid}: {what}")]
    UnexpectedStop { pid: i32, what: String },
    /// ptrace requests must come from a host thread that has a stub thread in
    /// the address space (created it, or used a context of a new thread of
    /// it).
    #[error("stub {stub} is traced by thread {tracer}, not by the calling thread {caller}")]
    WrongThread { stub: i32, tracer: i32, caller: i32 },
    #[error("invalid range [{addr:#x}, {addr:#x} + {len:#x}): {why}")]
    InvalidRange {
        addr: u64,
        len: u64,
        why: &'static str,
    },
    /// A new thread's context used with another address space, or by a host
    /// thread that already has a thread there, and the like.
    #[error("thread request refused: {0}")]
    Thread(&'static str),
    /// A platform name no entry of [`crate::PLATFORMS`] has.
    #[error("unknown platform {name:?} (this cryo has: {known})")]
    UnknownPlatform { name: String, known: String },
    /// The systrap platform: a stub broke the protocol (a corrupt shared
    /// context, a thread that does not answer) or refused a state.
    #[error("systrap stub {pid}: {what}")]
    Systrap { pid: i32, what: String },
    #[error("cannot place the stub code page: {0}")]
    StubPage(String),
}
