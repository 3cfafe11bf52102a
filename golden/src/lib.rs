//! Golden statefiles: regression data for every released format version and
//! every version of a type, with what loading each must show.
//!
//! `data/` holds bytes written by older code; tests load them with the newest
//! code. The committed files are what is tested: regenerate them only when a
//! new version is *added* (`CRYO_REGENERATE_GOLDEN=1 cargo test -p
//! cryo-golden -- --ignored regenerate`), never to make a failing test pass.
//!
//! The real golden statefiles (`data/real-guest-vN.*`, written by `cryo
//! checkpoint` of a running guest, one more for every version change) are
//! made and restored by `tests/real_guest.rs`; `README.md` says how to add
//! one.
//!
//! `evolving` shows the migration pattern every kernel object follows: the
//! type `golden.Evolving` went through three layouts, each old layout is kept
//! as a private struct, and `load` decodes the saved version's layout and
//! converts it forward step by step.

use std::path::{Path, PathBuf};

use statefile::{Arch, Compression, Encoder, Header, MemoryOptions, Result, SectionKind, Writer};

/// Where the golden files live.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

pub mod evolving {
    use serde::{Deserialize, Serialize};
    use statefile::{Decoder, Encoder, Result, Savable};

    /// A nested object that never changed (version 1 throughout).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Owner {
        pub uid: u32,
        pub gid: u32,
    }
    statefile::savable_serde!(Owner, "golden.Owner", 1);

    pub const TYPE_NAME: &str = "golden.Evolving";

    /// Version 1 as it was written: `{ name, count, flags }`, owner nested.
    pub mod v1 {
        use super::*;

        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct Evolving {
            pub name: String,
            pub count: u32,
            /// bit 0: pinned, bit 1: shared.
            pub flags: u8,
            #[serde(skip)]
            pub owner: Option<Owner>,
        }

        impl Savable for Evolving {
            const TYPE_NAME: &'static str = TYPE_NAME;
            const VERSION: u32 = 1;
            fn save(&self, enc: &mut Encoder) -> Result<()> {
                enc.serde(self)?;
                enc.put(self.owner.as_ref().unwrap_or(&Owner { uid: 0, gid: 0 }))
            }
            fn load(dec: &mut Decoder<'_>, _version: u32) -> Result<Self> {
                let mut v: Evolving = dec.serde()?;
                v.owner = Some(dec.get()?);
                Ok(v)
            }
        }
    }

    /// Version 2 added `tags`.
    pub mod v2 {
        use super::*;

        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct Evolving {
            pub name: String,
            pub count: u32,
            pub flags: u8,
            pub tags: Vec<String>,
            #[serde(skip)]
            pub owner: Option<Owner>,
        }

        impl Savable for Evolving {
            const TYPE_NAME: &'static str = TYPE_NAME;
            const VERSION: u32 = 2;
            fn save(&self, enc: &mut Encoder) -> Result<()> {
                enc.serde(self)?;
                enc.put(self.owner.as_ref().unwrap_or(&Owner { uid: 0, gid: 0 }))
            }
            fn load(dec: &mut Decoder<'_>, _version: u32) -> Result<Self> {
                let mut v: Evolving = dec.serde()?;
                v.owner = Some(dec.get()?);
                Ok(v)
            }
        }

        impl From<v1::Evolving> for Evolving {
            /// The pinned flag became a tag.
            fn from(o: v1::Evolving) -> Self {
                let mut tags = Vec::new();
                if o.flags & 1 != 0 {
                    tags.push("pinned".to_string());
                }
                Evolving {
                    name: o.name,
                    count: o.count,
                    flags: o.flags,
                    tags,
                    owner: o.owner,
                }
            }
        }
    }

    /// The current version (3): `name` renamed to `title`, `flags` removed
    /// (its shared bit became a tag), `tags` kept.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Evolving {
        pub title: String,
        pub count: u32,
        pub tags: Vec<String>,
        pub owner: Owner,
    }

    /// The saved layout of version 3.
    #[derive(Serialize, Deserialize)]
    struct V3Fields {
        title: String,
        count: u32,
        tags: Vec<String>,
    }

    impl From<v2::Evolving> for Evolving {
        fn from(o: v2::Evolving) -> Self {
            let mut tags = o.tags;
            if o.flags & 2 != 0 && !tags.iter().any(|t| t == "shared") {
                tags.push("shared".to_string());
            }
            Evolving {
                title: o.name,
                count: o.count,
                tags,
                owner: o.owner.unwrap_or(Owner { uid: 0, gid: 0 }),
            }
        }
    }

    impl Savable for Evolving {
        const TYPE_NAME: &'static str = TYPE_NAME;
        const VERSION: u32 = 3;

        fn save(&self, enc: &mut Encoder) -> Result<()> {
            enc.serde(&V3Fields {
                title: self.title.clone(),
                count: self.count,
                tags: self.tags.clone(),
            })?;
            enc.put(&self.owner)
        }

        fn load(dec: &mut Decoder<'_>, version: u32) -> Result<Self> {
            match version {
                1 => Ok(v2::Evolving::from(v1::Evolving::load(dec, 1)?).into()),
                2 => Ok(v2::Evolving::load(dec, 2)?.into()),
                _ => {
                    let f: V3Fields = dec.serde()?;
                    Ok(Evolving {
                        title: f.title,
                        count: f.count,
                        tags: f.tags,
                        owner: dec.get()?,
                    })
                }
            }
        }
    }

    /// The objects stored in the golden files, by version.
    pub fn sample_v1() -> v1::Evolving {
        v1::Evolving {
            name: "init".into(),
            count: 7,
            flags: 1,
            owner: Some(Owner { uid: 0, gid: 0 }),
        }
    }
    pub fn sample_v2() -> v2::Evolving {
        v2::Evolving {
            name: "shell".into(),
            count: 42,
            flags: 3,
            tags: vec!["net".into()],
            owner: Some(Owner {
                uid: 1000,
                gid: 100,
            }),
        }
    }
    pub fn sample_v3() -> Evolving {
        Evolving {
            title: "daemon".into(),
            count: 1000,
            tags: vec!["net".into(), "fs".into()],
            owner: Owner {
                uid: 65534,
                gid: 65534,
            },
        }
    }
}

/// Pages of the golden memory image: page i is zero if i % 5 == 0, a
/// pseudo-random page if i % 5 == 1, text otherwise.
pub fn golden_image(pages: usize) -> Vec<u8> {
    let mut v = vec![0u8; pages * 4096];
    let mut x = 0x243f6a8885a308d3u64;
    for (i, page) in v.chunks_mut(4096).enumerate() {
        match i % 5 {
            0 => {}
            1 => page.iter_mut().for_each(|b| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }),
            _ => {
                let line = format!("page {i}: the quick brown fox jumps over the lazy dog\n");
                for (j, b) in page.iter_mut().enumerate() {
                    *b = line.as_bytes()[j % line.len()];
                }
            }
        }
    }
    v
}

/// Pages in the golden file's "memfile" image (3 chunks of 64 pages).
pub const GOLDEN_PAGES: usize = 130;

/// Writes the full format-v1 golden statefile.
pub fn write_format_v1(path: &Path) -> Result<()> {
    let header = Header {
        arch: Arch::X86_64,
        page_size: 4096,
        producer: "cryo 0.1.0 (golden)".into(),
        metadata: [
            ("container-id".to_string(), "golden-0001".to_string()),
            ("created".to_string(), "2025-01-01T00:00:00Z".to_string()),
        ]
        .into_iter()
        .collect(),
    };
    let mut w = Writer::create(path, header)?;
    let mut enc = Encoder::new();
    enc.put(&evolving::sample_v3())?;
    w.write_state(SectionKind::Kernel, "", Compression::default(), &enc)?;
    w.write_section(
        SectionKind::Other(0x100),
        "notes",
        Compression::None,
        b"golden statefile, format version 1\n",
    )?;
    let opts = MemoryOptions {
        compression: Compression::default(),
        chunk_pages: 64,
    };
    w.write_memory("memfile", &golden_image(GOLDEN_PAGES), &opts)?;
    let raw = MemoryOptions {
        compression: Compression::None,
        chunk_pages: 64,
    };
    w.write_memory("raw", &golden_image(10), &raw)?;
    w.finish()?;
    Ok(())
}
