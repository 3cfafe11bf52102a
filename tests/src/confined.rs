//! What a confined host process of cryo shows from outside in /proc: the
//! checks the confinement tests and the pool tests share.

use std::path::PathBuf;

/// The Sentry's capability sets once locked down: CAP_DAC_READ_SEARCH only.
pub const SENTRY_CAPS: &str = "0000000000000004";

/// Field `key` of /proc/PID/status.
pub fn status_field(pid: u32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The `ns` namespace link of process `pid` ("self" for this one).
pub fn ns_link(pid: &str, ns: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{ns}: {e}"))
}

/// The Sentry `pid` is locked down (see cli/src/confine): a seccomp
/// filter, no new privileges, only CAP_DAC_READ_SEARCH (effective,
/// permitted and bounding), and mount, ipc, uts and network namespaces
/// other than this process's.
pub fn assert_sentry_confined(pid: u32, what: &str) {
    assert_eq!(status_field(pid, "Seccomp").as_deref(), Some("2"), "{what}");
    assert_eq!(
        status_field(pid, "NoNewPrivs").as_deref(),
        Some("1"),
        "{what}"
    );
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(
            status_field(pid, set).as_deref(),
            Some(SENTRY_CAPS),
            "{what}: {set} of the Sentry"
        );
    }
    for ns in ["mnt", "ipc", "uts", "net"] {
        assert_ne!(
            ns_link(&pid.to_string(), ns),
            ns_link("self", ns),
            "{what}: the Sentry is in the host's {ns} namespace"
        );
    }
}
