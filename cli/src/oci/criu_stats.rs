//! CRIU's statistics files, `stats-dump` and `stats-restore`, written into
//! the work path of a checkpoint and a restore. Engines read them from
//! there to show a checkpoint's cost (podman's `--print-stats` reads them
//! with go-criu, and `--export` packs `stats-dump` into the archive), so
//! they are in CRIU's own format: two magic words, the entry's length and
//! one protobuf `stats_entry` (CRIU's images/stats.proto), every required
//! field present.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use sentry::state::CheckpointStats;

/// IMG_SERVICE_MAGIC, then STATS_MAGIC (CRIU's criu/include/magic.h).
const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
const STATS_MAGIC: u32 = 0x5709_3306;

pub const DUMP_FILE: &str = "stats-dump";
pub const RESTORE_FILE: &str = "stats-restore";

/// What a restore reports (CRIU's restore_stats_entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Until the sandbox process had re-created every process from the
    /// statefile.
    pub forking_us: u64,
    /// Until the container ran again.
    pub restore_us: u64,
    /// Memory pages the statefile held (loaded into the sandbox).
    pub pages_restored: u64,
}

/// A protobuf message under construction: only varint fields, which is
/// all stats.proto has.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }

    /// Field `field` (wire type 0, varint).
    fn uint(&mut self, field: u64, v: u64) -> &mut Self {
        self.varint(field << 3);
        self.varint(v);
        self
    }

    /// A uint32 field: CRIU's times are uint32 microseconds; a longer
    /// phase saturates rather than wrapping to a small number.
    fn uint32(&mut self, field: u64, v: u64) -> &mut Self {
        self.uint(field, v.min(u64::from(u32::MAX)))
    }

    /// Field `field` holding `inner` (wire type 2, length-delimited).
    fn message(&mut self, field: u64, inner: &Message) -> &mut Self {
        self.varint((field << 3) | 2);
        self.varint(inner.0.len() as u64);
        self.0.extend_from_slice(&inner.0);
        self
    }
}

/// `stats_entry { dump = 1 }` of a checkpoint.
fn dump_entry(s: &CheckpointStats) -> Message {
    let mut dump = Message::default();
    dump.uint32(1, s.freezing_us)
        .uint32(2, s.frozen_us)
        .uint32(3, s.memory_capture_us)
        .uint32(4, s.memory_write_us)
        .uint(5, s.pages_scanned)
        // No parent images (pre-dump is refused) and no lazy pages.
        .uint(6, 0)
        .uint(7, s.pages_written)
        .uint(9, 0);
    let mut entry = Message::default();
    entry.message(1, &dump);
    entry
}

/// `stats_entry { restore = 2 }` of a restore.
fn restore_entry(s: &RestoreStats) -> Message {
    let mut restore = Message::default();
    // Pages compared and skipped as copy-on-write are CRIU's dedup against
    // a parent image, which cryo has none of.
    restore
        .uint(1, 0)
        .uint(2, 0)
        .uint32(3, s.forking_us)
        .uint32(4, s.restore_us)
        .uint(5, s.pages_restored);
    let mut entry = Message::default();
    entry.message(2, &restore);
    entry
}

fn file_bytes(entry: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + entry.0.len());
    out.extend_from_slice(&IMG_SERVICE_MAGIC.to_le_bytes());
    out.extend_from_slice(&STATS_MAGIC.to_le_bytes());
    out.extend_from_slice(&(entry.0.len() as u32).to_le_bytes());
    out.extend_from_slice(&entry.0);
    out
}

/// Writes `dir/name` whole under a temporary name, then renames it, so a
/// reader never sees half of one.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.cryo-tmp"));
    let path = dir.join(name);
    (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })()
    .inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
    .with_context(|| format!("cannot write {}", path.display()))
}

pub fn write_dump(dir: &Path, s: &CheckpointStats) -> anyhow::Result<()> {
    write(dir, DUMP_FILE, &file_bytes(&dump_entry(s)))
}

pub fn write_restore(dir: &Path, s: &RestoreStats) -> anyhow::Result<()> {
    write(dir, RESTORE_FILE, &file_bytes(&restore_entry(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal protobuf reader for the test: (field, value) of varint
    /// fields, or the bytes of length-delimited ones.
    fn fields(mut b: &[u8]) -> Vec<(u64, Result<u64, Vec<u8>>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let (&byte, rest) = b.split_first().expect("truncated varint");
                *b = rest;
                v |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return v;
                }
            }
            panic!("varint too long")
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            match key & 7 {
                0 => out.push((key >> 3, Ok(varint(&mut b)))),
                2 => {
                    let n = varint(&mut b) as usize;
                    out.push((key >> 3, Err(b[..n].to_vec())));
                    b = &b[n..];
                }
                t => panic!("wire type {t}"),
            }
        }
        out
    }

    /// The varint fields of the one message a stats file holds as
    /// `stats_entry`'s field `field`.
    fn entry_fields(file: &[u8], field: u64) -> Vec<(u64, u64)> {
        let outer = fields(&file[12..]);
        assert_eq!(outer.len(), 1, "{outer:?}");
        let (f, Err(inner)) = &outer[0] else {
            panic!("{outer:?}")
        };
        assert_eq!(*f, field);
        fields(inner)
            .into_iter()
            .map(|(f, v)| (f, v.expect("a varint field")))
            .collect()
    }

    #[test]
    fn a_dump_entry_has_criu_framing_and_every_required_field() {
        let s = CheckpointStats {
            freezing_us: 300,
            frozen_us: 5_000_000_000, // past u32: saturates
            memory_capture_us: 7,
            memory_write_us: 90_000,
            pages_scanned: 1 << 20,
            pages_written: 777,
            ..Default::default()
        };
        let bytes = file_bytes(&dump_entry(&s));
        assert_eq!(bytes[0..4], IMG_SERVICE_MAGIC.to_le_bytes());
        assert_eq!(bytes[4..8], STATS_MAGIC.to_le_bytes());
        let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 12);
        assert_eq!(
            entry_fields(&bytes, 1),
            [
                (1, 300),
                (2, u64::from(u32::MAX)),
                (3, 7),
                (4, 90_000),
                (5, 1 << 20),
                (6, 0),
                (7, 777),
                (9, 0)
            ]
        );
    }

    #[test]
    fn a_restore_entry_is_field_two() {
        let s = RestoreStats {
            forking_us: 40,
            restore_us: 1234,
            pages_restored: 99,
        };
        let bytes = file_bytes(&restore_entry(&s));
        assert_eq!(
            entry_fields(&bytes, 2),
            [(1, 0), (2, 0), (3, 40), (4, 1234), (5, 99)]
        );
    }
}
