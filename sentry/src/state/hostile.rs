//! Hostile records: an object table taken apart into editable entries, put
//! back into a statefile whose header, index and checksums are all valid,
//! and run through the whole of restore's validation. The fuzz target
//! (sentry/fuzz, `restore_records`) and the regression tests
//! (sentry/tests/hostile_records.rs) share this code, so every input the
//! fuzzer found also runs on stable as a plain `#[test]`.
//!
//! A mutation program ([`mutate`]) is a byte string read as a sequence of
//! edits to record *payloads* (overwrite, insert, delete, replace one
//! bincode integer by an interesting value), to fields of the task, thread
//! group, address-space, memory-file, descriptor-table, kernel and
//! namespace records (the tmpfs node tables) through a decode and
//! re-encode (so the rest of the record stays well-formed), and
//! to the table itself (duplicate, drop or re-key an entry): the checksums
//! are recomputed, so
//! every edit reaches the record decoders and validators instead of being
//! stopped by a crc.

use platform::Layout;
use statefile::{
    Compression, Decoder, Encoder, Header, MemoryOptions, OpenOptions, Reader, Savable,
    SectionKind, StatefileError, TypeTable, Writer,
};

use super::validate::{load_saved_kernel, LoadError, SavedKernel};
use super::{MEMORY_SECTION, OBJECTS_SECTION};
use crate::kernel::fd_table::FdTableRecord;
use crate::kernel::signal::SigInfo;
use crate::kernel::task::TaskRecord;
use crate::kernel::thread_group::ThreadGroupRecord;
use crate::kernel::time::ClockId;
use crate::kernel::KernelRecord;
use crate::mm::{MemoryFileRecord, MmRecord, MF_PAGE_SIZE};
use crate::vfs::state::{
    TmpfsDirEntry, TmpfsNodeKind, TmpfsNodeRecord, TmpfsPage, TmpfsSnapshot, VfsState,
};

/// One entry of an object table: its key and its record's bytes (without
/// the record's length frame, which [`ObjectTable::encode`] recomputes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub type_name: String,
    pub id: u64,
    pub payload: Vec<u8>,
}

/// An object table as a list: entries in file order, duplicates kept, and
/// the type table the records were written with.
#[derive(Clone, Debug)]
pub struct ObjectTable {
    pub entries: Vec<Entry>,
    pub types: TypeTable,
}

/// Why an object table could not be taken apart or put together.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{0}")]
    Statefile(#[from] StatefileError),
    #[error("object table: {0}")]
    Malformed(String),
    #[error("no {type_name} #{id} in the table")]
    Missing { type_name: String, id: u64 },
}

/// The layout every hostile statefile is validated against: a 47-bit x86_64
/// host with 4 KiB pages, so results do not depend on the machine.
pub fn fixed_layout() -> Layout {
    // 47 bits and 4 KiB pages are inside the supported ranges.
    Layout::for_va_bits(47, 4096).unwrap_or_else(|e| unreachable!("47-bit layout: {e}"))
}

fn take<'a>(data: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], TableError> {
    if data.len() < n {
        return Err(TableError::Malformed(format!("{what} cut short")));
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Ok(head)
}

fn take_u32(data: &mut &[u8], what: &str) -> Result<u32, TableError> {
    let b = take(data, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn take_u64(data: &mut &[u8], what: &str) -> Result<u64, TableError> {
    let mut a = [0u8; 8];
    a.copy_from_slice(take(data, 8, what)?);
    Ok(u64::from_le_bytes(a))
}

impl ObjectTable {
    /// Splits an object table's bytes (the kernel section "objects") into
    /// its entries, in order, without judging them.
    pub fn parse(mut data: &[u8], types: TypeTable) -> Result<ObjectTable, TableError> {
        let mut entries = Vec::new();
        while !data.is_empty() {
            let name_len = take_u32(&mut data, "type name length")? as usize;
            let name = take(&mut data, name_len, "type name")?;
            let type_name = String::from_utf8(name.to_vec())
                .map_err(|_| TableError::Malformed("type name is not UTF-8".into()))?;
            let id = take_u64(&mut data, "object id")?;
            let len = take_u64(&mut data, "record length")?;
            let len = usize::try_from(len)
                .map_err(|_| TableError::Malformed(format!("record of {len} bytes")))?;
            let payload = take(&mut data, len, "record")?.to_vec();
            entries.push(Entry {
                type_name,
                id,
                payload,
            });
        }
        Ok(ObjectTable { entries, types })
    }

    /// The object table of a statefile's bytes (all its checksums checked).
    pub fn from_statefile(file: &[u8]) -> Result<ObjectTable, TableError> {
        let reader = Reader::open_with(file, OpenOptions::default())?;
        let bytes = reader.section_bytes(SectionKind::Kernel, OBJECTS_SECTION)?;
        ObjectTable::parse(&bytes, reader.types().clone())
    }

    /// The table's bytes, in the layout `statefile::Objects` parses.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            out.extend_from_slice(&(e.type_name.len() as u32).to_le_bytes());
            out.extend_from_slice(e.type_name.as_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
            out.extend_from_slice(&(e.payload.len() as u64).to_le_bytes());
            out.extend_from_slice(&e.payload);
        }
        out
    }

    fn position<T: Savable>(&self, id: u64) -> Result<usize, TableError> {
        self.entries
            .iter()
            .position(|e| e.type_name == T::TYPE_NAME && e.id == id)
            .ok_or_else(|| TableError::Missing {
                type_name: T::TYPE_NAME.into(),
                id,
            })
    }

    /// Decodes object `id` of type `T` (the first entry with that key).
    pub fn get<T: Savable>(&self, id: u64) -> Result<T, TableError> {
        let e = &self.entries[self.position::<T>(id)?];
        let mut framed = (e.payload.len() as u64).to_le_bytes().to_vec();
        framed.extend_from_slice(&e.payload);
        let mut dec = Decoder::new(&framed, &self.types);
        let v = dec.get::<T>()?;
        dec.finish()?;
        Ok(v)
    }

    /// Appends object `id` (even one whose key is already present).
    pub fn push<T: Savable>(&mut self, id: u64, v: &T) -> Result<(), TableError> {
        let payload = self.payload_of(v)?;
        self.entries.push(Entry {
            type_name: T::TYPE_NAME.into(),
            id,
            payload,
        });
        Ok(())
    }

    fn payload_of<T: Savable>(&mut self, v: &T) -> Result<Vec<u8>, TableError> {
        let mut enc = Encoder::new();
        enc.put(v)?;
        if self.types.merge(enc.types()).is_err() {
            // A record of an older statefile (a seed) was migrated on
            // decode and is re-encoded at today's versions: the table now
            // names those (the edited record is the only one of its type
            // that changes version, as the namespace record is).
            let mut table = TypeTable::new();
            for (name, version) in self.types.iter() {
                table.register(name, enc.types().get(name).unwrap_or(version))?;
            }
            table.merge(enc.types())?;
            self.types = table;
        }
        Ok(enc.bytes()[8..].to_vec())
    }

    /// Changes object `id` of type `T` through a decode, `f`, re-encode.
    pub fn edit<T: Savable>(&mut self, id: u64, f: impl FnOnce(&mut T)) -> Result<(), TableError> {
        let at = self.position::<T>(id)?;
        let mut v: T = self.get(id)?;
        f(&mut v);
        self.entries[at].payload = self.payload_of(&v)?;
        Ok(())
    }

    /// The payload of object `id` of type `T`, for byte-level damage.
    pub fn payload_mut<T: Savable>(&mut self, id: u64) -> Result<&mut Vec<u8>, TableError> {
        let at = self.position::<T>(id)?;
        Ok(&mut self.entries[at].payload)
    }

    /// Removes object `id` of type `T`.
    pub fn remove<T: Savable>(&mut self, id: u64) -> Result<Entry, TableError> {
        let at = self.position::<T>(id)?;
        Ok(self.entries.remove(at))
    }

    /// A complete statefile holding this table: a header, the kernel
    /// section "objects" (uncompressed), the type table and a one-page
    /// memory section, every checksum valid.
    pub fn to_statefile(&self) -> Result<Vec<u8>, TableError> {
        let header = Header::new("cryo hostile-records").with("platform", "ptrace");
        let page = vec![0x5au8; 4096];
        self.write_statefile(header, Compression::None, &page)
    }

    /// A statefile of `header`, this table (compressed as `objects` says),
    /// the type table and `memory` as the memory image.
    fn write_statefile(
        &self,
        header: Header,
        objects: Compression,
        memory: &[u8],
    ) -> Result<Vec<u8>, TableError> {
        let mut w = Writer::new(Vec::new(), header)?;
        w.write_section(
            SectionKind::Kernel,
            OBJECTS_SECTION,
            objects,
            &self.encode(),
        )?;
        w.write_section(
            SectionKind::TypeTable,
            "",
            Compression::None,
            &self.types.encode(),
        )?;
        w.write_memory(MEMORY_SECTION, memory, &MemoryOptions::default())?;
        Ok(w.finish()?)
    }
}

impl ObjectTable {
    /// `original` (a complete statefile) with its object table replaced by
    /// this one: the same header and memory (re-encoded, zstd), every
    /// checksum valid. For end-to-end tests that restore the result.
    pub fn to_statefile_like(&self, original: &[u8]) -> Result<Vec<u8>, TableError> {
        self.to_statefile_edited(original, |_| {})
    }

    /// Like [`ObjectTable::to_statefile_like`], with the header's metadata
    /// as `edit` leaves it (hostile header entries: the CPU features, the
    /// highest address).
    pub fn to_statefile_edited(
        &self,
        original: &[u8],
        edit: impl FnOnce(&mut std::collections::BTreeMap<String, String>),
    ) -> Result<Vec<u8>, TableError> {
        let reader = Reader::open_with(original, OpenOptions::default())?;
        let memory = reader.memory(MEMORY_SECTION)?;
        let len = usize::try_from(memory.image_len())
            .map_err(|_| TableError::Malformed("memory image too large".into()))?;
        let mut image = vec![0u8; len];
        memory.restore_into(&mut image)?;
        let mut header = reader.header().clone();
        edit(&mut header.metadata);
        self.write_statefile(header, Compression::default(), &image)
    }
}

/// Restore's validation of a statefile, up to the point where restore
/// starts creating host resources: the header, index and every non-memory
/// section's checksum, then every record ([`load_saved_kernel`]) against
/// [`fixed_layout`]. Nothing is created and nothing runs.
pub fn restore_validate(file: &[u8]) -> Result<SavedKernel, LoadError> {
    let reader = Reader::open_with(file, OpenOptions::default())?;
    for section in reader
        .sections()
        .iter()
        .filter(|s| s.id.kind != SectionKind::Memory)
    {
        reader.verify_section(section)?;
    }
    load_saved_kernel(&reader, &fixed_layout())
}

/// Most edits one mutation program applies.
pub const MAX_EDITS: usize = 24;
/// Longest record a mutation may grow (the seeds' records are a few KiB).
const MAX_PAYLOAD: usize = 1 << 16;

/// Values that sit on or just beyond a validator's bounds: tids, signal
/// numbers, selectors, page and address-space edges, clock extremes.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    0x10,
    0x2b,
    0x33,
    0x3000,
    63,
    64,
    65,
    250,
    251,
    255,
    256,
    576,
    1024,
    4095,
    4096,
    4097,
    65536,
    1 << 20,
    4_194_304,
    4_194_305,
    i32::MAX as u64,
    1 << 31,
    u32::MAX as u64,
    1 << 32,
    1 << 40,
    (1 << 47) - 4096,
    1 << 47,
    1 << 62,
    (1 << 62) + 1,
    i64::MAX as u64,
    1 << 63,
    0xffff_8000_0000_0000,
    u64::MAX - 4095,
    u64::MAX,
];

/// Reads a mutation program; past its end every read is zero.
struct Program<'a>(&'a [u8]);

impl Program<'_> {
    fn done(&self) -> bool {
        self.0.is_empty()
    }
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, i| acc | u64::from(self.u8()) << (8 * i))
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
    /// An interesting value, or (one time in eight) arbitrary bits.
    fn value(&mut self) -> u64 {
        let pick = self.u8() as usize;
        if pick % 8 == 7 {
            self.u64()
        } else {
            INTERESTING[pick % INTERESTING.len()]
        }
    }
}

/// bincode 2's variable-length integer (standard config): one byte below
/// 251, else a marker (251: u16, 252: u32, 253: u64) and the bytes.
fn varint(v: u64) -> Vec<u8> {
    if v < 251 {
        vec![v as u8]
    } else if v <= u64::from(u16::MAX) {
        let mut out = vec![251];
        out.extend_from_slice(&(v as u16).to_le_bytes());
        out
    } else if v <= u64::from(u32::MAX) {
        let mut out = vec![252];
        out.extend_from_slice(&(v as u32).to_le_bytes());
        out
    } else {
        let mut out = vec![253];
        out.extend_from_slice(&v.to_le_bytes());
        out
    }
}

/// The length of the bincode varint starting with `first`.
fn varint_len(first: u8) -> usize {
    match first {
        251 => 3,
        252 => 5,
        253 => 9,
        254 => 17,
        _ => 1,
    }
}

/// Applies mutation program `program` to a copy of `base`. Each edit is an
/// op byte, an entry index, then op-specific operands; offsets wrap to the
/// chosen record's length, so every program is valid.
pub fn mutate(base: &ObjectTable, program: &[u8]) -> ObjectTable {
    let mut t = base.clone();
    let mut p = Program(program);
    for _ in 0..MAX_EDITS {
        if p.done() || t.entries.is_empty() {
            break;
        }
        let op = p.u8();
        let n = t.entries.len();
        let i = p.u8() as usize % n;
        let len = t.entries[i].payload.len();
        let off = p.u16() as usize % (len + 1);
        match op % 14 {
            // Overwrite up to 16 bytes.
            0 => {
                let k = p.u8() as usize % 17;
                let bytes = p.bytes(k);
                let payload = &mut t.entries[i].payload;
                let end = (off + k).min(MAX_PAYLOAD.max(payload.len())).max(off);
                if payload.len() < end {
                    payload.resize(end, 0);
                }
                payload[off..end].copy_from_slice(&bytes[..end - off]);
            }
            // Insert up to 16 bytes.
            1 => {
                let k = p.u8() as usize % 17;
                let bytes = p.bytes(k);
                let payload = &mut t.entries[i].payload;
                if payload.len() + k <= MAX_PAYLOAD {
                    payload.splice(off..off, bytes);
                }
            }
            // Delete up to 64 bytes.
            2 => {
                let k = p.u8() as usize % 65;
                let payload = &mut t.entries[i].payload;
                let end = (off + k).min(payload.len());
                payload.drain(off..end);
            }
            // Replace the integer at `off` by an interesting one, plain or
            // zigzag-encoded (bincode's signed integers).
            3 | 4 => {
                let v = p.value();
                let v = if op % 14 == 4 {
                    let s = v as i64;
                    ((s << 1) ^ (s >> 63)) as u64
                } else {
                    v
                };
                let payload = &mut t.entries[i].payload;
                let old = payload
                    .get(off)
                    .map_or(0, |&b| varint_len(b))
                    .min(payload.len() - off);
                if payload.len() - old + 9 <= MAX_PAYLOAD {
                    payload.splice(off..off + old, varint(v));
                }
            }
            // One byte set to a marker or a boundary value.
            5 => {
                let b =
                    [0u8, 1, 0x7f, 0x80, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff][p.u8() as usize % 10];
                if let Some(x) = t.entries[i].payload.get_mut(off) {
                    *x = b;
                }
            }
            // The same key twice.
            6 => {
                let e = t.entries[i].clone();
                t.entries.push(e);
            }
            // An entry gone.
            7 => {
                t.entries.remove(i);
            }
            // An entry re-keyed.
            8 => t.entries[i].id = p.value(),
            // Another record's bytes under this key.
            9 => {
                let j = p.u8() as usize % n;
                t.entries[i].payload = t.entries[j].payload.clone();
            }
            // Cut short.
            10 => t.entries[i].payload.truncate(off),
            // A field of a task changed through a decode and re-encode, so
            // the rest of the record stays well-formed.
            12 => {
                let (field, v) = (p.u8(), p.value());
                let id = t.entries[i].id;
                let _ = t.edit::<TaskRecord>(id, |r| edit_task(r, field, v));
            }
            // A field of the process's other records, the same way.
            13 => {
                let (field, k, v) = (p.u8(), p.u8() as usize, p.value());
                let id = t.entries[i].id;
                match t.entries[i].type_name.as_str() {
                    "kernel.Kernel" => {
                        let _ = t.edit::<KernelRecord>(id, |r| match field % 3 {
                            0 => r.next_tid = v as i64,
                            1 => r.clocks.monotonic_at_save = v as i64,
                            _ => r.thread_groups.push(v as i32),
                        });
                    }
                    "kernel.ThreadGroup" => {
                        let _ = t.edit::<ThreadGroupRecord>(id, |r| match field % 5 {
                            0 => r.tasks.push(v as i32),
                            1 => r.tgid = v as i32,
                            2 => r.mm = v,
                            3 => r.fd_table = v,
                            _ => r.links.parent = v as i32,
                        });
                    }
                    "mm.MemoryManager" => {
                        let _ = t.edit::<MmRecord>(id, |r| {
                            let n = r.mm.vmas.len().max(1);
                            let nb = r.mm.backing.len().max(1);
                            match field % 10 {
                                0 | 1 | 2 | 9 => {
                                    if let Some(vma) = r.mm.vmas.get_mut(k % n) {
                                        match field % 10 {
                                            0 => vma.start = v,
                                            1 => vma.end = v,
                                            2 => vma.mf_offset = v,
                                            _ => vma.wipeonfork = v & 1 == 1,
                                        }
                                    }
                                }
                                6..=8 => {
                                    if let Some(b) = r.mm.backing.get_mut(k % nb) {
                                        match field % 10 {
                                            6 => b.start = v,
                                            7 => b.end = v,
                                            _ => b.mf_offset = v,
                                        }
                                    }
                                }
                                3 => r.mm.highest_address = v,
                                4 => r.mm.brk = v,
                                _ => r.mm.brk_start = v,
                            }
                        });
                    }
                    "vfs.MountNamespace" => {
                        let owners = Owners::of(&t);
                        let sel = (p.u8(), p.u8());
                        let _ = t.edit::<VfsState>(id, |r| {
                            edit_tmpfs(r, &owners, field, k, v, sel);
                        });
                    }
                    "mm.MemoryFile" => {
                        let _ = t.edit::<MemoryFileRecord>(id, |r| {
                            let n = r.ranges.len().max(1);
                            match (field % 3, r.ranges.get_mut(k % n)) {
                                (0, Some(x)) => x.start = v,
                                (1, Some(x)) => x.end = v,
                                _ => {
                                    r.ranges.pop();
                                }
                            }
                        });
                    }
                    "vfs.Pty" => {
                        let _ = t.edit::<crate::vfs::pty::PtySnapshot>(id, |r| {
                            let st = &mut r.state;
                            match field % 10 {
                                0 => r.index = v as u32,
                                1 => st.session = v as i32,
                                2 => st.pgrp = v as i32,
                                3 => {
                                    st.detached.insert(v as i32);
                                }
                                4 => st.hung_up = v & 1 == 1,
                                5 => st.replica_closed = v & 1 == 1,
                                6 => st.ld.edit.resize((v as usize) % (1 << 14), b'e'),
                                7 => st.ld.out.resize((v as usize) % (1 << 18), b'o'),
                                8 => st.ld.raw.resize((v as usize) % (1 << 14), b'r'),
                                _ => st.termios.cc[k % st.termios.cc.len()] = v as u8,
                            }
                        });
                    }
                    "kernel.FdTable" => {
                        let _ = t.edit::<FdTableRecord>(id, |r| {
                            let n = r.fds.len().max(1);
                            match (field % 2, r.fds.get_mut(k % n)) {
                                (0, Some(e)) => e.fd = v as i32,
                                (_, Some(e)) => e.file = v,
                                _ => {}
                            }
                        });
                    }
                    _ => {}
                }
            }
            // A little-endian u64 written over 8 bytes (fixed-width fields
            // such as the XSAVE area's words).
            _ => {
                let v = p.value().to_le_bytes();
                let payload = &mut t.entries[i].payload;
                let end = (off + 8).min(payload.len());
                payload[off..end].copy_from_slice(&v[..end - off]);
            }
        }
    }
    t
}

/// Where memory lies in a table, so that a tmpfs page edit lands where a
/// validator has to think (inside the saved ranges, on a mapping's own
/// memory, on another file's page) rather than almost always outside.
struct Owners {
    ranges: Vec<(u64, u64)>,
    /// Each backing run's memory-file range.
    vmas: Vec<(u64, u64)>,
}

impl Owners {
    fn of(t: &ObjectTable) -> Owners {
        let ranges = t
            .get::<MemoryFileRecord>(0)
            .map(|m| m.ranges.iter().map(|r| (r.start, r.end)).collect())
            .unwrap_or_default();
        let vmas = t
            .entries
            .iter()
            .find(|e| e.type_name == MmRecord::TYPE_NAME)
            .and_then(|e| t.get::<MmRecord>(e.id).ok())
            .map(|m| {
                m.mm.backing
                    .iter()
                    .map(|b| {
                        (
                            b.mf_offset,
                            b.mf_offset.wrapping_add(b.end.wrapping_sub(b.start)),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Owners { ranges, vmas }
    }

    /// A memory-file offset chosen by `how` (a selector byte) from `v`.
    fn offset(&self, vfs: &VfsState, how: u8, v: u64) -> u64 {
        let page = |(s, e): (u64, u64), v: u64| {
            let pages = e.saturating_sub(s) / MF_PAGE_SIZE;
            s.wrapping_add(v % pages.max(1) * MF_PAGE_SIZE)
        };
        let pick = |list: &[(u64, u64)]| list.get(v as usize % list.len().max(1)).copied();
        match how % 8 {
            // A page of the saved ranges (most often: the other checks
            // are reached only from there).
            0..=2 => pick(&self.ranges).map_or(v, |r| page(r, v >> 8)),
            // Just past a range's end, or just before its start.
            3 => pick(&self.ranges).map_or(v, |(s, e)| {
                if v & 1 == 0 {
                    e
                } else {
                    s.wrapping_sub(MF_PAGE_SIZE)
                }
            }),
            // A page of a mapping's memory.
            4 => pick(&self.vmas).map_or(v, |r| page(r, v >> 8)),
            // A page some tmpfs file already has.
            5 => {
                let used: Vec<u64> = [&vfs.upper, &vfs.shm]
                    .into_iter()
                    .flat_map(|t| &t.nodes)
                    .filter_map(|n| match &n.kind {
                        TmpfsNodeKind::File { pages, .. } => Some(pages),
                        _ => None,
                    })
                    .flatten()
                    .map(|p| p.offset)
                    .collect();
                used.get(v as usize % used.len().max(1))
                    .copied()
                    .unwrap_or(v)
            }
            // An unaligned page of the ranges.
            6 => pick(&self.ranges).map_or(v, |r| page(r, v >> 8) | (v & 0xfff).max(1)),
            _ => v,
        }
    }
}

/// Names a tmpfs entry may be given: fine ones and every kind of bad one.
fn tmpfs_name(v: u64) -> Vec<u8> {
    match v % 12 {
        0 => b"a".to_vec(),
        1 => b"a/b".to_vec(),
        2 => b"/".to_vec(),
        3 => b"a\0b".to_vec(),
        4 => b".".to_vec(),
        5 => b"..".to_vec(),
        6 => Vec::new(),
        7 => vec![b'n'; 255],
        8 => vec![b'n'; 256],
        9 => b"tmp".to_vec(),
        10 => b"\0".to_vec(),
        _ => format!("n{}", v >> 8).into_bytes(),
    }
}

/// The smallest inode number above every one of `t`.
fn fresh_ino(t: &TmpfsSnapshot) -> u64 {
    t.nodes
        .iter()
        .map(|n| n.ino)
        .max()
        .unwrap_or(0)
        .wrapping_add(1)
}

/// A directory node of `t` (node `k`'s own, else the root's), by index.
fn some_dir(t: &TmpfsSnapshot, k: usize) -> Option<usize> {
    let is_dir = |i: &usize| matches!(t.nodes[*i].kind, TmpfsNodeKind::Dir { .. });
    let n = t.nodes.len();
    Some(k % n.max(1))
        .filter(|i| *i < n && is_dir(i))
        .or_else(|| t.nodes.iter().position(|x| x.ino == t.root).filter(is_dir))
}

fn entries_of(n: &mut TmpfsNodeRecord) -> Option<&mut Vec<TmpfsDirEntry>> {
    match &mut n.kind {
        TmpfsNodeKind::Dir { entries, .. } => Some(entries),
        _ => None,
    }
}

/// A new node with `kind`, named `name` in directory `dir`; its link count
/// and mode as a saved one would have them.
fn add_node(t: &mut TmpfsSnapshot, dir: usize, name: Vec<u8>, kind: TmpfsNodeKind) -> u64 {
    let ino = fresh_ino(t);
    let mode = match kind {
        TmpfsNodeKind::Dir { .. } => libc::S_IFDIR | 0o755,
        TmpfsNodeKind::File { .. } => libc::S_IFREG | 0o644,
        TmpfsNodeKind::Symlink { .. } => libc::S_IFLNK | 0o777,
    };
    let template = t.nodes[dir].clone();
    t.nodes.push(TmpfsNodeRecord {
        ino,
        nlink: 1,
        mode,
        kind,
        ..template
    });
    if let Some(e) = entries_of(&mut t.nodes[dir]) {
        e.push(TmpfsDirEntry { name, ino });
    }
    ino
}

/// Edits one of the namespace's tmpfs tables (the upper layer, or /dev/shm
/// when `k`'s top bit is set): an inode number, a link count, the root, a
/// directory entry's inode or name, a hard link, a cycle, a page's offset
/// or index, a new file, symlink or subtree, a node dropped. `sel` picks
/// page offsets ([`Owners::offset`]) and names.
fn edit_tmpfs(r: &mut VfsState, owners: &Owners, field: u8, k: usize, v: u64, sel: (u8, u8)) {
    let offset = owners.offset(r, sel.0, v);
    let t = if k & 0x80 == 0 {
        &mut r.upper
    } else {
        &mut r.shm
    };
    let n = t.nodes.len();
    if n == 0 {
        t.root = v;
        return;
    }
    let i = k % n;
    let name = tmpfs_name(u64::from(sel.1) | v << 8);
    match field % 16 {
        0 => t.nodes[i].ino = v,
        1 => t.nodes[i].nlink = v as u32,
        2 => t.root = if v & 1 == 0 { t.nodes[i].ino } else { v },
        3 => {
            let target = t.nodes[v as usize % n].ino;
            if let Some(e) = entries_of(&mut t.nodes[i]).and_then(|e| e.first_mut()) {
                e.ino = if sel.1 & 1 == 0 { target } else { v };
            }
        }
        4 => {
            if let Some(e) = entries_of(&mut t.nodes[i]).and_then(|e| e.last_mut()) {
                e.name = name;
            }
        }
        // A hard link to node `v`: a file's is fine when the link count
        // is raised too, a directory's is a cycle or a shared directory.
        5 => {
            let j = v as usize % n;
            let ino = t.nodes[j].ino;
            if let Some(d) = some_dir(t, k) {
                if let Some(e) = entries_of(&mut t.nodes[d]) {
                    e.push(TmpfsDirEntry { name, ino });
                }
                if sel.1 & 1 == 0 {
                    t.nodes[j].nlink = t.nodes[j].nlink.wrapping_add(1);
                }
            }
        }
        // A page moved, or a file given one.
        6 => {
            let file = (0..n)
                .map(|d| (i + d) % n)
                .find(|&x| matches!(t.nodes[x].kind, TmpfsNodeKind::File { .. }));
            match file.map(|x| &mut t.nodes[x].kind) {
                Some(TmpfsNodeKind::File { pages, size }) => match pages.first_mut() {
                    Some(pg) => pg.offset = offset,
                    None => {
                        *size = (*size).max(1);
                        pages.push(TmpfsPage { index: 0, offset });
                    }
                },
                _ => {
                    if let Some(d) = some_dir(t, k) {
                        let kind = TmpfsNodeKind::File {
                            size: MF_PAGE_SIZE,
                            pages: vec![TmpfsPage { index: 0, offset }],
                        };
                        add_node(t, d, name, kind);
                    }
                }
            }
        }
        // A new file of up to four pages from `offset` on.
        7 => {
            if let Some(d) = some_dir(t, k) {
                let count = u64::from(sel.1 % 4) + 1;
                let pages = (0..count)
                    .map(|x| TmpfsPage {
                        index: x,
                        offset: offset.wrapping_add(x * MF_PAGE_SIZE),
                    })
                    .collect();
                let kind = TmpfsNodeKind::File {
                    size: count * MF_PAGE_SIZE,
                    pages,
                };
                add_node(t, d, name, kind);
            }
        }
        // A cycle: out of the root's reach (two directories naming each
        // other), or through it (a directory naming an ancestor).
        8 => {
            if let Some(d) = some_dir(t, k) {
                let empty = || TmpfsNodeKind::Dir {
                    entries: Vec::new(),
                    whiteouts: Vec::new(),
                    opaque: false,
                };
                let a = add_node(t, d, name, empty());
                let back = if v & 1 == 0 { t.nodes[d].ino } else { a };
                add_node(t, t.nodes.len() - 1, b"b".to_vec(), empty());
                let last = t.nodes.len() - 1;
                if let Some(e) = entries_of(&mut t.nodes[last]) {
                    e.push(TmpfsDirEntry {
                        name: b"up".to_vec(),
                        ino: back,
                    });
                }
                if v & 2 != 0 {
                    // Detached: the pair no longer named from `d`.
                    if let Some(e) = entries_of(&mut t.nodes[d]) {
                        e.retain(|x| x.ino != a);
                    }
                }
            }
        }
        9 => {
            if let TmpfsNodeKind::File { pages, .. } = &mut t.nodes[i].kind {
                if let Some(pg) = pages.first_mut() {
                    pg.index = v;
                }
            }
        }
        // A symlink, its target any of the names (empty, NUL, '/', long).
        10 => {
            if let Some(d) = some_dir(t, k) {
                let mut target = tmpfs_name(v);
                if sel.1 & 1 == 1 {
                    target.resize(4096, b'x');
                }
                add_node(t, d, name, TmpfsNodeKind::Symlink { target });
            }
        }
        11 => t.nodes[i].mode = v as u32,
        12 => {
            t.nodes.remove(i);
        }
        13 => t.next_ino = v,
        14 => {
            if let TmpfsNodeKind::File { size, .. } = &mut t.nodes[i].kind {
                *size = v;
            }
        }
        // A whiteout named badly.
        _ => {
            if let TmpfsNodeKind::Dir { whiteouts, .. } = &mut t.nodes[i].kind {
                whiteouts.push(name);
            }
        }
    }
}

/// Why one fuzz case was refused: its records (what a hostile file is
/// expected to produce), or the harness could not assemble the file.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("assembling the statefile: {0}")]
    Assemble(TableError),
    #[error("{0}")]
    Load(#[from] LoadError),
}

/// Sets field `field` of a task record to `v` (registers by their order in
/// `Registers`, then the fields a validator judges).
fn edit_task(r: &mut TaskRecord, field: u8, v: u64) {
    let g = &mut r.regs;
    let regs: [&mut u64; 27] = [
        &mut g.r15,
        &mut g.r14,
        &mut g.r13,
        &mut g.r12,
        &mut g.rbp,
        &mut g.rbx,
        &mut g.r11,
        &mut g.r10,
        &mut g.r9,
        &mut g.r8,
        &mut g.rax,
        &mut g.rcx,
        &mut g.rdx,
        &mut g.rsi,
        &mut g.rdi,
        &mut g.orig_rax,
        &mut g.rip,
        &mut g.cs,
        &mut g.eflags,
        &mut g.rsp,
        &mut g.ss,
        &mut g.fs_base,
        &mut g.gs_base,
        &mut g.ds,
        &mut g.es,
        &mut g.fs,
        &mut g.gs,
    ];
    let field = usize::from(field) % 36;
    if let Some(reg) = regs.into_iter().nth(field) {
        *reg = v;
        return;
    }
    match field {
        27 => r.tgid = v as i32,
        28 => r.pending.push(SigInfo {
            signo: v as i32,
            code: 0,
            addr: 0,
            pid: 0,
            uid: 0,
        }),
        29 => r.alt_stack.0 = v,
        30 => r.alt_stack.2 = v,
        31 => r.restart = Some((v as i64, ClockId::Monotonic)),
        32 => r.cpu_time_ns = v,
        33 => r.clear_child_tid = v,
        34 => r.robust_list.0 = v,
        _ => {
            // An XSAVE word: the header (512..576) more often than not.
            let at = if v & 1 == 0 {
                512 + (v as usize >> 1) % 8 * 8
            } else {
                ((v as usize >> 1) % r.fp.xsave.len().max(1)) & !7
            };
            if let Some(w) = r.fp.xsave.get_mut(at..at + 8) {
                w.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// One fuzz case: `program` applied to `seed`, the result assembled into a
/// statefile and validated. Returns the validation's outcome; it must
/// never panic, hang or allocate beyond the statefile's size.
pub fn run_case(seed: &ObjectTable, program: &[u8]) -> Result<SavedKernel, CaseError> {
    let table = mutate(seed, program);
    let file = table.to_statefile().map_err(CaseError::Assemble)?;
    Ok(restore_validate(&file)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_bincode() {
        for v in INTERESTING {
            let mut enc = Encoder::new();
            enc.serde(v).unwrap();
            assert_eq!(enc.bytes(), varint(*v), "{v}");
            assert_eq!(varint_len(enc.bytes()[0]), enc.bytes().len(), "{v}");
        }
    }

    #[test]
    fn every_program_is_applicable() {
        let mut t = ObjectTable {
            entries: vec![Entry {
                type_name: "x".into(),
                id: 0,
                payload: vec![1, 2, 3],
            }],
            types: TypeTable::new(),
        };
        t.entries.push(t.entries[0].clone());
        for op in 0..=255u8 {
            for tail in [&[][..], &[0xff; 40][..], &[7, 0, 0, 5, 9, 9, 9]] {
                let mut prog = vec![op];
                prog.extend_from_slice(tail);
                let m = mutate(&t, &prog);
                assert!(m.entries.iter().all(|e| e.payload.len() <= MAX_PAYLOAD));
                let bytes = m.encode();
                let back = ObjectTable::parse(&bytes, TypeTable::new()).unwrap();
                assert_eq!(back.entries, m.entries);
            }
        }
    }
}
