//! `inventory.img`: the index of an image directory, written by
//! `cryo checkpoint` beside the statefile. Container engines look for a
//! file of this name (CRIU's) before they ask a runtime to restore: podman
//! refuses to restore without one. cryo's is JSON naming its own format, so
//! a restore can tell an image directory cryo wrote from one another tool
//! (CRIU, whose inventory is a binary protobuf image) wrote, and can check
//! the statefile it lists is the one in the directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in an image directory (CRIU's, which podman checks for).
pub const INVENTORY_NAME: &str = "inventory.img";
/// What `format` says in cryo's inventory.
pub const FORMAT: &str = "cryo-image-inventory";
/// The inventory's own version: a reader refuses a newer one.
pub const VERSION: u32 = 1;
/// An inventory is a few hundred bytes; anything much larger is not ours.
const MAX_BYTES: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("image directory {0} does not exist")]
    NoImageDir(PathBuf),
    #[error("image directory {0} has no {INVENTORY_NAME}: it holds no complete cryo checkpoint")]
    Missing(PathBuf),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{path} was not written by cryo ({what}): cryo restores only its own checkpoints")]
    OtherTool { path: PathBuf, what: String },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error("{path} has version {version}, newer than this cryo reads ({VERSION}): restore with a newer cryo")]
    Newer { path: PathBuf, version: u32 },
}

/// One file of the image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    pub name: String,
    pub bytes: u64,
    /// The statefile's format version (its prefix's).
    pub format_version: u32,
    /// The statefile's sections: kind, name, stored bytes.
    pub sections: Vec<ImageSection>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSection {
    pub kind: String,
    pub name: String,
    pub stored_bytes: u64,
    pub uncompressed_bytes: u64,
    /// The index's crc32 of the stored bytes: an inventory left from an
    /// older checkpoint never matches a newer statefile.
    pub crc32: u32,
}

/// The statefile's sections as an inventory lists them (from its index).
fn sections_of(
    path: &Path,
) -> Result<(statefile::Reader<std::fs::File>, Vec<ImageSection>), String> {
    let reader = statefile::Reader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let sections = reader
        .sections()
        .iter()
        .map(|s| ImageSection {
            kind: format!("{:?}", s.id.kind).to_lowercase(),
            name: s.id.name.clone(),
            stored_bytes: s.stored_len,
            uncompressed_bytes: s.uncompressed_len,
            crc32: s.crc32,
        })
        .collect();
    Ok((reader, sections))
}

/// The index of an image directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub format: String,
    pub version: u32,
    /// Who wrote the image ("cryo 0.1.0").
    pub producer: String,
    /// The container checkpointed.
    pub container_id: String,
    /// RFC 3339.
    pub created: String,
    /// Whether the container went on running after the checkpoint.
    pub leave_running: bool,
    /// Bytes of the sandbox's memory the statefile holds.
    pub memory_bytes: u64,
    pub files: Vec<ImageFile>,
}

impl Inventory {
    /// The inventory of the statefile just committed in `dir`, read back
    /// from the file itself (its header and index), not from what was
    /// asked.
    pub fn of_statefile(
        dir: &Path,
        container_id: &str,
        leave_running: bool,
        memory_bytes: u64,
    ) -> anyhow::Result<Inventory> {
        let path = sentry::state::statefile_path(dir);
        let (reader, sections) =
            sections_of(&path).map_err(|e| anyhow::anyhow!("reading back {e}"))?;
        Ok(Inventory {
            format: FORMAT.into(),
            version: VERSION,
            producer: reader.header().producer.clone(),
            container_id: container_id.into(),
            created: super::state::rfc3339_now(),
            leave_running,
            memory_bytes,
            files: vec![ImageFile {
                name: sentry::state::STATEFILE_NAME.into(),
                bytes: reader.file_len(),
                format_version: reader.format_version(),
                sections,
            }],
        })
    }

    /// Writes `dir/inventory.img` atomically (a rename over any older one),
    /// durably.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(INVENTORY_NAME);
        let tmp = dir.join(format!(
            "{}{}.inventory",
            crate::control::TEMP_PREFIX,
            std::process::id()
        ));
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(anyhow::Error::new(e).context(format!("writing {}", path.display())));
        }
        Ok(())
    }

    /// Reads and checks `dir/inventory.img`: cryo's format, a version this
    /// cryo reads, and a statefile in `dir` of the size and sections (with
    /// their checksums, from its index) it lists.
    pub fn read(dir: &Path) -> Result<Inventory, InventoryError> {
        if !dir.is_dir() {
            return Err(InventoryError::NoImageDir(dir.to_path_buf()));
        }
        let path = dir.join(INVENTORY_NAME);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(InventoryError::Missing(dir.to_path_buf()))
            }
            Err(e) => return Err(InventoryError::Io(path, e)),
        };
        let other = |what: &str| InventoryError::OtherTool {
            path: path.clone(),
            what: what.into(),
        };
        if meta.len() > MAX_BYTES {
            return Err(other(&format!("{} bytes, not a cryo index", meta.len())));
        }
        let bytes = std::fs::read(&path).map_err(|e| InventoryError::Io(path.clone(), e))?;
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            // CRIU's images start with a binary magic number.
            Err(_) if !bytes.starts_with(b"{") => {
                return Err(other(
                    "a binary file, as CRIU writes: not cryo's JSON index",
                ))
            }
            Err(e) => {
                return Err(InventoryError::Invalid {
                    path,
                    why: format!("not valid JSON: {e}"),
                })
            }
        };
        match value.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(f) => return Err(other(&format!("its format is {f:?}"))),
            None => return Err(other("it names no format")),
        }
        if let Some(v) = value.get("version").and_then(|v| v.as_u64()) {
            if v > u64::from(VERSION) {
                return Err(InventoryError::Newer {
                    path,
                    version: u32::try_from(v).unwrap_or(u32::MAX),
                });
            }
        }
        let inv: Inventory =
            serde_json::from_value(value).map_err(|e| InventoryError::Invalid {
                path: path.clone(),
                why: e.to_string(),
            })?;
        let Some(sf) = inv
            .files
            .iter()
            .find(|f| f.name == sentry::state::STATEFILE_NAME)
        else {
            return Err(InventoryError::Invalid {
                path,
                why: format!("it lists no {}", sentry::state::STATEFILE_NAME),
            });
        };
        let sf_path = sentry::state::statefile_path(dir);
        let changed = |what: String| InventoryError::Invalid {
            path: path.clone(),
            why: format!("{what}: the image directory changed after its checkpoint"),
        };
        match std::fs::metadata(&sf_path) {
            Ok(m) if m.len() == sf.bytes => {
                // A statefile too damaged to list its sections is for
                // the restore's own validation to name.
                if let Ok((_, sections)) = sections_of(&sf_path) {
                    if sections != sf.sections {
                        return Err(changed(format!(
                            "{} does not hold the sections it lists",
                            sf_path.display()
                        )));
                    }
                }
            }
            Ok(m) => {
                return Err(changed(format!(
                    "it lists a statefile of {} bytes, {} has {}",
                    sf.bytes,
                    sf_path.display(),
                    m.len()
                )))
            }
            Err(e) => return Err(InventoryError::Io(sf_path, e)),
        }
        Ok(inv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(bytes: u64) -> Inventory {
        Inventory {
            format: FORMAT.into(),
            version: VERSION,
            producer: "cryo test".into(),
            container_id: "c".into(),
            created: "2026-01-01T00:00:00.000000000Z".into(),
            leave_running: false,
            memory_bytes: 4096,
            files: vec![ImageFile {
                name: sentry::state::STATEFILE_NAME.into(),
                bytes,
                format_version: 1,
                sections: Vec::new(),
            }],
        }
    }

    #[test]
    fn written_inventories_read_back_and_others_are_named() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            Inventory::read(&d.path().join("gone")),
            Err(InventoryError::NoImageDir(_))
        ));
        assert!(matches!(
            Inventory::read(d.path()),
            Err(InventoryError::Missing(_))
        ));
        std::fs::write(sentry::state::statefile_path(d.path()), b"12345").unwrap();
        let inv = sample(5);
        inv.write(d.path()).unwrap();
        assert_eq!(Inventory::read(d.path()).unwrap(), inv);
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);

        // A statefile that is not the one listed.
        sample(6).write(d.path()).unwrap();
        let err = Inventory::read(d.path()).unwrap_err().to_string();
        assert!(err.contains("changed after its checkpoint"), "{err}");

        // CRIU's inventory: a protobuf image behind a binary magic.
        std::fs::write(
            d.path().join(INVENTORY_NAME),
            [0x54, 0x56, 0x19, 0x58, 0x01, 0x02],
        )
        .unwrap();
        let err = Inventory::read(d.path()).unwrap_err();
        assert!(matches!(err, InventoryError::OtherTool { .. }), "{err}");
        assert!(err.to_string().contains("CRIU"), "{err}");

        // Another tool's JSON.
        std::fs::write(d.path().join(INVENTORY_NAME), r#"{"format":"other"}"#).unwrap();
        let err = Inventory::read(d.path()).unwrap_err().to_string();
        assert!(err.contains("not written by cryo"), "{err}");

        // A newer cryo's.
        let mut v = serde_json::to_value(sample(5)).unwrap();
        v["version"] = 99.into();
        std::fs::write(d.path().join(INVENTORY_NAME), v.to_string()).unwrap();
        let err = Inventory::read(d.path()).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
    }
}
