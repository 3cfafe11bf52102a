//! An OCI bundle: its config.json read through oci-spec, checked, and
//! turned into what the sandbox boots (the process, the root, the mounts
//! cryo's VFS can serve; a warning naming each one it cannot).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capabilities, Mount, PosixRlimitType, Process, Spec};
use sentry::kernel::creds::{cap_by_name, CapSets, Credentials, CAP_NAMES};
use sentry::kernel::limits::Limit;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle {0}: no config.json in it")]
    NoConfig(PathBuf),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// serde's message with the path of the field that failed.
    #[error("{path}: field {field}: {message}")]
    Parse {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("config.json: {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> BundleError {
    BundleError::Invalid {
        field,
        message: message.into(),
    }
}

/// A mount cryo serves, in config.json's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountPlan {
    Tmpfs {
        dest: String,
        mode: u32,
        /// Its size, inode and owner options (Linux's tmpfs data).
        options: sentry::vfs::tmpfs::TmpfsOptions,
        read_only: bool,
    },
    /// A host directory served by a gofer of its own.
    Bind {
        dest: String,
        source: PathBuf,
        read_only: bool,
    },
    /// One host file: `name` in the directory `dir` a gofer serves.
    BindFile {
        dest: String,
        dir: PathBuf,
        name: String,
        read_only: bool,
    },
}

/// What the sandbox boots from a bundle.
#[derive(Clone, Debug)]
pub struct Plan {
    pub rootfs: PathBuf,
    pub root_read_only: bool,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub creds: Credentials,
    pub limits: Vec<(u32, Limit)>,
    pub no_new_privs: bool,
    pub terminal: bool,
    /// process.consoleSize: the terminal's first size.
    pub console_size: Option<ConsoleSize>,
    /// linux.resources.pids.limit, enforced as the sandbox's task limit.
    pub max_tasks: Option<usize>,
    /// linux.resources.memory.limit in bytes (None: no limit).
    pub memory_limit: Option<u64>,
    /// linux.cgroupsPath: the host cgroup the sandbox's processes join.
    pub cgroups_path: Option<String>,
    pub hostname: String,
    pub mounts: Vec<MountPlan>,
    pub annotations: std::collections::HashMap<String, String>,
    /// What config.json asks that cryo does not do, one line each.
    pub warnings: Vec<String>,
}

/// Reads `BUNDLE/config.json`; a field that does not parse is named.
pub fn load_spec(bundle: &Path) -> Result<Spec, BundleError> {
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            BundleError::NoConfig(bundle.to_path_buf())
        } else {
            BundleError::Io {
                path: path.clone(),
                error,
            }
        }
    })?;
    parse_spec(&path, &text)
}

pub fn parse_spec(path: &Path, text: &str) -> Result<Spec, BundleError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| BundleError::Parse {
        path: path.to_path_buf(),
        field: match e.path().to_string() {
            p if p == "." => "(top level)".into(),
            p => p,
        },
        message: e.inner().to_string(),
    })
}

fn rlimit_resource(t: PosixRlimitType) -> u32 {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// The process part of a config (init's, or `exec --process`'s).
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub creds: Credentials,
    pub limits: Vec<(u32, Limit)>,
    pub no_new_privs: bool,
    pub terminal: bool,
    pub console_size: Option<ConsoleSize>,
}

/// process.consoleSize, in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleSize {
    pub rows: u16,
    pub cols: u16,
}

fn console_size(p: &Process) -> Result<Option<ConsoleSize>, BundleError> {
    let Some(b) = p.console_size() else {
        return Ok(None);
    };
    let cell = |v: u64, field: &str| {
        u16::try_from(v).map_err(|_| {
            invalid(
                "process.consoleSize",
                format!("{field} {v} is more than {}", u16::MAX),
            )
        })
    };
    Ok(Some(ConsoleSize {
        rows: cell(b.height(), "height")?,
        cols: cell(b.width(), "width")?,
    }))
}

pub fn process_plan(p: &Process) -> Result<ProcessPlan, BundleError> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(invalid("process.args", "must name a program"));
    }
    let cwd = p.cwd().to_string_lossy().into_owned();
    if !cwd.starts_with('/') {
        return Err(invalid(
            "process.cwd",
            format!("{cwd:?} is not an absolute path"),
        ));
    }
    let env = p.env().clone().unwrap_or_default();
    for e in &env {
        if !e.contains('=') {
            return Err(invalid("process.env", format!("{e:?} is not KEY=VALUE")));
        }
    }
    let user = p.user();
    let mut creds = Credentials::with_ids(
        user.uid(),
        user.gid(),
        user.additional_gids().clone().unwrap_or_default(),
    );
    creds.caps = cap_sets(p)?;
    let mut limits = Vec::new();
    for r in p.rlimits().iter().flatten() {
        if r.soft() > r.hard() {
            return Err(invalid(
                "process.rlimits",
                format!(
                    "{:?}: soft limit {} above hard limit {}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                ),
            ));
        }
        limits.push((
            rlimit_resource(r.typ()),
            Limit {
                cur: r.soft(),
                max: r.hard(),
            },
        ));
    }
    Ok(ProcessPlan {
        args,
        env,
        cwd,
        creds,
        limits,
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        terminal: p.terminal().unwrap_or(false),
        console_size: console_size(p)?,
    })
}

/// One set of process.capabilities as a mask.
fn cap_mask(set: &Option<Capabilities>, field: &'static str) -> Result<u64, BundleError> {
    let mut mask = 0u64;
    for cap in set.iter().flatten() {
        // oci-spec's own name for it (CAP_...), which capabilities(7) uses.
        let name = serde_json::to_value(cap)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{cap:?}"));
        let n = cap_by_name(&name)
            .ok_or_else(|| invalid(field, format!("unknown capability {name}")))?;
        mask |= 1 << n;
    }
    Ok(mask)
}

fn cap_list(mask: u64) -> String {
    (0..CAP_NAMES.len())
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| CAP_NAMES[i])
        .collect::<Vec<_>>()
        .join(", ")
}

/// process.capabilities as the process holds them just before it executes
/// its program (the sandbox then applies execve's rules, as runc's process
/// goes through execve): the bounding set is set first, then effective,
/// permitted and inheritable as capset(2) would take them, then the
/// ambient set raised. A set capset or the ambient raise would refuse is
/// an error naming it, as runc's start fails on it. No capabilities:
/// runc's behaviour, the runtime's own sets (a root runtime's: every
/// capability its bounding set has), which execve leaves to root and
/// takes from any other user.
fn cap_sets(p: &Process) -> Result<CapSets, BundleError> {
    let Some(c) = p.capabilities() else {
        return Ok(CapSets::of_this_process());
    };
    let sets = CapSets {
        bounding: cap_mask(c.bounding(), "process.capabilities.bounding")?,
        effective: cap_mask(c.effective(), "process.capabilities.effective")?,
        permitted: cap_mask(c.permitted(), "process.capabilities.permitted")?,
        inheritable: cap_mask(c.inheritable(), "process.capabilities.inheritable")?,
        ambient: cap_mask(c.ambient(), "process.capabilities.ambient")?,
    };
    let beyond = |a: u64, b: u64| a & !b;
    let extra = beyond(sets.effective, sets.permitted);
    if extra != 0 {
        return Err(invalid(
            "process.capabilities.effective",
            format!("{} not in the permitted set", cap_list(extra)),
        ));
    }
    let extra = beyond(sets.inheritable, sets.bounding);
    if extra != 0 {
        return Err(invalid(
            "process.capabilities.inheritable",
            format!("{} not in the bounding set", cap_list(extra)),
        ));
    }
    let extra = beyond(sets.ambient, sets.permitted & sets.inheritable);
    if extra != 0 {
        return Err(invalid(
            "process.capabilities.ambient",
            format!(
                "{} not in both the permitted and inheritable sets",
                cap_list(extra)
            ),
        ));
    }
    Ok(sets)
}

fn mount_mode(options: &[String]) -> Result<Option<u32>, BundleError> {
    for o in options {
        if let Some(m) = o.strip_prefix("mode=") {
            return u32::from_str_radix(m, 8)
                .map(|m| Some(m & 0o7777))
                .map_err(|_| invalid("mounts", format!("option {o:?}: not an octal mode")));
        }
    }
    Ok(None)
}

/// The tmpfs data among a mount's options: the `key=value` ones Linux's
/// tmpfs reads (size=, nr_blocks=, nr_inodes=, mode=, uid=, gid=), each
/// checked as mount(2) would; mount flags (nosuid, ro, ...) are not data.
fn tmpfs_options(options: &[String]) -> Result<sentry::vfs::tmpfs::TmpfsOptions, BundleError> {
    const KEYS: [&str; 6] = ["size", "nr_blocks", "nr_inodes", "mode", "uid", "gid"];
    let data: Vec<&str> = options
        .iter()
        .map(String::as_str)
        .filter(|o| o.split_once('=').is_some_and(|(k, _)| KEYS.contains(&k)))
        .collect();
    for o in &data {
        sentry::vfs::tmpfs::TmpfsOptions::parse(o)
            .map_err(|e| invalid("mounts", format!("tmpfs option {o:?}: {e} (bad value)")))?;
    }
    sentry::vfs::tmpfs::TmpfsOptions::parse(&data.join(","))
        .map_err(|e| invalid("mounts", format!("tmpfs options {data:?}: {e}")))
}

/// What cryo does with one mount of config.json: a plan, nothing (what
/// cryo already mounts there), or a warning.
fn plan_mount(m: &Mount) -> Result<Result<Option<MountPlan>, String>, BundleError> {
    let dest = m.destination().to_string_lossy().into_owned();
    if !dest.starts_with('/') {
        return Err(invalid(
            "mounts",
            format!("destination {dest:?} is not an absolute path"),
        ));
    }
    let dest = normalize(&dest);
    let options = m.options().clone().unwrap_or_default();
    let read_only = options.iter().any(|o| o == "ro");
    let bind = options.iter().any(|o| o == "bind" || o == "rbind");
    let typ = m.typ().clone().unwrap_or_default();
    if bind || typ == "bind" {
        let Some(source) = m.source().clone() else {
            return Err(invalid(
                "mounts",
                format!("bind mount on {dest} has no source"),
            ));
        };
        let meta = std::fs::metadata(&source).map_err(|error| BundleError::Io {
            path: source.clone(),
            error,
        })?;
        if meta.is_file() {
            let source = std::fs::canonicalize(&source).map_err(|error| BundleError::Io {
                path: source.clone(),
                error,
            })?;
            let (Some(dir), Some(name)) = (source.parent(), source.file_name()) else {
                return Err(invalid(
                    "mounts",
                    format!("bind mount on {dest}: bad source"),
                ));
            };
            return Ok(Ok(Some(MountPlan::BindFile {
                dest,
                dir: dir.to_path_buf(),
                name: name.to_string_lossy().into_owned(),
                read_only,
            })));
        }
        if !meta.is_dir() {
            return Ok(Err(format!(
                "bind mount of {} on {dest}: only directories and regular files can be bind mounted; skipped",
                source.display()
            )));
        }
        return Ok(Ok(Some(MountPlan::Bind {
            dest,
            source,
            read_only,
        })));
    }
    Ok(match (typ.as_str(), dest.as_str()) {
        // cryo mounts its own devfs, /dev/shm and procfs there.
        ("proc", "/proc")
        | ("sysfs", "/sys")
        | ("tmpfs", "/dev")
        | ("tmpfs" | "shm", "/dev/shm") => Ok(None),
        ("tmpfs", _) => Ok(Some(MountPlan::Tmpfs {
            mode: mount_mode(&options)?.unwrap_or(0o1777),
            options: tmpfs_options(&options)?,
            dest,
            read_only,
        })),
        ("devpts" | "mqueue" | "sysfs" | "cgroup" | "cgroup2" | "proc", _) => Err(format!(
            "mount of type {typ} on {dest}: not in cryo's file system yet; skipped"
        )),
        _ => Err(format!(
            "mount of type {typ:?} on {dest}: cryo cannot mount this type; skipped"
        )),
    })
}

/// `/a//b/` → `/a/b`; `.` and `..` are refused by the VFS when mounting.
fn normalize(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

/// Checks the bundle's config and plans the sandbox.
pub fn plan(bundle: &Path) -> Result<Plan, BundleError> {
    let bundle = std::fs::canonicalize(bundle).map_err(|error| BundleError::Io {
        path: bundle.to_path_buf(),
        error,
    })?;
    let spec = load_spec(&bundle)?;
    plan_spec(&bundle, &spec)
}

pub fn plan_spec(bundle: &Path, spec: &Spec) -> Result<Plan, BundleError> {
    let mut warnings = Vec::new();
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    if !rootfs.is_dir() {
        return Err(invalid(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing"))?;
    let p = process_plan(process)?;
    let mut mounts = Vec::new();
    for m in spec.mounts().iter().flatten() {
        match plan_mount(m)? {
            Ok(Some(plan)) => mounts.push(plan),
            Ok(None) => {}
            Err(w) => warnings.push(w),
        }
    }
    let mut max_tasks = None;
    let mut memory_limit = None;
    if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        if let Some(mem) = res.memory() {
            // A negative limit (-1) means none, as for the memory cgroup.
            memory_limit = mem.limit().and_then(|l| u64::try_from(l).ok());
            let mut unenforced = Vec::new();
            let fields = [
                ("reservation", mem.reservation().is_some()),
                ("swap", mem.swap().is_some()),
                ("kernel", mem.kernel().is_some()),
                ("kernelTCP", mem.kernel_tcp().is_some()),
                ("swappiness", mem.swappiness().is_some()),
                ("disableOOMKiller", mem.disable_oom_killer() == Some(true)),
            ];
            for (name, set) in fields {
                if set {
                    unenforced.push(name);
                }
            }
            if !unenforced.is_empty() {
                warnings.push(format!(
                    "linux.resources.memory: {} not enforced by cryo (limit is)",
                    unenforced.join(", ")
                ));
            }
        }
        if let Some(pids) = res.pids() {
            // 0 and -1 mean no limit, as for the pids cgroup.
            if pids.limit() > 0 {
                max_tasks = Some(usize::try_from(pids.limit()).unwrap_or(usize::MAX));
            }
        }
        let mut ignored = Vec::new();
        if res.cpu().is_some() {
            ignored.push("cpu");
        }
        if res.block_io().is_some() {
            ignored.push("blockIO");
        }
        if res.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            ignored.push("devices");
        }
        if res.hugepage_limits().is_some() {
            ignored.push("hugepageLimits");
        }
        if res.network().is_some() {
            ignored.push("network");
        }
        if !ignored.is_empty() {
            warnings.push(format!(
                "linux.resources: {} not enforced by cryo yet (pids and memory are)",
                ignored.join(", ")
            ));
        }
    }
    Ok(Plan {
        rootfs,
        root_read_only: root.readonly().unwrap_or(false),
        args: p.args,
        env: p.env,
        cwd: p.cwd,
        creds: p.creds,
        limits: p.limits,
        no_new_privs: p.no_new_privs,
        terminal: p.terminal,
        console_size: p.console_size,
        max_tasks,
        memory_limit,
        cgroups_path: spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned()),
        hostname: spec.hostname().clone().unwrap_or_else(|| "cryo".into()),
        mounts,
        annotations: spec.annotations().clone().unwrap_or_default(),
        warnings,
    })
}

/// The config.json `cryo spec` writes: runc's default, with no terminal
/// (so that `run` and `create` need no console) and a hostname of cryo.
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_hostname(Some("cryo".into()));
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(false));
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_field_is_named() {
        let mut v = serde_json::to_value(default_spec()).unwrap();
        v["process"]["user"]["uid"] = serde_json::json!("root");
        let err = parse_spec(Path::new("config.json"), &v.to_string()).unwrap_err();
        assert!(err.to_string().contains("process.user.uid"), "{err}");
    }

    #[test]
    fn tmpfs_mount_options_give_its_limits() {
        let opts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = tmpfs_options(&opts(&[
            "nosuid",
            "size=65536k",
            "mode=1777",
            "nr_inodes=64",
            "strictatime",
        ]))
        .unwrap();
        assert_eq!(o.size, Some(sentry::vfs::tmpfs::TmpfsSize::Bytes(64 << 20)));
        assert_eq!(o.nr_inodes, Some(64));
        let err = tmpfs_options(&opts(&["size=12q"])).unwrap_err();
        assert!(err.to_string().contains("size=12q"), "{err}");
    }

    #[test]
    fn the_default_spec_plans() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        let plan = plan_spec(d.path(), &default_spec()).unwrap();
        assert_eq!(plan.args, ["sh"]);
        assert!(plan.root_read_only);
        assert_eq!(plan.rootfs, d.path().join("rootfs"));
        // /proc and /dev are cryo's own; devpts and the rest are named.
        assert!(plan
            .warnings
            .iter()
            .any(|w| w.contains("devpts") && w.contains("/dev/pts")));
        assert!(!plan
            .mounts
            .iter()
            .any(|m| matches!(m, MountPlan::Tmpfs { dest, .. } if dest == "/dev")));
    }

    #[test]
    fn invalid_configs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        let mut spec = default_spec();
        spec.process_mut().as_mut().unwrap().set_args(Some(vec![]));
        let err = plan_spec(d.path(), &spec).unwrap_err();
        assert!(err.to_string().contains("process.args"), "{err}");
        let mut spec = default_spec();
        spec.process_mut()
            .as_mut()
            .unwrap()
            .set_cwd("relative".into());
        let err = plan_spec(d.path(), &spec).unwrap_err();
        assert!(err.to_string().contains("process.cwd"), "{err}");
        let err = plan_spec(&d.path().join("nowhere"), &default_spec()).unwrap_err();
        assert!(err.to_string().contains("root.path"), "{err}");
    }
}
