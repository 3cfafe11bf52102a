//! The identity of an OCI container: what of its bundle the application
//! inside can notice (its root's read-only flag, its hostname, its mounts
//! as cryo serves them, its init's cwd and ids). A checkpoint records it
//! in the statefile's header metadata (key [`METADATA_KEY`], a versioned
//! JSON value), beside the platform and CPU features a restore already
//! checks there. A restore into a bundle whose identity differs is refused,
//! naming each difference: the restored application would find its
//! mounts or its root not as it left them. The bundle's directory, the
//! container's id and a mount's host source may differ (an engine restores
//! into a new directory with copies of the files).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::bundle::{MountPlan, Plan};

/// The statefile header's key for the identity.
pub const METADATA_KEY: &str = "oci.identity";
/// The identity record's version; a restore refuses a newer one.
pub const VERSION: u32 = 1;
/// Header values above 64 KiB are clipped: an identity must fit whole.
const MAX_BYTES: usize = 60 << 10;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the container's identity (its mounts) is {0} bytes, more than a statefile header holds ({MAX_BYTES})")]
    TooLarge(usize),
    #[error("the statefile's container identity is unreadable: {0}")]
    Corrupt(String),
    #[error("the statefile's container identity has version {0}, newer than this cryo reads ({VERSION})")]
    Newer(u32),
    #[error("the bundle is not the container that was checkpointed: {}", .0.join("; "))]
    Differs(Vec<String>),
    #[error("the statefile holds a `cryo do` sandbox, not an OCI container: restore it without --bundle")]
    NotAContainer,
}

/// One mount as the application sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountIdentity {
    pub destination: String,
    /// tmpfs, bind (a directory) or bind-file.
    #[serde(rename = "type")]
    pub kind: String,
    pub read_only: bool,
    /// A tmpfs's root mode.
    pub mode: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub version: u32,
    pub root_read_only: bool,
    pub hostname: String,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub terminal: bool,
    pub mounts: Vec<MountIdentity>,
}

impl Identity {
    pub fn of_plan(plan: &Plan) -> Identity {
        let mounts = plan
            .mounts
            .iter()
            .map(|m| match m {
                MountPlan::Tmpfs {
                    dest,
                    mode,
                    read_only,
                    ..
                } => MountIdentity {
                    destination: dest.clone(),
                    kind: "tmpfs".into(),
                    read_only: *read_only,
                    mode: Some(*mode),
                },
                MountPlan::Bind {
                    dest, read_only, ..
                } => MountIdentity {
                    destination: dest.clone(),
                    kind: "bind".into(),
                    read_only: *read_only,
                    mode: None,
                },
                MountPlan::BindFile {
                    dest, read_only, ..
                } => MountIdentity {
                    destination: dest.clone(),
                    kind: "bind-file".into(),
                    read_only: *read_only,
                    mode: None,
                },
            })
            .collect();
        Identity {
            version: VERSION,
            root_read_only: plan.root_read_only,
            hostname: plan.hostname.clone(),
            cwd: plan.cwd.clone(),
            uid: plan.creds.uid,
            gid: plan.creds.gid,
            additional_gids: plan.creds.groups.clone(),
            terminal: plan.terminal,
            mounts,
        }
    }

    /// The header value.
    pub fn encode(&self) -> Result<String, IdentityError> {
        let text =
            serde_json::to_string(self).map_err(|e| IdentityError::Corrupt(e.to_string()))?;
        if text.len() > MAX_BYTES {
            return Err(IdentityError::TooLarge(text.len()));
        }
        Ok(text)
    }

    /// The identity a statefile's header records.
    pub fn of_header(header: &statefile::Header) -> Result<Identity, IdentityError> {
        let text = header
            .metadata
            .get(METADATA_KEY)
            .ok_or(IdentityError::NotAContainer)?;
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| IdentityError::Corrupt(e.to_string()))?;
        if let Some(v) = value.get("version").and_then(|v| v.as_u64()) {
            if v > u64::from(VERSION) {
                return Err(IdentityError::Newer(u32::try_from(v).unwrap_or(u32::MAX)));
            }
        }
        serde_json::from_value(value).map_err(|e| IdentityError::Corrupt(e.to_string()))
    }

    /// Every way `bundle` (the restore's) differs from `self` (the saved
    /// container's) that the application would notice, one line each.
    pub fn differences(&self, bundle: &Identity) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, saved: String, new: String| {
            if saved != new {
                out.push(format!("{name} was {saved}, the bundle's is {new}"));
            }
        };
        field(
            "root.readonly",
            self.root_read_only.to_string(),
            bundle.root_read_only.to_string(),
        );
        field(
            "hostname",
            format!("{:?}", self.hostname),
            format!("{:?}", bundle.hostname),
        );
        field(
            "process.cwd",
            format!("{:?}", self.cwd),
            format!("{:?}", bundle.cwd),
        );
        field(
            "process.user",
            format!("{}:{} {:?}", self.uid, self.gid, self.additional_gids),
            format!("{}:{} {:?}", bundle.uid, bundle.gid, bundle.additional_gids),
        );
        field(
            "process.terminal",
            self.terminal.to_string(),
            bundle.terminal.to_string(),
        );
        let show = |m: &MountIdentity| {
            let mut s = format!("{} {}", m.kind, if m.read_only { "ro" } else { "rw" });
            if let Some(mode) = m.mode {
                s.push_str(&format!(" mode={mode:o}"));
            }
            s
        };
        for m in &self.mounts {
            match bundle
                .mounts
                .iter()
                .find(|b| b.destination == m.destination)
            {
                None => out.push(format!(
                    "mount {} ({}) is not in the bundle",
                    m.destination,
                    show(m)
                )),
                Some(b) if b != m => out.push(format!(
                    "mount {} was {}, the bundle's is {}",
                    m.destination,
                    show(m),
                    show(b)
                )),
                Some(_) => {}
            }
        }
        for b in &bundle.mounts {
            if !self.mounts.iter().any(|m| m.destination == b.destination) {
                out.push(format!(
                    "the bundle mounts {} ({}), the checkpointed container did not",
                    b.destination,
                    show(b)
                ));
            }
        }
        // Same mounts in another order stack differently where one covers
        // another: only then is the order the application's business.
        if out.is_empty() && self.mounts != bundle.mounts {
            let order = |ms: &[MountIdentity]| {
                ms.iter()
                    .map(|m| m.destination.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let nested = self.mounts.iter().any(|a| {
                self.mounts.iter().any(|b| {
                    a.destination != b.destination
                        && b.destination.starts_with(&format!("{}/", a.destination))
                })
            });
            if nested {
                out.push(format!(
                    "the mounts were stacked as [{}], the bundle's are [{}]",
                    order(&self.mounts),
                    order(&bundle.mounts)
                ));
            }
        }
        out
    }

    /// Refuses a restore of `self` into a bundle of identity `bundle`.
    pub fn check(&self, bundle: &Identity) -> Result<(), IdentityError> {
        let d = self.differences(bundle);
        if d.is_empty() {
            Ok(())
        } else {
            Err(IdentityError::Differs(d))
        }
    }
}

/// The identity's file in a container's directory under --root, written
/// when the container is created or restored: a checkpoint records what
/// the application saw then, even if config.json was edited since.
const FILE_NAME: &str = "identity.json";

/// Records `identity` in the container directory `dir`.
pub fn save_in(dir: &Path, identity: &Identity) -> anyhow::Result<()> {
    let path = dir.join(FILE_NAME);
    std::fs::write(&path, serde_json::to_vec(identity)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The identity of the container whose directory is `dir` and whose
/// bundle is `bundle` (computed from the bundle for a container created by
/// a cryo that did not record it).
pub fn load_from(dir: &Path, bundle: &Path) -> anyhow::Result<Identity> {
    let path = dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(Identity::of_plan(&super::bundle::plan(bundle)?))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> Identity {
        Identity {
            version: VERSION,
            root_read_only: true,
            hostname: "box".into(),
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            terminal: false,
            mounts: vec![
                MountIdentity {
                    destination: "/data".into(),
                    kind: "bind".into(),
                    read_only: false,
                    mode: None,
                },
                MountIdentity {
                    destination: "/etc/hosts".into(),
                    kind: "bind-file".into(),
                    read_only: true,
                    mode: None,
                },
            ],
        }
    }

    #[test]
    fn differences_are_named() {
        let a = ident();
        assert!(a.check(&a.clone()).is_ok());
        let mut b = a.clone();
        b.root_read_only = false;
        b.mounts[0].read_only = true;
        b.mounts.remove(1);
        b.mounts.push(MountIdentity {
            destination: "/scratch".into(),
            kind: "tmpfs".into(),
            read_only: false,
            mode: Some(0o1777),
        });
        let d = a.differences(&b);
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(d[0].contains("root.readonly was true"), "{d:?}");
        assert!(d[1].contains("mount /data was bind rw, the bundle's is bind ro"));
        assert!(d[2].contains("/etc/hosts (bind-file ro) is not in the bundle"));
        assert!(d[3].contains("mounts /scratch (tmpfs rw mode=1777)"));
        let err = a.check(&b).unwrap_err().to_string();
        assert!(
            err.contains("not the container that was checkpointed"),
            "{err}"
        );

        // The same flat mounts in another order are the same container.
        let mut c = a.clone();
        c.mounts.reverse();
        assert!(a.check(&c).is_ok());
    }

    #[test]
    fn the_header_round_trip_and_its_refusals() {
        let a = ident();
        let h = statefile::Header::new("cryo test").with(METADATA_KEY, a.encode().unwrap());
        assert_eq!(Identity::of_header(&h).unwrap(), a);
        assert!(matches!(
            Identity::of_header(&statefile::Header::new("cryo test")),
            Err(IdentityError::NotAContainer)
        ));
        let mut v = serde_json::to_value(&a).unwrap();
        v["version"] = 7.into();
        let h = statefile::Header::new("x").with(METADATA_KEY, v.to_string());
        assert!(matches!(
            Identity::of_header(&h),
            Err(IdentityError::Newer(7))
        ));
        let h = statefile::Header::new("x").with(METADATA_KEY, "{");
        assert!(matches!(
            Identity::of_header(&h),
            Err(IdentityError::Corrupt(_))
        ));
    }
}
