//! An object table: a section body made of records keyed by the object's
//! type and sandbox id, so that a loader asks for "kernel.Task #7" instead of
//! "the sixth record", objects refer to each other by id (sharing survives),
//! and an inspector can list every record.
//!
//! Layout: a sequence of entries, each `u32 name length, type name, u64 id,
//! framed record` (the frame is [`Encoder::put`]'s: u64 length, then the
//! object's bytes). Every entry's type must be in the file's type table and
//! no (type, id) may appear twice. A loader that finishes with records it
//! never asked for is told so ([`Objects::finish`]): in a hostile file an
//! unreferenced record is damage, not data to ignore.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Result, StatefileError};
use crate::savable::{Decoder, Encoder, Savable, TypeTable, MAX_TYPE_NAME};
use crate::wire::{Get, Put};

/// Most objects one table may hold.
pub const MAX_OBJECTS: usize = 1 << 22;

/// Writes an object table.
#[derive(Debug, Default)]
pub struct ObjectEncoder {
    enc: Encoder,
    keys: BTreeSet<(&'static str, u64)>,
}

impl ObjectEncoder {
    pub fn new() -> ObjectEncoder {
        ObjectEncoder::default()
    }

    /// Adds object `id` of type `T`; the same (type, id) twice is a bug in
    /// the saver and refused.
    pub fn put<T: Savable>(&mut self, id: u64, v: &T) -> Result<()> {
        if !self.keys.insert((T::TYPE_NAME, id)) {
            return Err(StatefileError::DuplicateObject {
                type_name: T::TYPE_NAME.into(),
                id,
            });
        }
        let mut head = Put::default();
        head.str(T::TYPE_NAME);
        head.u64(id);
        self.enc.raw(&head.0);
        self.enc.put(v)
    }

    /// How many objects were added.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The encoded table, ready for a section.
    pub fn encoder(&self) -> &Encoder {
        &self.enc
    }
}

/// One entry of a parsed table.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The framed record's bounds in the table's bytes.
    start: usize,
    end: usize,
}

/// A parsed object table: every entry's bounds checked, nothing decoded yet.
pub struct Objects<'a> {
    data: &'a [u8],
    types: &'a TypeTable,
    index: BTreeMap<(String, u64), Entry>,
    loaded: RefCell<BTreeSet<(String, u64)>>,
}

impl<'a> Objects<'a> {
    /// Splits `data` into its entries.
    pub fn parse(data: &'a [u8], types: &'a TypeTable) -> Result<Objects<'a>> {
        let bad = |reason: String| StatefileError::CorruptSection {
            section: "object table".into(),
            reason,
        };
        let mut g = Get::new(data);
        let mut index = BTreeMap::new();
        while g.remaining() > 0 {
            let name = g.str("object type", MAX_TYPE_NAME).map_err(|e| bad(e.0))?;
            if types.get(&name).is_none() {
                return Err(StatefileError::UnknownType { type_name: name });
            }
            let id = g.u64("object id").map_err(|e| bad(e.0))?;
            let start = data.len() - g.remaining();
            let len = g.u64("record length").map_err(|e| bad(e.0))?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= g.remaining())
                .ok_or_else(|| {
                    bad(format!(
                        "record of {name} #{id} claims {len} bytes, {} left",
                        g.remaining()
                    ))
                })?;
            g.take(len, "record").map_err(|e| bad(e.0))?;
            let end = data.len() - g.remaining();
            if index.len() >= MAX_OBJECTS {
                return Err(StatefileError::LimitExceeded {
                    what: "object count",
                    value: index.len() as u64 + 1,
                    limit: MAX_OBJECTS as u64,
                });
            }
            if index
                .insert((name.clone(), id), Entry { start, end })
                .is_some()
            {
                return Err(StatefileError::DuplicateObject {
                    type_name: name,
                    id,
                });
            }
        }
        Ok(Objects {
            data,
            types,
            index,
            loaded: RefCell::default(),
        })
    }

    /// Loads object `id` of type `T` (migrating it if it is older).
    pub fn get<T: Savable>(&self, id: u64) -> Result<T> {
        let key = (T::TYPE_NAME.to_string(), id);
        let entry = self
            .index
            .get(&key)
            .ok_or_else(|| StatefileError::MissingObject {
                type_name: T::TYPE_NAME.into(),
                id,
            })?;
        let mut dec = Decoder::new(&self.data[entry.start..entry.end], self.types);
        let v = dec.get::<T>()?;
        dec.finish()?;
        self.loaded.borrow_mut().insert(key);
        Ok(v)
    }

    /// The ids of every object of type `T`, ascending.
    pub fn ids<T: Savable>(&self) -> Vec<u64> {
        self.index
            .range((T::TYPE_NAME.to_string(), 0)..=(T::TYPE_NAME.to_string(), u64::MAX))
            .map(|((_, id), _)| *id)
            .collect()
    }

    /// Every entry: type, id, record size in bytes (for `cryo inspect`).
    pub fn entries(&self) -> impl Iterator<Item = (&str, u64, usize)> + '_ {
        self.index
            .iter()
            .map(|((t, id), e)| (t.as_str(), *id, e.end - e.start - 8))
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Checks that every object was loaded: one nothing referred to is
    /// refused by name.
    pub fn finish(&self) -> Result<()> {
        let loaded = self.loaded.borrow();
        match self.index.keys().find(|k| !loaded.contains(*k)) {
            Some((t, id)) => Err(StatefileError::UnreferencedObject {
                type_name: t.clone(),
                id: *id,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        peer: u64,
    }
    crate::savable_serde!(Thing, "test.Thing", 1);

    fn table(things: &[(u64, u64)]) -> (Vec<u8>, TypeTable) {
        let mut o = ObjectEncoder::new();
        for &(id, peer) in things {
            o.put(id, &Thing { peer }).unwrap();
        }
        (o.enc.bytes().to_vec(), o.enc.types().clone())
    }

    #[test]
    fn objects_are_found_by_type_and_id() {
        let (bytes, types) = table(&[(7, 9), (9, 7)]);
        let objs = Objects::parse(&bytes, &types).unwrap();
        assert_eq!(objs.ids::<Thing>(), vec![7, 9]);
        assert_eq!(objs.get::<Thing>(9).unwrap(), Thing { peer: 7 });
        assert!(matches!(
            objs.finish(),
            Err(StatefileError::UnreferencedObject { id: 7, .. })
        ));
        objs.get::<Thing>(7).unwrap();
        objs.finish().unwrap();
        assert!(matches!(
            objs.get::<Thing>(8),
            Err(StatefileError::MissingObject { id: 8, .. })
        ));
    }

    #[test]
    fn duplicates_are_refused_on_both_sides() {
        let mut o = ObjectEncoder::new();
        o.put(1, &Thing { peer: 0 }).unwrap();
        assert!(matches!(
            o.put(1, &Thing { peer: 0 }),
            Err(StatefileError::DuplicateObject { .. })
        ));
        let (mut bytes, types) = table(&[(1, 0)]);
        let copy = bytes.clone();
        bytes.extend_from_slice(&copy);
        assert!(matches!(
            Objects::parse(&bytes, &types),
            Err(StatefileError::DuplicateObject { id: 1, .. })
        ));
    }

    #[test]
    fn hostile_lengths_and_names_are_refused() {
        let (bytes, types) = table(&[(1, 0)]);
        for cut in 1..bytes.len() {
            assert!(Objects::parse(&bytes[..cut], &types).is_err(), "cut {cut}");
        }
        let mut unknown = bytes.clone();
        unknown[4] = b'x';
        assert!(matches!(
            Objects::parse(&unknown, &types),
            Err(StatefileError::UnknownType { .. })
        ));
    }
}
