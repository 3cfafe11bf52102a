//! The CPU features a sandbox sees (`--cpu-features`), and the `cpuid` it
//! runs.
//!
//! A sandbox sees either the host's CPU as it is (`host`, the default:
//! `cpuid` runs natively) or a named x86-64 psABI level (`x86-64`,
//! `x86-64-v2`, `-v3`, `-v4`): the host's answers with every feature bit
//! the level does not name cleared. The stubs then make `cpuid` fault
//! (CPUID faulting) and the Sentry answers it from the masked set; the auxv
//! (AT_HWCAP, AT_HWCAP2) and /proc/cpuinfo's flags say the same. What a
//! sandbox saw is what its statefile records (header `cpu.*`), so a restore
//! onto a host that lacks one of those features is refused by name, and a
//! sandbox booted with a smaller level restores on a smaller CPU.

use std::collections::BTreeMap;
use std::fmt;

/// A register of a `cpuid` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

impl Reg {
    fn name(self) -> &'static str {
        match self {
            Reg::Eax => "eax",
            Reg::Ebx => "ebx",
            Reg::Ecx => "ecx",
            Reg::Edx => "edx",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One 32-bit register of one leaf that holds feature bits. `subleaf`
/// None: the leaf ignores ECX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word {
    pub leaf: u32,
    pub subleaf: Option<u32>,
    pub reg: Reg,
}

impl Word {
    /// `1.ecx`, `7.0.ebx`, `0x80000001.edx`: how a statefile names it.
    fn key(&self) -> String {
        let leaf = if self.leaf >= 0x8000_0000 {
            format!("{:#x}", self.leaf)
        } else {
            format!("{:x}", self.leaf)
        };
        match self.subleaf {
            Some(s) => format!("{leaf}.{s}.{}", self.reg.name()),
            None => format!("{leaf}.{}", self.reg.name()),
        }
    }

    fn matches(&self, leaf: u32, subleaf: u32) -> bool {
        self.leaf == leaf && self.subleaf.is_none_or(|s| s == subleaf)
    }
}

const fn word(leaf: u32, subleaf: Option<u32>, reg: Reg) -> Word {
    Word { leaf, subleaf, reg }
}

/// The feature words a sandbox's view masks, records and checks.
pub const WORDS: [Word; 9] = [
    word(1, None, Reg::Ecx),
    word(1, None, Reg::Edx),
    word(7, Some(0), Reg::Ebx),
    word(7, Some(0), Reg::Ecx),
    word(7, Some(0), Reg::Edx),
    word(7, Some(1), Reg::Eax),
    word(0xd, Some(1), Reg::Eax),
    word(0x8000_0001, None, Reg::Ecx),
    word(0x8000_0001, None, Reg::Edx),
];
const W1C: usize = 0;
const W1D: usize = 1;
const W7B: usize = 2;
const W7C: usize = 3;
const W7D: usize = 4;
const W71A: usize = 5;
const WD1A: usize = 6;
const W81C: usize = 7;
const W81D: usize = 8;

/// Where a named feature sits and which level brings it.
struct Feature {
    /// Linux's /proc/cpuinfo name.
    name: &'static str,
    word: usize,
    bit: u8,
    level: Level,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Part of x86-64 psABI level N (1 is the baseline): every profile of
    /// that level or above shows it.
    Abi(u8),
    /// Hardware every x86-64 CPU has in practice though psABI names none
    /// of it (TSC, PAT, CLFLUSH, NX, ...): every profile shows it where the
    /// host has it, none requires it, and a restore checks for it.
    Base,
    /// An instruction-set feature no level names: only `host` shows it, and
    /// a restore checks for it.
    Extra,
    /// What the machine or the host kernel is rather than an instruction
    /// the application can use (hypervisor, APIC, mitigations, performance
    /// hints): only `host` shows it, and a restore does not ask for it.
    Info,
}

const fn f(name: &'static str, word: usize, bit: u8, level: Level) -> Feature {
    Feature {
        name,
        word,
        bit,
        level,
    }
}

use Level::{Abi, Base, Extra, Info};

/// The named feature bits, in /proc/cpuinfo's order.
const FEATURES: &[Feature] = &[
    f("fpu", W1D, 0, Abi(1)),
    f("vme", W1D, 1, Base),
    f("de", W1D, 2, Base),
    f("pse", W1D, 3, Base),
    f("tsc", W1D, 4, Base),
    f("msr", W1D, 5, Base),
    f("pae", W1D, 6, Base),
    f("mce", W1D, 7, Base),
    f("cx8", W1D, 8, Abi(1)),
    f("apic", W1D, 9, Base),
    f("sep", W1D, 11, Base),
    f("mtrr", W1D, 12, Base),
    f("pge", W1D, 13, Base),
    f("mca", W1D, 14, Base),
    f("cmov", W1D, 15, Abi(1)),
    f("pat", W1D, 16, Base),
    f("pse36", W1D, 17, Base),
    f("clflush", W1D, 19, Base),
    f("dts", W1D, 21, Info),
    f("acpi", W1D, 22, Info),
    f("mmx", W1D, 23, Abi(1)),
    f("fxsr", W1D, 24, Abi(1)),
    f("sse", W1D, 25, Abi(1)),
    f("sse2", W1D, 26, Abi(1)),
    f("ss", W1D, 27, Info),
    f("ht", W1D, 28, Info),
    f("tm", W1D, 29, Info),
    f("pbe", W1D, 31, Info),
    f("syscall", W81D, 11, Abi(1)),
    f("nx", W81D, 20, Base),
    f("mmxext", W81D, 22, Extra),
    f("fxsr_opt", W81D, 25, Info),
    f("pdpe1gb", W81D, 26, Info),
    f("rdtscp", W81D, 27, Extra),
    f("lm", W81D, 29, Abi(1)),
    f("3dnowext", W81D, 30, Extra),
    f("3dnow", W81D, 31, Extra),
    f("pni", W1C, 0, Abi(2)),
    f("pclmulqdq", W1C, 1, Extra),
    f("dtes64", W1C, 2, Info),
    f("monitor", W1C, 3, Info),
    f("ds_cpl", W1C, 4, Info),
    f("vmx", W1C, 5, Info),
    f("smx", W1C, 6, Info),
    f("est", W1C, 7, Info),
    f("tm2", W1C, 8, Info),
    f("ssse3", W1C, 9, Abi(2)),
    f("cid", W1C, 10, Info),
    f("sdbg", W1C, 11, Info),
    f("fma", W1C, 12, Abi(3)),
    f("cx16", W1C, 13, Abi(2)),
    f("xtpr", W1C, 14, Info),
    f("pdcm", W1C, 15, Info),
    f("pcid", W1C, 17, Info),
    f("dca", W1C, 18, Info),
    f("sse4_1", W1C, 19, Abi(2)),
    f("sse4_2", W1C, 20, Abi(2)),
    f("x2apic", W1C, 21, Info),
    f("movbe", W1C, 22, Abi(3)),
    f("popcnt", W1C, 23, Abi(2)),
    f("tsc_deadline_timer", W1C, 24, Info),
    f("aes", W1C, 25, Extra),
    f("xsave", W1C, 26, Abi(3)),
    // Linux does not print OSXSAVE; glibc needs it (with XGETBV) before
    // it uses AVX, and psABI's v3 names it.
    f("osxsave", W1C, 27, Abi(3)),
    f("avx", W1C, 28, Abi(3)),
    f("f16c", W1C, 29, Abi(3)),
    f("rdrand", W1C, 30, Extra),
    f("hypervisor", W1C, 31, Info),
    f("lahf_lm", W81C, 0, Abi(2)),
    f("cmp_legacy", W81C, 1, Info),
    f("svm", W81C, 2, Info),
    f("extapic", W81C, 3, Info),
    f("cr8_legacy", W81C, 4, Info),
    f("abm", W81C, 5, Abi(3)),
    f("sse4a", W81C, 6, Extra),
    f("misalignsse", W81C, 7, Extra),
    f("3dnowprefetch", W81C, 8, Extra),
    f("xop", W81C, 11, Extra),
    f("fma4", W81C, 16, Extra),
    f("tbm", W81C, 21, Extra),
    f("topoext", W81C, 22, Info),
    f("perfctr_core", W81C, 23, Info),
    f("mwaitx", W81C, 29, Info),
    f("fsgsbase", W7B, 0, Extra),
    f("tsc_adjust", W7B, 1, Info),
    f("bmi1", W7B, 3, Abi(3)),
    f("hle", W7B, 4, Extra),
    f("avx2", W7B, 5, Abi(3)),
    f("smep", W7B, 7, Info),
    f("bmi2", W7B, 8, Abi(3)),
    f("erms", W7B, 9, Info),
    f("invpcid", W7B, 10, Info),
    f("rtm", W7B, 11, Extra),
    f("mpx", W7B, 14, Extra),
    f("avx512f", W7B, 16, Abi(4)),
    f("avx512dq", W7B, 17, Abi(4)),
    f("rdseed", W7B, 18, Extra),
    f("adx", W7B, 19, Extra),
    f("smap", W7B, 20, Info),
    f("avx512ifma", W7B, 21, Extra),
    f("clflushopt", W7B, 23, Extra),
    f("clwb", W7B, 24, Extra),
    f("intel_pt", W7B, 25, Info),
    f("avx512pf", W7B, 26, Extra),
    f("avx512er", W7B, 27, Extra),
    f("avx512cd", W7B, 28, Abi(4)),
    f("sha_ni", W7B, 29, Extra),
    f("avx512bw", W7B, 30, Abi(4)),
    f("avx512vl", W7B, 31, Abi(4)),
    f("xsaveopt", WD1A, 0, Extra),
    f("xsavec", WD1A, 1, Extra),
    f("xgetbv1", WD1A, 2, Extra),
    f("xsaves", WD1A, 3, Info),
    f("avx_vnni", W71A, 4, Extra),
    f("avx512_bf16", W71A, 5, Extra),
    f("avx_ifma", W71A, 23, Extra),
    f("avx512vbmi", W7C, 1, Extra),
    f("umip", W7C, 2, Info),
    f("pku", W7C, 3, Extra),
    f("ospke", W7C, 4, Extra),
    f("waitpkg", W7C, 5, Extra),
    f("avx512_vbmi2", W7C, 6, Extra),
    f("gfni", W7C, 8, Extra),
    f("vaes", W7C, 9, Extra),
    f("vpclmulqdq", W7C, 10, Extra),
    f("avx512_vnni", W7C, 11, Extra),
    f("avx512_bitalg", W7C, 12, Extra),
    f("avx512_vpopcntdq", W7C, 14, Extra),
    f("la57", W7C, 16, Info),
    f("rdpid", W7C, 22, Extra),
    f("cldemote", W7C, 25, Extra),
    f("movdiri", W7C, 27, Extra),
    f("movdir64b", W7C, 28, Extra),
    f("enqcmd", W7C, 29, Extra),
    f("avx512_4vnniw", W7D, 2, Extra),
    f("avx512_4fmaps", W7D, 3, Extra),
    f("fsrm", W7D, 4, Info),
    f("avx512_vp2intersect", W7D, 8, Extra),
    f("md_clear", W7D, 10, Info),
    f("serialize", W7D, 14, Extra),
    f("hybrid_cpu", W7D, 15, Info),
    f("tsxldtrk", W7D, 16, Extra),
    f("pconfig", W7D, 18, Info),
    f("ibt", W7D, 20, Info),
    f("amx_bf16", W7D, 22, Extra),
    f("avx512_fp16", W7D, 23, Extra),
    f("amx_tile", W7D, 24, Extra),
    f("amx_int8", W7D, 25, Extra),
    f("spec_ctrl", W7D, 26, Info),
    f("intel_stibp", W7D, 27, Info),
    f("flush_l1d", W7D, 28, Info),
    f("arch_capabilities", W7D, 29, Info),
    f("spec_ctrl_ssbd", W7D, 31, Info),
];

/// XSAVE state components (XCR0 bits) each level brings: x87 and SSE for
/// the baseline and v2, AVX for v3, AVX-512's opmask, ZMM_Hi256 and
/// Hi16_ZMM for v4.
fn level_xcr0(level: u8) -> u64 {
    match level {
        0..=2 => 0x3,
        3 => 0x7,
        _ => 0xe7,
    }
}

/// What `--cpu-features` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// The host's CPU as it is.
    Host,
    /// x86-64 psABI level 1 (`x86-64`) to 4 (`x86-64-v4`).
    Level(u8),
}

/// The names `--cpu-features` takes.
pub const PROFILE_NAMES: &str = "host, x86-64, x86-64-v2, x86-64-v3, x86-64-v4";

impl Profile {
    pub fn parse(name: &str) -> Result<Profile, CpuError> {
        match name {
            "host" => Ok(Profile::Host),
            "x86-64" | "x86-64-v1" => Ok(Profile::Level(1)),
            "x86-64-v2" => Ok(Profile::Level(2)),
            "x86-64-v3" => Ok(Profile::Level(3)),
            "x86-64-v4" => Ok(Profile::Level(4)),
            other => Err(CpuError::UnknownProfile(other.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::Host => "host",
            Profile::Level(1) => "x86-64",
            Profile::Level(2) => "x86-64-v2",
            Profile::Level(3) => "x86-64-v3",
            Profile::Level(_) => "x86-64-v4",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a feature set cannot be had or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuError {
    #[error("unknown CPU feature profile {0:?} (known: {PROFILE_NAMES})")]
    UnknownProfile(String),
    #[error("--cpu-features={profile}: this host's CPU lacks {missing}, which {profile} requires")]
    HostTooSmall { profile: String, missing: String },
    #[error("--cpu-features={profile}: this host cannot intercept cpuid ({why}); only --cpu-features=host runs here")]
    NoFaulting { profile: String, why: String },
    #[error("statefile header {key}: {why}")]
    BadRecord { key: &'static str, why: String },
}

/// The header keys a statefile records the features under.
pub const KEY_PROFILE: &str = "cpu.profile";
pub const KEY_FEATURES: &str = "cpu.features";
pub const KEY_CPUID: &str = "cpu.cpuid";
pub const KEY_XCR0: &str = "cpu.xcr0";

/// The CPU a sandbox sees: its profile's name, the feature words of its
/// `cpuid` and the XSAVE components it may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    /// The profile the sandbox was booted with (`host`, `x86-64-v2`, ...).
    pub profile: String,
    /// The feature words' values, in [`WORDS`]' order.
    pub words: [u32; WORDS.len()],
    /// XCR0 as cpuid leaf 0xD shows it.
    pub xcr0: u64,
    /// `cpuid` faults and the Sentry answers it; false: it runs natively
    /// (the sandbox sees exactly the host).
    pub emulated: bool,
    /// XBEGIN aborts at once on this CPU although cpuid shows no RTM: the
    /// host kernel switched TSX off through MSR_IA32_TSX_CTRL (its
    /// `tsx=off`, the TAA mitigation), or cpuid says RTM_ALWAYS_ABORT.
    /// Only meaningful for the host's own set.
    pub rtm_aborts: bool,
}

/// See [`CpuFeatures::rtm_aborts`]. Linux reports its switching TSX off
/// as the TAA mitigation in sysfs.
fn host_rtm_aborts() -> bool {
    const RTM_ALWAYS_ABORT: u32 = 1 << 11;
    if host_has_leaf(7) && host_cpuid(7, 0)[3] & RTM_ALWAYS_ABORT != 0 {
        return true;
    }
    std::fs::read_to_string("/sys/devices/system/cpu/vulnerabilities/tsx_async_abort")
        .is_ok_and(|s| s.trim() == "Mitigation: TSX disabled")
}

fn host_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = std::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Whether `leaf` exists on this CPU (its range's maximum reaches it).
fn host_has_leaf(leaf: u32) -> bool {
    let max = host_cpuid(leaf & 0x8000_0000, 0)[0];
    leaf <= max
}

fn host_words() -> [u32; WORDS.len()] {
    let mut out = [0u32; WORDS.len()];
    for (i, w) in WORDS.iter().enumerate() {
        if host_has_leaf(w.leaf) && (w.leaf != 7 || w.subleaf.unwrap_or(0) <= host_cpuid(7, 0)[0]) {
            out[i] = host_cpuid(w.leaf, w.subleaf.unwrap_or(0))[w.reg.index()];
        }
    }
    out
}

/// The bits `level` shows in each word (where the host has them), or with
/// `required` only those the level requires.
fn level_mask(level: u8, required: bool) -> [u32; WORDS.len()] {
    let mut mask = [0u32; WORDS.len()];
    for feat in FEATURES {
        let shown = match feat.level {
            Abi(l) => l <= level,
            Base => !required,
            Extra | Info => false,
        };
        if shown {
            mask[feat.word] |= 1 << feat.bit;
        }
    }
    mask
}

impl CpuFeatures {
    /// The host's CPU as it is: cpuid runs natively.
    pub fn host() -> CpuFeatures {
        CpuFeatures {
            profile: Profile::Host.name().to_string(),
            words: host_words(),
            xcr0: platform::host_xfeatures(),
            emulated: false,
            rtm_aborts: host_rtm_aborts(),
        }
    }

    /// What `profile` shows on this host, refused if the host lacks a
    /// feature the profile requires. Whether cpuid can be intercepted here
    /// is the caller's to check ([`CpuFeatures::require_faulting`]).
    pub fn for_profile(profile: Profile) -> Result<CpuFeatures, CpuError> {
        CpuFeatures::host().profile_on(profile)
    }

    /// What `profile` shows on a host whose CPU is this set.
    fn profile_on(&self, profile: Profile) -> Result<CpuFeatures, CpuError> {
        let host = self.clone();
        let Profile::Level(level) = profile else {
            return Ok(host);
        };
        let masked = host.masked_to(level);
        let wanted = CpuFeatures {
            words: level_mask(level, true),
            xcr0: level_xcr0(level),
            ..masked.clone()
        };
        let missing = wanted.missing_on(&host);
        if !missing.is_empty() {
            return Err(CpuError::HostTooSmall {
                profile: profile.name().to_string(),
                missing: missing.join(", "),
            });
        }
        Ok(masked)
    }

    /// This set cut down to psABI `level`: what a host of that level shows
    /// (also how a test simulates a smaller host).
    pub fn masked_to(&self, level: u8) -> CpuFeatures {
        let mask = level_mask(level, false);
        let mut words = self.words;
        for (w, m) in words.iter_mut().zip(mask) {
            *w &= m;
        }
        CpuFeatures {
            profile: Profile::Level(level).name().to_string(),
            words,
            xcr0: self.xcr0 & level_xcr0(level),
            emulated: true,
            rtm_aborts: self.rtm_aborts,
        }
    }

    /// Refuses a set that needs cpuid intercepted on a host that cannot.
    pub fn require_faulting(&self) -> Result<(), CpuError> {
        if !self.emulated {
            return Ok(());
        }
        platform::cpuid_faulting_supported().map_err(|why| CpuError::NoFaulting {
            profile: self.profile.clone(),
            why,
        })
    }

    /// What `cpuid` with EAX = `leaf`, ECX = `subleaf` answers in the
    /// sandbox: the host's answer, its feature words masked, leaf 0xD's
    /// XSAVE components cut to the set's.
    pub fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let mut r = host_cpuid(leaf, subleaf);
        for (w, &value) in WORDS.iter().zip(&self.words) {
            if w.matches(leaf, subleaf) {
                r[w.reg.index()] &= value;
            }
        }
        if leaf == 0xd {
            match subleaf {
                0 => {
                    r[0] &= self.xcr0 as u32;
                    r[3] &= (self.xcr0 >> 32) as u32;
                }
                1 => {}
                i if i < 64 && self.xcr0 & (1 << i) == 0 => r = [0; 4],
                _ => {}
            }
        }
        r
    }

    /// AT_HWCAP on x86_64: cpuid leaf 1's EDX.
    pub fn hwcap(&self) -> u64 {
        u64::from(self.words[W1D])
    }

    /// AT_HWCAP2: HWCAP2_FSGSBASE (bit 1) where the host kernel enables it
    /// and the set shows fsgsbase.
    pub fn hwcap2(&self) -> u64 {
        const HWCAP2_FSGSBASE: u64 = 1 << 1;
        let host = platform::host_hwcap2();
        if self.words[W7B] & 1 != 0 {
            host & HWCAP2_FSGSBASE
        } else {
            0
        }
    }

    fn has(&self, feat: &Feature) -> bool {
        self.words[feat.word] & (1 << feat.bit) != 0
    }

    /// The named features the set shows, in /proc/cpuinfo's order.
    pub fn flags(&self) -> Vec<&'static str> {
        FEATURES
            .iter()
            .filter(|feat| self.has(feat))
            .map(|feat| feat.name)
            .collect()
    }

    /// What this set shows that `host` lacks, by name: instruction-set
    /// features (not the machine's own bits: hypervisor, APIC,
    /// mitigations) and XSAVE state components. Empty: a sandbox that saw
    /// this set can run on `host`.
    /// Whether an application that saw `feat` goes on correctly on this
    /// host without it. HLE's XACQUIRE/XRELEASE are prefixes that a CPU
    /// without HLE executes as the plain instruction (Intel SDM vol. 1,
    /// 16.3: HLE is backward compatible). RTM where [`Self::rtm_aborts`]:
    /// XBEGIN aborts at once and the application takes the fallback path
    /// every transaction must have. Hypervisors move VMs across TSX hosts
    /// by the same two rules.
    fn may_lack(&self, feat: &Feature) -> bool {
        match feat.name {
            "hle" => true,
            "rtm" => self.rtm_aborts,
            _ => false,
        }
    }

    pub fn missing_on(&self, host: &CpuFeatures) -> Vec<String> {
        let mut out: Vec<String> = FEATURES
            .iter()
            .filter(|feat| {
                feat.level != Info && self.has(feat) && !host.has(feat) && !host.may_lack(feat)
            })
            .map(|feat| feat.name.to_string())
            .collect();
        let comps = self.xcr0 & !host.xcr0;
        for bit in 0..64 {
            if comps & (1 << bit) != 0 {
                out.push(format!("XSAVE component {bit} ({})", xsave_component(bit)));
            }
        }
        out
    }

    /// The header entries a statefile records this set under.
    pub fn to_metadata(&self) -> Vec<(&'static str, String)> {
        let cpuid = WORDS
            .iter()
            .zip(&self.words)
            .map(|(w, v)| format!("{}={v:#010x}", w.key()))
            .collect::<Vec<_>>()
            .join(" ");
        vec![
            (KEY_PROFILE, self.profile.clone()),
            (KEY_FEATURES, self.flags().join(" ")),
            (KEY_CPUID, cpuid),
            (KEY_XCR0, format!("{:#x}", self.xcr0)),
        ]
    }

    /// The set a statefile's header records, checked: None for a statefile
    /// from before cryo recorded one. The words are the record; the
    /// feature names are for people. Whether cpuid must be emulated is
    /// decided against this host: unless it shows exactly what the host
    /// does, it is.
    pub fn from_metadata(
        metadata: &BTreeMap<String, String>,
    ) -> Result<Option<CpuFeatures>, CpuError> {
        let Some(cpuid) = metadata.get(KEY_CPUID) else {
            return Ok(None);
        };
        let bad = |key, why: String| CpuError::BadRecord { key, why };
        let profile = metadata
            .get(KEY_PROFILE)
            .ok_or_else(|| bad(KEY_PROFILE, "missing".into()))?;
        Profile::parse(profile).map_err(|e| bad(KEY_PROFILE, e.to_string()))?;
        let mut words = [0u32; WORDS.len()];
        let mut seen = [false; WORDS.len()];
        for item in cpuid.split_whitespace() {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad(KEY_CPUID, format!("{item:?} is not KEY=VALUE")))?;
            let i = WORDS.iter().position(|w| w.key() == key).ok_or_else(|| {
                bad(
                    KEY_CPUID,
                    format!("feature word {key:?} is unknown to this cryo"),
                )
            })?;
            if seen[i] {
                return Err(bad(KEY_CPUID, format!("{key} given twice")));
            }
            let hex = value
                .strip_prefix("0x")
                .ok_or_else(|| bad(KEY_CPUID, format!("{key}: {value:?} is not hexadecimal")))?;
            words[i] = u32::from_str_radix(hex, 16)
                .map_err(|e| bad(KEY_CPUID, format!("{key}: {value:?}: {e}")))?;
            seen[i] = true;
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(bad(KEY_CPUID, format!("no {}", WORDS[i].key())));
        }
        let xcr0 = metadata
            .get(KEY_XCR0)
            .ok_or_else(|| bad(KEY_XCR0, "missing".into()))?;
        let xcr0 = xcr0
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| bad(KEY_XCR0, format!("{xcr0:?} is not a hexadecimal u64")))?;
        let host = CpuFeatures::host();
        Ok(Some(CpuFeatures {
            profile: profile.clone(),
            emulated: words != host.words || xcr0 != host.xcr0,
            words,
            xcr0,
            rtm_aborts: false,
        }))
    }
}

/// An XSAVE state component's name (Intel SDM vol. 1, 13.1).
fn xsave_component(bit: u32) -> &'static str {
    match bit {
        0 => "x87",
        1 => "SSE",
        2 => "AVX",
        3 => "MPX BNDREGS",
        4 => "MPX BNDCSR",
        5 => "AVX-512 opmask",
        6 => "AVX-512 ZMM_Hi256",
        7 => "AVX-512 Hi16_ZMM",
        8 => "PT",
        9 => "PKRU",
        11 => "CET user",
        12 => "CET supervisor",
        13 => "HDC",
        14 => "UINTR",
        15 => "LBR",
        16 => "HWP",
        17 => "AMX TILECFG",
        18 => "AMX TILEDATA",
        _ => "unknown",
    }
}

/// The two bytes of the `cpuid` instruction.
pub const CPUID_INSN: [u8; 2] = [0x0f, 0xa2];

/// Answers an emulated `cpuid` in `regs` (stopped on it: rip at the
/// instruction): EAX, EBX, ECX, EDX set as the set says, rip past it.
pub fn emulate(set: &CpuFeatures, regs: &mut platform::Registers) {
    let r = set.cpuid(regs.rax as u32, regs.rcx as u32);
    regs.rax = u64::from(r[0]);
    regs.rbx = u64::from(r[1]);
    regs.rcx = u64::from(r[2]);
    regs.rdx = u64::from(r[3]);
    regs.rip = regs.rip.wrapping_add(CPUID_INSN.len() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_and_name_themselves() {
        for name in ["host", "x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"] {
            assert_eq!(Profile::parse(name).unwrap().name(), name);
        }
        let err = Profile::parse("x86-64-v5").unwrap_err().to_string();
        assert!(
            err.contains("x86-64-v5") && err.contains("x86-64-v2"),
            "{err}"
        );
    }

    #[test]
    fn levels_nest_and_v2_hides_avx() {
        let host = CpuFeatures::host();
        let v2 = host.masked_to(2);
        let v3 = host.masked_to(3);
        for (a, b) in v2.words.iter().zip(&v3.words) {
            assert_eq!(a & !b, 0, "v2 shows more than v3");
        }
        assert!(!v2.flags().contains(&"avx2"));
        assert!(!v2.flags().contains(&"avx"));
        assert!(!v2.flags().contains(&"osxsave"));
        assert_eq!(v2.xcr0 & !0x3, 0);
        // What v2 shows, the host has.
        assert!(v2.missing_on(&host).is_empty());
        let leaf7 = v2.cpuid(7, 0);
        assert_eq!(leaf7[1] & (1 << 5), 0, "AVX2 in leaf 7 EBX");
        let xsave = v2.cpuid(0xd, 2);
        assert_eq!(xsave, [0; 4], "the AVX component's leaf");
        assert_eq!(v2.hwcap2(), 0);
    }

    #[test]
    fn the_host_set_is_the_hosts_cpuid() {
        let host = CpuFeatures::host();
        assert!(!host.emulated);
        for leaf in [0u32, 1, 7, 0xd, 0x8000_0000, 0x8000_0001] {
            let mut want = host_cpuid(leaf, 0);
            let got = host.cpuid(leaf, 0);
            // Leaf 1 EBX holds the APIC id of whichever CPU answered.
            if leaf == 1 {
                want[1] &= 0x00ff_ffff;
                assert_eq!([got[0], got[1] & 0x00ff_ffff, got[2], got[3]], want);
            } else {
                assert_eq!(got, want, "leaf {leaf:#x}");
            }
        }
        assert_eq!(host.hwcap(), u64::from(host_cpuid(1, 0)[3]));
    }

    #[test]
    fn a_bigger_set_is_refused_by_name() {
        let host = CpuFeatures::host();
        let v1 = host.masked_to(1);
        let mut bigger = v1.clone();
        bigger.words[W7B] |= 1 << 5;
        bigger.xcr0 |= 0x4;
        let missing = bigger.missing_on(&v1);
        assert_eq!(missing, ["avx2", "XSAVE component 2 (AVX)"]);
        // The machine's own bits are not asked for.
        let mut vm = v1.clone();
        vm.words[W1C] |= 1 << 31;
        assert!(vm.missing_on(&v1).is_empty());
    }

    #[test]
    fn tsx_is_asked_for_only_where_its_absence_would_show() {
        let mut host = CpuFeatures::host().masked_to(1);
        host.rtm_aborts = false;
        let mut tsx = host.clone();
        tsx.words[W7B] |= (1 << 4) | (1 << 11); // hle, rtm
                                                // HLE's prefixes run anywhere; XBEGIN faults where TSX never was.
        assert_eq!(tsx.missing_on(&host), ["rtm"]);
        // Where the host switched TSX off, XBEGIN aborts: nothing missing.
        host.rtm_aborts = true;
        assert!(tsx.missing_on(&host).is_empty());
        // Other features are still asked for.
        tsx.words[W7B] |= 1 << 5;
        assert_eq!(tsx.missing_on(&host), ["avx2"]);
    }

    #[test]
    fn a_level_requires_only_what_psabi_names() {
        let host = CpuFeatures::host();
        // A (virtual) CPU without MCA and MTRR is still x86-64-v2, and the
        // level shows neither.
        let mut vm = host.clone();
        vm.words[W1D] &= !(1 << 14 | 1 << 12);
        let v2 = vm.profile_on(Profile::Level(2)).unwrap();
        assert!(!v2.flags().contains(&"mca") && v2.flags().contains(&"sse2"));
        // One without SSE4.2 is not, and says so.
        let mut old = host.clone();
        old.words[W1C] &= !(1 << 20);
        let err = old.profile_on(Profile::Level(2)).unwrap_err().to_string();
        assert!(err.contains("sse4_2") && err.contains("x86-64-v2"), "{err}");
        assert!(old.profile_on(Profile::Level(1)).is_ok());
    }

    #[test]
    fn metadata_round_trips() {
        let v3 = CpuFeatures::host().masked_to(3);
        let md: BTreeMap<String, String> = v3
            .to_metadata()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let back = CpuFeatures::from_metadata(&md).unwrap().unwrap();
        assert_eq!(back.words, v3.words);
        assert_eq!(back.xcr0, v3.xcr0);
        assert_eq!(back.profile, "x86-64-v3");
        assert!(CpuFeatures::from_metadata(&BTreeMap::new())
            .unwrap()
            .is_none());
    }

    #[test]
    fn hostile_metadata_is_refused() {
        let good: BTreeMap<String, String> = CpuFeatures::host()
            .masked_to(2)
            .to_metadata()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let cpuid = good[KEY_CPUID].clone();
        let first = cpuid.split_whitespace().next().unwrap().to_string();
        let cases: Vec<(&str, &str, String)> = vec![
            ("no profile", KEY_PROFILE, String::new()),
            ("bad profile", KEY_PROFILE, "pentium".into()),
            ("word twice", KEY_CPUID, format!("{cpuid} {first}")),
            ("word missing", KEY_CPUID, cpuid.replacen(&first, "", 1)),
            (
                "unknown word",
                KEY_CPUID,
                format!("{cpuid} 99.ebx=0x00000001"),
            ),
            ("not hex", KEY_CPUID, cpuid.replacen("=0x", "=", 1)),
            ("too big", KEY_CPUID, cpuid.replacen("=0x", "=0x1", 1)),
            ("no equals", KEY_CPUID, format!("{cpuid} junk")),
            ("xcr0 junk", KEY_XCR0, "0xzz".into()),
            ("xcr0 huge", KEY_XCR0, "0x10000000000000000".into()),
        ];
        for (what, key, value) in cases {
            let mut md = good.clone();
            if what == "no profile" {
                md.remove(KEY_PROFILE);
            } else {
                md.insert(key.to_string(), value);
            }
            let err = CpuFeatures::from_metadata(&md);
            assert!(
                matches!(err, Err(CpuError::BadRecord { .. })),
                "{what}: {err:?}"
            );
        }
    }
}
