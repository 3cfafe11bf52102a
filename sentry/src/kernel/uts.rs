//! The sandbox's identity as uname(2) reports it (invariant 6).

use serde::{Deserialize, Serialize};

/// Like gVisor, the sandbox reports its own kernel, not the host's.
pub const SYSNAME: &str = "Linux";
pub const RELEASE: &str = "4.4.0";
pub const VERSION: &str = "#1 SMP Sun Jan 10 15:06:54 PST 2016";
#[cfg(target_arch = "x86_64")]
pub const MACHINE: &str = "x86_64";

/// The UTS namespace: hostname and domain name.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UtsNamespace {
    pub hostname: String,
    pub domainname: String,
}
statefile::versioned!(UtsNamespace, "kernel.UtsNamespace", 1);

impl UtsNamespace {
    pub fn new(hostname: &str) -> UtsNamespace {
        UtsNamespace {
            hostname: hostname.to_string(),
            domainname: "(none)".to_string(),
        }
    }

    /// `struct utsname`: six fields of 65 bytes, NUL-padded.
    pub fn utsname_bytes(&self) -> [u8; 6 * 65] {
        let mut out = [0u8; 6 * 65];
        let fields = [
            SYSNAME,
            &self.hostname,
            RELEASE,
            VERSION,
            MACHINE,
            &self.domainname,
        ];
        for (i, f) in fields.iter().enumerate() {
            let bytes = f.as_bytes();
            let n = bytes.len().min(64);
            out[i * 65..i * 65 + n].copy_from_slice(&bytes[..n]);
        }
        out
    }
}
