//! `Savable`: how kernel objects save and load themselves, with a stable type
//! name and a version, and how older versions are migrated.
//!
//! An object's record is framed (u64 LE length, then its bytes) so that a
//! loader that reads too little or too much is caught at the object that did
//! it. Fields are encoded with bincode 2 (standard config: little-endian,
//! variable-length integers) through serde; that encoding is part of the
//! format and must never change for a given type version.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, StatefileError};
use crate::wire::{Get, Put};

/// Longest type name accepted in a type table.
pub const MAX_TYPE_NAME: usize = 255;
/// Most types a table may hold.
pub const MAX_TYPES: u32 = 65536;
/// Nesting depth of `Decoder::get` beyond which a file is refused (a hostile
/// file must not overflow the stack through a recursive type).
pub const MAX_DEPTH: u32 = 128;
/// Largest single serde value (bincode's own allocation limit).
const BINCODE_LIMIT: usize = 1 << 30;
const BLOB_MAGIC: [u8; 8] = *b"CRYOOBJ1";

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<BINCODE_LIMIT>,
> {
    bincode::config::standard().with_limit::<BINCODE_LIMIT>()
}

/// How many bytes bincode may claim per encoded byte: a value claims its
/// in-memory size (a string its length, a one-byte varint u128 16 bytes),
/// and nothing claims more than 16 bytes per byte it reads.
const CLAIM_PER_BYTE: usize = 16;

/// Decodes one serde value from `bytes` with bincode's allocation limit
/// scaled to `bytes`: a length prefix claiming more than the record could
/// hold (a 2^30-byte string in a 40-byte record) is refused before
/// anything is allocated, instead of bincode allocating it and then finding
/// the data missing. The limit is a const generic, so it is picked from a
/// ladder of powers of two.
fn decode_bounded<V: DeserializeOwned>(
    bytes: &[u8],
) -> std::result::Result<(V, usize), bincode::error::DecodeError> {
    let need = bytes
        .len()
        .saturating_mul(CLAIM_PER_BYTE)
        .saturating_add(4096);
    macro_rules! ladder {
        ($($bits:literal),*) => {
            $(
                if need <= 1usize << $bits {
                    return bincode::serde::decode_from_slice(
                        bytes,
                        bincode::config::standard().with_limit::<{ 1usize << $bits }>(),
                    );
                }
            )*
        };
    }
    ladder!(13, 16, 19, 22, 25, 28);
    bincode::serde::decode_from_slice(bytes, config())
}

/// A kernel object that can be written to and read back from a statefile.
///
/// `load` receives the version the object was *saved* at (from the file's
/// type table), which is at most `VERSION`; it decodes that version's layout
/// and migrates it forward in code.
pub trait Savable: Sized {
    /// Stable name; never change it once files carry it.
    const TYPE_NAME: &'static str;
    /// Current version; bump it whenever the saved layout changes.
    const VERSION: u32;
    /// Oldest saved version `load` can still migrate from.
    const MIN_VERSION: u32 = 1;

    fn save(&self, enc: &mut Encoder) -> Result<()>;
    fn load(dec: &mut Decoder<'_>, version: u32) -> Result<Self>;

    /// Records this type, and every saved type nested in it, in `types`.
    /// A record encoded with serde overrides it (see [`savable_serde!`]) so
    /// that the versions of its nested types reach the file's type table.
    fn register(types: &mut TypeTable) -> Result<()> {
        types.register(Self::TYPE_NAME, Self::VERSION)
    }
}

/// A type whose serde encoding reaches a statefile, nested inside a record:
/// it has a stable name and a version of its own, so that a change of its
/// shape is a visible version change (the shape test in `golden/` holds a
/// fingerprint of every such type). Declared with [`versioned!`].
pub trait Versioned: Serialize + DeserializeOwned {
    /// Stable name; never change it once files carry it.
    const TYPE_NAME: &'static str;
    /// Bump it whenever the serde shape changes.
    const VERSION: u32;
    /// The serde container name (the Rust type's own name), which shape
    /// tracing reports.
    const SERDE_NAME: &'static str;

    /// Visits this type, then (if the visitor wants) every versioned type
    /// nested in it.
    fn visit<V: TypeVisitor>(v: &mut V);
}

/// Walks a tree of versioned types: registration, version checks on load,
/// and shape tracing are visitors.
pub trait TypeVisitor {
    /// Called for `T`, whose direct nested versioned types have the serde
    /// names `nested`; returns whether to descend into them (false once `T`
    /// was seen).
    fn visit<T: Versioned>(&mut self, nested: &[&'static str]) -> bool;
}

/// Registers every visited type in a type table.
struct Register<'a> {
    types: &'a mut TypeTable,
    error: Option<StatefileError>,
}

impl TypeVisitor for Register<'_> {
    fn visit<T: Versioned>(&mut self, _nested: &[&'static str]) -> bool {
        if self.types.get(T::TYPE_NAME) == Some(T::VERSION) {
            return false;
        }
        if let Err(e) = self.types.register(T::TYPE_NAME, T::VERSION) {
            self.error.get_or_insert(e);
            return false;
        }
        true
    }
}

/// Registers `T` and its nested types.
pub fn register_versioned<T: Versioned>(types: &mut TypeTable) -> Result<()> {
    let mut r = Register { types, error: None };
    T::visit(&mut r);
    r.error.map_or(Ok(()), Err)
}

/// Checks that every type nested in `T` was saved at the version this code
/// decodes: a serde record has no migration of its own, so an older or newer
/// nested version is refused by name rather than misread.
struct CheckSaved<'a> {
    types: &'a TypeTable,
    seen: std::collections::BTreeSet<&'static str>,
    error: Option<StatefileError>,
}

impl TypeVisitor for CheckSaved<'_> {
    fn visit<T: Versioned>(&mut self, _nested: &[&'static str]) -> bool {
        if !self.seen.insert(T::TYPE_NAME) || self.error.is_some() {
            return false;
        }
        // A serde record decodes its nested types at exactly this version.
        match self
            .types
            .saved_version(T::TYPE_NAME, T::VERSION, T::VERSION)
        {
            Ok(_) => true,
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }
}

/// Checks `T` and everything nested in it against the file's type table.
pub fn check_saved_versions<T: Versioned>(types: &TypeTable) -> Result<()> {
    let mut c = CheckSaved {
        types,
        seen: Default::default(),
        error: None,
    };
    T::visit(&mut c);
    c.error.map_or(Ok(()), Err)
}

/// Declares a [`Versioned`] type: its stable name, its version and the
/// versioned types nested directly in it (the shape test fails when one is
/// missing from the list).
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Limit { cur: u64, max: u64 }
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Limits { all: Vec<Limit> }
/// statefile::versioned!(Limit, "kernel.Limit", 1);
/// statefile::versioned!(Limits, "kernel.Limits", 1, [Limit]);
/// ```
#[macro_export]
macro_rules! versioned {
    ($t:ident, $name:expr, $version:expr) => {
        $crate::versioned!($t, $name, $version, []);
    };
    ($t:ident, $name:expr, $version:expr, [$($n:ty),* $(,)?]) => {
        impl $crate::Versioned for $t {
            const TYPE_NAME: &'static str = $name;
            const VERSION: u32 = $version;
            const SERDE_NAME: &'static str = stringify!($t);
            fn visit<V: $crate::TypeVisitor>(v: &mut V) {
                let nested: &[&'static str] = &[$(<$n as $crate::Versioned>::SERDE_NAME),*];
                if v.visit::<Self>(nested) {
                    $(<$n as $crate::Versioned>::visit(v);)*
                }
            }
        }
    };
}

/// Implements `Savable` (and [`Versioned`]) for a serde record that has a
/// single version (no migrations): `save` serializes it, `load` checks that
/// it and every nested versioned type were saved at the versions this code
/// decodes, then deserializes it. The list names the versioned types nested
/// directly in it.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Uts { hostname: String }
/// statefile::savable_serde!(Uts, "kernel.Uts", 1);
/// ```
#[macro_export]
macro_rules! savable_serde {
    ($t:ident, $name:expr, $version:expr) => {
        $crate::savable_serde!($t, $name, $version, []);
    };
    ($t:ident, $name:expr, $version:expr, [$($n:ty),* $(,)?]) => {
        $crate::versioned!($t, $name, $version, [$($n),*]);
        impl $crate::Savable for $t {
            const TYPE_NAME: &'static str = $name;
            const VERSION: u32 = $version;
            const MIN_VERSION: u32 = $version;
            fn save(&self, enc: &mut $crate::Encoder) -> $crate::Result<()> {
                enc.serde(self)
            }
            fn load(dec: &mut $crate::Decoder<'_>, _version: u32) -> $crate::Result<Self> {
                $crate::check_saved_versions::<Self>(dec.types())?;
                dec.serde()
            }
            fn register(types: &mut $crate::TypeTable) -> $crate::Result<()> {
                $crate::register_versioned::<Self>(types)
            }
        }
    };
}

/// The type name -> version table a file was written with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeTable {
    map: BTreeMap<String, u32>,
}

impl TypeTable {
    pub fn new() -> TypeTable {
        TypeTable::default()
    }

    /// Records `name` at `version`; the same name at two versions is an error.
    pub fn register(&mut self, name: &str, version: u32) -> Result<()> {
        if name.is_empty() || name.len() > MAX_TYPE_NAME || version == 0 {
            return Err(StatefileError::invalid(format!(
                "type name {name:?} / version {version} not allowed"
            )));
        }
        match self.map.get(name) {
            Some(&v) if v != version => Err(StatefileError::TypeConflict {
                type_name: name.to_string(),
                first: v,
                second: version,
            }),
            Some(_) => Ok(()),
            None => {
                if self.map.len() >= MAX_TYPES as usize {
                    return Err(StatefileError::invalid("too many types"));
                }
                self.map.insert(name.to_string(), version);
                Ok(())
            }
        }
    }

    /// Adds every entry of `other`.
    pub fn merge(&mut self, other: &TypeTable) -> Result<()> {
        for (n, &v) in &other.map {
            self.register(n, v)?;
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.map.get(name).copied()
    }

    /// The version type `name` was saved at, if this code (which writes
    /// `current` and reads back to `oldest`) can load it.
    pub fn saved_version(&self, name: &str, current: u32, oldest: u32) -> Result<u32> {
        let found = self.get(name).ok_or_else(|| StatefileError::UnknownType {
            type_name: name.into(),
        })?;
        if found > current {
            return Err(StatefileError::FutureTypeVersion {
                type_name: name.into(),
                found,
                supported: current,
            });
        }
        if found < oldest {
            return Err(StatefileError::TypeVersionTooOld {
                type_name: name.into(),
                found,
                oldest,
            });
        }
        Ok(found)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.map.iter().map(|(k, &v)| (k.as_str(), v))
    }

    /// u32 count, then per type: u32 name length, name, u32 version.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Put::default();
        p.u32(self.map.len() as u32);
        for (n, &v) in &self.map {
            p.str(n);
            p.u32(v);
        }
        p.0
    }

    pub fn decode(data: &[u8]) -> Result<TypeTable> {
        let bad = |reason: String| StatefileError::CorruptSection {
            section: "type-table".into(),
            reason,
        };
        let mut g = Get::new(data);
        let count = g.u32("type count").map_err(|e| bad(e.0))?;
        if count > MAX_TYPES {
            return Err(StatefileError::LimitExceeded {
                what: "type count",
                value: count as u64,
                limit: MAX_TYPES as u64,
            });
        }
        let mut t = TypeTable::new();
        for _ in 0..count {
            let name = g.str("type name", MAX_TYPE_NAME).map_err(|e| bad(e.0))?;
            let version = g.u32("type version").map_err(|e| bad(e.0))?;
            if t.map.contains_key(&name) || version == 0 || name.is_empty() {
                return Err(bad(format!("bad or repeated entry {name:?} v{version}")));
            }
            t.map.insert(name, version);
        }
        if g.remaining() != 0 {
            return Err(bad(format!("{} trailing bytes", g.remaining())));
        }
        Ok(t)
    }
}

/// Encodes objects into a byte buffer and records the type of each.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
    types: TypeTable,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Saves a `Savable` object (framed, its type recorded).
    pub fn put<T: Savable>(&mut self, v: &T) -> Result<()> {
        T::register(&mut self.types)?;
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; 8]);
        v.save(self)?;
        let len = (self.buf.len() - start - 8) as u64;
        self.buf[start..start + 8].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    /// Appends bytes as they are (an object table's entry head).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Encodes plain fields (any serde value) with bincode.
    pub fn serde<V: Serialize + ?Sized>(&mut self, v: &V) -> Result<()> {
        bincode::serde::encode_into_std_write(v, &mut self.buf, config()).map_err(|e| {
            StatefileError::Encode {
                context: std::any::type_name::<V>().into(),
                reason: e.to_string(),
            }
        })?;
        Ok(())
    }

    pub fn types(&self) -> &TypeTable {
        &self.types
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_parts(self) -> (Vec<u8>, TypeTable) {
        (self.buf, self.types)
    }
}

/// Decodes objects from bytes, using the type table the bytes were written
/// with. Every read is bounded by the current object's record.
pub struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
    depth: u32,
    types: &'a TypeTable,
}

impl<'a> Decoder<'a> {
    pub fn new(data: &'a [u8], types: &'a TypeTable) -> Decoder<'a> {
        Decoder {
            data,
            pos: 0,
            end: data.len(),
            depth: 0,
            types,
        }
    }

    /// The version `T` was saved at, checked against what this code loads.
    pub fn saved_version<T: Savable>(&self) -> Result<u32> {
        self.types
            .saved_version(T::TYPE_NAME, T::VERSION, T::MIN_VERSION)
    }

    /// Loads one `Savable` object, running its migrations if it was saved at
    /// an older version.
    pub fn get<T: Savable>(&mut self) -> Result<T> {
        let version = self.saved_version::<T>()?;
        if self.depth >= MAX_DEPTH {
            return Err(StatefileError::LimitExceeded {
                what: "object nesting depth",
                value: self.depth as u64 + 1,
                limit: MAX_DEPTH as u64,
            });
        }
        let short = |what: String| StatefileError::Decode {
            context: T::TYPE_NAME.into(),
            reason: what,
        };
        if self.end - self.pos < 8 {
            return Err(short("record length cut short".into()));
        }
        let mut lb = [0u8; 8];
        lb.copy_from_slice(&self.data[self.pos..self.pos + 8]);
        let len = u64::from_le_bytes(lb);
        let avail = (self.end - self.pos - 8) as u64;
        if len > avail {
            return Err(short(format!("record of {len} bytes, only {avail} left")));
        }
        self.pos += 8;
        let outer_end = self.end;
        self.end = self.pos + len as usize;
        self.depth += 1;
        let result = T::load(self, version);
        self.depth -= 1;
        let inner_end = self.end;
        self.end = outer_end;
        let v = result?;
        if self.pos != inner_end {
            return Err(StatefileError::TrailingBytes {
                type_name: T::TYPE_NAME.into(),
                remaining: (inner_end - self.pos) as u64,
            });
        }
        Ok(v)
    }

    /// Decodes plain fields (any serde value) with bincode, bounded by the
    /// current record.
    pub fn serde<V: DeserializeOwned>(&mut self) -> Result<V> {
        let (v, used) =
            decode_bounded(&self.data[self.pos..self.end]).map_err(|e| StatefileError::Decode {
                context: std::any::type_name::<V>().into(),
                reason: e.to_string(),
            })?;
        self.pos += used;
        Ok(v)
    }

    /// The type table the bytes were written with.
    pub fn types(&self) -> &'a TypeTable {
        self.types
    }

    /// The version nested type `T` was saved at (for a record's migration
    /// of a nested type), checked against what this code knows.
    pub fn saved_version_of<T: Versioned>(&self) -> Result<u32> {
        self.types.saved_version(T::TYPE_NAME, T::VERSION, 1)
    }

    /// Bytes left in the current record.
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Checks that everything was consumed.
    pub fn finish(self) -> Result<()> {
        if self.pos != self.data.len() {
            return Err(StatefileError::TrailingBytes {
                type_name: "<top level>".into(),
                remaining: (self.data.len() - self.pos) as u64,
            });
        }
        Ok(())
    }
}

/// Encodes one object as a standalone blob: magic "CRYOOBJ1", u32 type-table
/// length, type table, then the object's framed record.
pub fn to_bytes<T: Savable>(v: &T) -> Result<Vec<u8>> {
    let mut enc = Encoder::new();
    enc.put(v)?;
    let (body, types) = enc.into_parts();
    let table = types.encode();
    let mut out = Vec::with_capacity(12 + table.len() + body.len());
    out.extend_from_slice(&BLOB_MAGIC);
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    out.extend_from_slice(&table);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Splits a standalone blob into its type table and object bytes.
pub fn split_blob(data: &[u8]) -> Result<(TypeTable, &[u8])> {
    let mut g = Get::new(data);
    let bad = |reason: String| StatefileError::Decode {
        context: "object blob".into(),
        reason,
    };
    let magic = g.take(8, "magic").map_err(|e| bad(e.0))?;
    if magic != BLOB_MAGIC {
        return Err(StatefileError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let tlen = g.u32("type table length").map_err(|e| bad(e.0))? as usize;
    let table = TypeTable::decode(g.take(tlen, "type table").map_err(|e| bad(e.0))?)?;
    let rest = g.remaining();
    let body = g.take(rest, "object").map_err(|e| bad(e.0))?;
    Ok((table, body))
}

/// Decodes a blob written by `to_bytes`, migrating it if it is older.
pub fn from_bytes<T: Savable>(data: &[u8]) -> Result<T> {
    let (table, body) = split_blob(data)?;
    let mut dec = Decoder::new(body, &table);
    let v = dec.get::<T>()?;
    dec.finish()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Leaf {
        a: u32,
        s: String,
    }
    crate::savable_serde!(Leaf, "test.Leaf", 1);

    #[derive(Debug, PartialEq)]
    struct Tree {
        leaves: Vec<Leaf>,
    }
    impl Savable for Tree {
        const TYPE_NAME: &'static str = "test.Tree";
        const VERSION: u32 = 2;
        fn save(&self, enc: &mut Encoder) -> Result<()> {
            enc.serde(&(self.leaves.len() as u64))?;
            for l in &self.leaves {
                enc.put(l)?;
            }
            Ok(())
        }
        fn load(dec: &mut Decoder<'_>, _v: u32) -> Result<Self> {
            let n: u64 = dec.serde()?;
            let mut leaves = Vec::new();
            for _ in 0..n {
                leaves.push(dec.get()?);
            }
            Ok(Tree { leaves })
        }
    }

    #[test]
    fn nested_round_trip_and_table() {
        let t = Tree {
            leaves: vec![
                Leaf {
                    a: 1,
                    s: "x".into(),
                },
                Leaf {
                    a: 2,
                    s: "y".into(),
                },
            ],
        };
        let bytes = to_bytes(&t).unwrap();
        assert_eq!(from_bytes::<Tree>(&bytes).unwrap(), t);
        let (table, _) = split_blob(&bytes).unwrap();
        assert_eq!(table.get("test.Tree"), Some(2));
        assert_eq!(table.get("test.Leaf"), Some(1));
    }

    #[test]
    fn hostile_count_is_bounded() {
        // Claims 2^60 leaves; must fail on missing data, not allocate.
        let mut enc = Encoder::new();
        enc.types.register("test.Tree", 2).unwrap();
        enc.types.register("test.Leaf", 1).unwrap();
        let mut rec = Encoder::new();
        rec.serde(&(1u64 << 60)).unwrap();
        let mut body = (rec.buf.len() as u64).to_le_bytes().to_vec();
        body.extend_from_slice(&rec.buf);
        let mut dec = Decoder::new(&body, &enc.types);
        assert!(matches!(
            dec.get::<Tree>(),
            Err(StatefileError::Decode { .. })
        ));
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Named {
        name: String,
    }
    crate::savable_serde!(Named, "test.Named", 1);

    #[test]
    fn hostile_string_length_is_refused_before_allocating() {
        // 2^29 bytes claimed (below the global 1 GiB limit) in a record of
        // a few bytes: refused by the record-scaled limit.
        let mut rec = Encoder::new();
        rec.serde(&(1u64 << 29)).unwrap();
        rec.buf.extend_from_slice(b"abc");
        let mut body = (rec.buf.len() as u64).to_le_bytes().to_vec();
        body.extend_from_slice(&rec.buf);
        let mut types = TypeTable::new();
        types.register("test.Named", 1).unwrap();
        let mut dec = Decoder::new(&body, &types);
        match dec.get::<Named>() {
            Err(StatefileError::Decode { reason, .. }) => {
                assert!(reason.to_lowercase().contains("limit"), "{reason}")
            }
            other => panic!("unexpected {other:?}"),
        }
        // A long string that is really there still loads.
        let long = Named {
            name: "x".repeat(1 << 20),
        };
        assert_eq!(
            from_bytes::<Named>(&to_bytes(&long).unwrap()).unwrap(),
            long
        );
    }

    #[test]
    fn future_version_names_both() {
        let mut table = TypeTable::new();
        table.register("test.Tree", 9).unwrap();
        let mut dec = Decoder::new(&[], &table);
        match dec.get::<Tree>() {
            Err(StatefileError::FutureTypeVersion {
                type_name,
                found,
                supported,
            }) => {
                assert_eq!((type_name.as_str(), found, supported), ("test.Tree", 9, 2));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn conflicting_versions_refused() {
        let mut t = TypeTable::new();
        t.register("a", 1).unwrap();
        assert!(matches!(
            t.register("a", 2),
            Err(StatefileError::TypeConflict { .. })
        ));
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        x: u8,
    }
    crate::versioned!(Inner, "test.Inner", 3);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Outer {
        inner: Vec<Inner>,
    }
    crate::savable_serde!(Outer, "test.Outer", 1, [Inner]);

    #[test]
    fn nested_versions_reach_the_type_table_and_are_checked() {
        let v = Outer {
            inner: vec![Inner { x: 1 }],
        };
        let bytes = to_bytes(&v).unwrap();
        let (table, body) = split_blob(&bytes).unwrap();
        assert_eq!(table.get("test.Inner"), Some(3));
        assert_eq!(from_bytes::<Outer>(&bytes).unwrap(), v);
        // The same bytes claiming an older or a newer nested version are
        // refused by the nested type's name.
        for (found, want) in [(2, "type_version_too_old"), (4, "future_type_version")] {
            let mut t = TypeTable::new();
            t.register("test.Outer", 1).unwrap();
            t.register("test.Inner", found).unwrap();
            let mut dec = Decoder::new(body, &t);
            let err = dec.get::<Outer>().unwrap_err();
            assert_eq!(err.kind(), want);
            assert!(err.to_string().contains("test.Inner"), "{err}");
        }
    }
}
