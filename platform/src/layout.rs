//! The host's usable address-space layout.
//!
//! Hosts differ in how much virtual address space they give user space
//! (x86_64: 47 bits with 4-level paging, 56 with 5-level; arm64: 39, 42, 47 or
//! 48 depending on the kernel configuration). cryo probes the size at start
//! with `MAP_FIXED_NOREPLACE` and derives everything else from it, so that a
//! 39-bit host works as well as a 47-bit one, and a host that cannot run cryo
//! gets a plain reason.
//!
//! From the top of the usable space down:
//!
//! ```text
//! max_user_addr ─┐  (exclusive end of usable user VA)
//!                │  guard gap
//! stub_addr     ─┤  one page: the platform's stub code (reserved)
//!                ⋮  (on a host with more than 39 bits: free for MAP_FIXED
//!                ⋮   and hints; cryo places nothing here itself)
//! 2^39          ─┤  (placement_end on a host with more than 39 bits)
//!                │  guard gap
//! stack_top     ─┤  the main stack grows down from here
//!                │  stack gap (RLIMIT_STACK-ish)
//! mmap_base     ─┤  mmap allocations grow down from here
//!                ⋮
//! 0
//! ```
//!
//! Everything cryo places in an application's address space itself (the
//! stack, the mmap base, a PIE executable's base) stays below 2^39
//! ([`PORTABLE_VA_BITS`]) whatever the host has, so that a sandbox checkpointed
//! on a 47-bit x86_64 or 48-bit arm64 host restores on a 39-bit one (a
//! Raspberry Pi's 4K-page kernel) unless the application itself mapped higher
//! (MAP_FIXED, or a hint above 2^39). The stub page is not application
//! memory and is never saved: it stays near the host's top, out of the way.

use serde::{Deserialize, Serialize};

use crate::PlatformError;

/// Candidate address-space sizes, largest first. 56 is x86_64 with 5-level
/// paging (57-bit VA, of which user space gets the lower half), 47 is x86_64
/// with 4-level paging, 48/42/39/36 are arm64 configurations.
pub const CANDIDATE_VA_BITS: &[u32] = &[57, 56, 52, 48, 47, 42, 39, 36];

const GIB: u64 = 1 << 30;

/// The address bits cryo's own placements stay within on any host: the
/// smallest user address space of the hosts cryo aims at (arm64 with 4K
/// pages and three-level tables, CONFIG_ARM64_VA_BITS_39).
pub const PORTABLE_VA_BITS: u32 = 39;

/// The host's usable address-space layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Layout {
    /// Bits of usable user virtual address space.
    pub va_bits: u32,
    /// Exclusive end of usable user VA (`2^va_bits - page_size`).
    pub max_user_addr: u64,
    /// The host's page size.
    pub page_size: u64,
    /// Where the stub code page lives, between `stack_top` and
    /// `max_user_addr`. Application mappings must not overlap
    /// `[stub_addr, stub_addr + page_size)`.
    pub stub_addr: u64,
    /// Top of the application's main stack.
    pub stack_top: u64,
    /// Where top-down mmap allocation starts.
    pub mmap_base: u64,
}

impl Layout {
    /// Whether `[addr, addr + len)` is a range a platform may map, unmap
    /// or protect: page aligned, inside user address space.
    pub fn check_range(&self, addr: u64, len: u64) -> Result<(), PlatformError> {
        let mask = self.page_size - 1;
        if addr & mask != 0 || len & mask != 0 {
            return Err(PlatformError::InvalidRange {
                addr,
                len,
                why: "not page aligned",
            });
        }
        match addr.checked_add(len) {
            Some(end) if end <= self.max_user_addr => Ok(()),
            _ => Err(PlatformError::InvalidRange {
                addr,
                len,
                why: "beyond the end of user address space",
            }),
        }
    }

    /// Probes the host: the largest candidate size at which a page just below
    /// `2^bits - page_size` can be mapped (or is already mapped) wins.
    pub fn probe() -> Result<Layout, PlatformError> {
        let page_size = host_page_size()?;
        for &bits in CANDIDATE_VA_BITS {
            if probe_bits(bits, page_size) {
                let layout = Layout::for_va_bits(bits, page_size)?;
                tracing::debug!(?layout, "probed host address-space layout");
                return Ok(layout);
            }
        }
        Err(PlatformError::Layout(format!(
            "no usable address space found: a page could not be mapped below 2^{} \
             (the smallest size cryo supports) with MAP_FIXED_NOREPLACE (Linux >= 4.17 is needed)",
            CANDIDATE_VA_BITS[CANDIDATE_VA_BITS.len() - 1]
        )))
    }

    /// The layout of a host with `va_bits` bits of user address space and
    /// pages of `page_size` bytes. Fails on sizes cryo cannot use (this is
    /// also how a restore checks a recorded layout before trusting it).
    pub fn for_va_bits(va_bits: u32, page_size: u64) -> Result<Layout, PlatformError> {
        if !(32..=62).contains(&va_bits) {
            return Err(PlatformError::Layout(format!(
                "{va_bits}-bit address space is outside the supported 32..=62 bits"
            )));
        }
        if !page_size.is_power_of_two() || !(4096..=GIB).contains(&page_size) {
            return Err(PlatformError::Layout(format!(
                "page size {page_size} is not a supported power of two"
            )));
        }
        let space = 1u64 << va_bits;
        let align = |v: u64| v & !(page_size - 1);
        let max_user_addr = space - page_size;
        // Room above the stack for the stub page and guard gaps: 1/64 of the
        // space, at most 128 GiB (2 TiB would be silly on 47 bits, 8 GiB on
        // 39 bits).
        let top_gap = |space: u64| align((space / 64).min(128 * GIB));
        // The stub sits in the middle of the host's top gap, at most 1 GiB
        // below the top: far enough from the very top that it does not
        // collide with the Sentry's own stack on a host without ASLR (the
        // stub page is mapped in the Sentry too, so every forked stub
        // inherits it).
        let stub_addr = align(max_user_addr - (top_gap(space) / 2).min(GIB));
        // The stack and the mmap base are placed as on a host of at most
        // PORTABLE_VA_BITS bits (the same addresses on every bigger host),
        // so that a sandbox fits the smallest host unless it maps higher
        // itself.
        let place = 1u64 << va_bits.min(PORTABLE_VA_BITS);
        let stack_top = (place - page_size) - top_gap(place);
        // The main stack may grow this far (RLIMIT_STACK-ish; Linux's mmap
        // gap is at least 128 MiB, 8 MiB default limit plus randomisation).
        let stack_gap = align((place / 32).min(8 * GIB));
        let mmap_base = stack_top - stack_gap;
        Ok(Layout {
            va_bits,
            max_user_addr,
            page_size,
            stub_addr,
            stack_top,
            mmap_base,
        })
    }

    /// The bits cryo's own placements use on this host: the host's, at most
    /// [`PORTABLE_VA_BITS`].
    pub fn placement_bits(&self) -> u32 {
        self.va_bits.min(PORTABLE_VA_BITS)
    }

    /// The exclusive end of the range cryo places things in itself
    /// (`2^placement_bits - page_size`): a PIE executable's default base is
    /// derived from it, as Linux derives ELF_ET_DYN_BASE from TASK_SIZE.
    pub fn placement_end(&self) -> u64 {
        (1u64 << self.placement_bits()) - self.page_size
    }

    /// The end of the stub page.
    pub fn stub_end(&self) -> u64 {
        self.stub_addr + self.page_size
    }

    /// Whether `[addr, addr + len)` is page aligned, inside usable user VA and
    /// clear of the stub page: a range the application may map.
    pub fn is_app_range(&self, addr: u64, len: u64) -> bool {
        let mask = self.page_size - 1;
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        addr & mask == 0
            && len & mask == 0
            && end <= self.max_user_addr
            && (end <= self.stub_addr || addr >= self.stub_end())
    }
}

/// The host's page size.
pub fn host_page_size() -> Result<u64, PlatformError> {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(size)) if size > 0 => Ok(size as u64),
        Ok(_) => Err(PlatformError::Layout(
            "sysconf(_SC_PAGESIZE) returned no value".into(),
        )),
        Err(source) => Err(PlatformError::Host {
            op: "sysconf(_SC_PAGESIZE)",
            source,
        }),
    }
}

/// Whether the page `[2^bits - 2 * page, 2^bits - page)` is usable.
fn probe_bits(bits: u32, page_size: u64) -> bool {
    let Some(space) = 1u64.checked_shl(bits) else {
        return false;
    };
    let Some(addr) = space.checked_sub(2 * page_size) else {
        return false;
    };
    if addr > usize::MAX as u64 {
        return false;
    }
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so this
    // either creates a fresh private PROT_NONE page (unmapped again below) or
    // fails; no Rust object can live at the probed address afterwards.
    let ptr = unsafe {
        libc::mmap(
            addr as usize as *mut libc::c_void,
            page_size as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_FIXED_NOREPLACE
                | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        let errno = nix::errno::Errno::last();
        tracing::trace!(bits, addr = format_args!("{addr:#x}"), %errno, "VA probe failed");
        // EEXIST: the address is valid but occupied, so it is usable.
        return errno == nix::errno::Errno::EEXIST;
    }
    let usable = ptr as u64 == addr;
    // SAFETY: `ptr` is the page this function just mapped; nothing refers to it.
    unsafe { libc::munmap(ptr, page_size as usize) };
    // A kernel older than 4.17 treats the flag as a hint and may place the
    // page elsewhere: that is not a proof of usability.
    usable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(layout: &Layout) {
        let bits = layout.va_bits;
        let page = layout.page_size;
        let space = 1u64 << bits;
        for v in [
            layout.max_user_addr,
            layout.stub_addr,
            layout.stack_top,
            layout.mmap_base,
        ] {
            assert_eq!(v % page, 0, "{v:#x} not page aligned in {layout:?}");
            assert!(v < space, "{v:#x} beyond 2^{bits} in {layout:?}");
        }
        assert!(
            layout.stub_end() < layout.max_user_addr,
            "no guard above the stub: {layout:?}"
        );
        assert!(
            layout.stub_addr > layout.stack_top,
            "stub below stack top: {layout:?}"
        );
        assert!(layout.stack_top > layout.mmap_base, "{layout:?}");
        // Room for a real stack and for real mmaps.
        assert!(
            layout.stack_top - layout.mmap_base >= 128 << 20,
            "{layout:?}"
        );
        let place = 1u64 << bits.min(PORTABLE_VA_BITS);
        assert!(layout.mmap_base >= place / 2, "{layout:?}");
        // Nothing cryo places lies above 2^39, so the sandbox fits a
        // 39-bit host.
        assert!(layout.stack_top < place, "{layout:?}");
        assert!(layout.placement_end() < place, "{layout:?}");
        assert!(!layout.is_app_range(layout.stub_addr, page));
        assert!(layout.is_app_range(layout.mmap_base - page, page));
        assert!(!layout.is_app_range(layout.max_user_addr, page));
    }

    #[test]
    fn layout_47_bits() {
        let l = Layout::for_va_bits(47, 4096).unwrap();
        assert_eq!(l.max_user_addr, 0x7fff_ffff_f000);
        check(&l);
    }

    #[test]
    fn a_47_bit_layout_fits_a_39_bit_host() {
        let big = Layout::for_va_bits(47, 4096).unwrap();
        let small = Layout::for_va_bits(39, 4096).unwrap();
        assert_eq!(big.stack_top, small.stack_top);
        assert_eq!(big.mmap_base, small.mmap_base);
        assert!(big.stack_top < small.stub_addr);
        // Above 2^39 the application may still map (MAP_FIXED, hints).
        assert!(big.is_app_range(1 << 40, 4096));
        assert!(!small.is_app_range(1 << 40, 4096));
    }

    #[test]
    fn layout_39_bits() {
        let l = Layout::for_va_bits(39, 4096).unwrap();
        assert_eq!(l.max_user_addr, (1 << 39) - 4096);
        check(&l);
        let l = Layout::for_va_bits(39, 65536).unwrap();
        check(&l);
    }

    #[test]
    fn layout_all_candidates() {
        for &bits in CANDIDATE_VA_BITS.iter().filter(|&&b| b <= 62) {
            for page in [4096, 16384, 65536] {
                check(&Layout::for_va_bits(bits, page).unwrap());
            }
        }
    }

    #[test]
    fn layout_rejects_nonsense() {
        assert!(Layout::for_va_bits(12, 4096).is_err());
        assert!(Layout::for_va_bits(64, 4096).is_err());
        assert!(Layout::for_va_bits(47, 4095).is_err());
        assert!(Layout::for_va_bits(47, 0).is_err());
    }

    #[test]
    fn probe_finds_this_host() {
        let l = Layout::probe().unwrap();
        check(&l);
        #[cfg(target_arch = "x86_64")]
        assert!(l.va_bits == 47 || l.va_bits == 56, "{l:?}");
    }
}
