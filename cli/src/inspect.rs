//! `cryo inspect [--json] STATEFILE`: what a statefile holds (header,
//! metadata, types, sections, memory map) and whether it is intact, like
//! CRIU's crit for images. Prints as much of a damaged file as can be read;
//! the exit code is non-zero on any damage, each damage named on stderr.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};
use statefile::{OpenOptions, Reader, SectionKind, StatefileError};

/// Runs the command; returns the process exit code (0 intact, 1 damaged or
/// unreadable).
pub fn run(path: &Path, json: bool) -> anyhow::Result<i32> {
    let report = inspect(path);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report.json)?;
        writeln!(out)?;
    } else {
        out.write_all(report.text.as_bytes())?;
    }
    out.flush()?;
    for d in &report.damage {
        eprintln!("cryo inspect: {}: {d}", path.display());
    }
    Ok(if report.damage.is_empty() { 0 } else { 1 })
}

struct Report {
    text: String,
    json: Value,
    damage: Vec<String>,
}

fn damage_json(e: &StatefileError) -> Value {
    json!({ "kind": e.kind(), "message": e.to_string() })
}

/// What a host needs to restore the statefile, from its header: the
/// address bits its highest address needs, its page size, the CPU features
/// its application saw (absent from statefiles older than their records).
fn requirements(h: &statefile::Header) -> (String, Value) {
    use sentry::arch::cpuid::{KEY_FEATURES, KEY_PROFILE};
    let mut text = String::from("host requirements:\n");
    let highest = h
        .metadata
        .get(sentry::state::KEY_HIGHEST_ADDRESS)
        .and_then(|v| v.strip_prefix("0x"))
        .and_then(|v| u64::from_str_radix(v, 16).ok());
    let bits = highest.map(|a| 64 - a.saturating_sub(1).leading_zeros());
    match (highest, bits) {
        (Some(a), Some(b)) => {
            text += &format!("  highest address: {a:#x} (needs {b}-bit virtual addresses)\n")
        }
        _ => text += "  highest address: not recorded\n",
    }
    // The application's page size; statefiles from before it was
    // recorded ran on 4K pages, as their memory images have.
    let page_size = h
        .metadata
        .get(sentry::state::KEY_PAGE_SIZE)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(u64::from(h.page_size));
    text += &format!("  page size: {page_size}\n");
    let profile = h.metadata.get(KEY_PROFILE);
    let features: Vec<&str> = h
        .metadata
        .get(KEY_FEATURES)
        .map(|f| f.split_whitespace().collect())
        .unwrap_or_default();
    match profile {
        Some(p) => {
            text += &format!(
                "  cpu features ({p}, {} named): {}\n",
                features.len(),
                features.join(" ")
            )
        }
        None => text += "  cpu features: not recorded\n",
    }
    let json = json!({
        "highest_address": highest,
        "va_bits": bits,
        "page_size": page_size,
        "cpu_profile": profile,
        "cpu_features": features,
    });
    (text, json)
}

fn inspect(path: &Path) -> Report {
    let mut text = String::new();
    let mut damage = Vec::new();
    let mut j = json!({ "path": path.display().to_string() });
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let e = StatefileError::Io(e);
            j["error"] = damage_json(&e);
            damage.push(e.to_string());
            return Report {
                text,
                json: j,
                damage,
            };
        }
    };
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    text += &format!("statefile {} ({file_len} bytes)\n", path.display());
    j["size"] = json!(file_len);

    // The header alone first, so a file damaged further on still shows it.
    match statefile::read_header(&file) {
        Ok((prefix, h)) => {
            text += &format!(
                "header: ok\n  format version: {}\n  recorded length: {}\n  arch: {}\n  page size: {}\n  producer: {}\n",
                prefix.format_version, prefix.file_len, h.arch, h.page_size, h.producer
            );
            text += &format!("  metadata ({}):\n", h.metadata.len());
            for (k, v) in &h.metadata {
                text += &format!("    {k}: {v}\n");
            }
            j["header"] = json!({
                "status": "ok",
                "format_version": prefix.format_version,
                "recorded_length": prefix.file_len,
                "arch": h.arch.name(),
                "page_size": h.page_size,
                "producer": h.producer,
                "metadata": h.metadata,
            });
            let (t, req) = requirements(&h);
            text += &t;
            j["requires"] = req;
        }
        Err(e) => {
            text += &format!("header: DAMAGED: {e}\n");
            j["header"] = json!({ "status": "damaged", "error": damage_json(&e) });
            damage.push(e.to_string());
            return Report {
                text,
                json: j,
                damage,
            };
        }
    }

    let r = match Reader::open_with(file, OpenOptions::any_arch()) {
        Ok(r) => r,
        Err(e) => {
            text += &format!("index: DAMAGED: {e}\n");
            j["index"] = json!({ "status": "damaged", "error": damage_json(&e) });
            damage.push(e.to_string());
            return Report {
                text,
                json: j,
                damage,
            };
        }
    };
    let (io, il) = r.index_location();
    text += &format!(
        "index: ok ({} sections, {il} bytes at offset {io})\n",
        r.sections().len()
    );
    j["index"] =
        json!({ "status": "ok", "offset": io, "length": il, "sections": r.sections().len() });

    text += &format!("types ({}):\n", r.types().len());
    let mut types = serde_json::Map::new();
    for (name, v) in r.types().iter() {
        text += &format!("  {name} v{v}\n");
        types.insert(name.to_string(), json!(v));
    }
    j["types"] = Value::Object(types);

    text += &format!(
        "sections:\n  {:<28} {:<8} {:>12} {:>14} {:>7} {:>10}  status\n",
        "section", "compr", "stored", "uncompressed", "ratio", "crc32"
    );
    let mut sections = Vec::new();
    for s in r.sections() {
        let status = r.verify_section(s);
        let st = match &status {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                damage.push(e.to_string());
                format!("DAMAGED: {e}")
            }
        };
        text += &format!(
            "  {:<28} {:<8} {:>12} {:>14} {:>6.1}% {:#010x}  {st}\n",
            s.id.to_string(),
            s.compression.to_string(),
            s.stored_len,
            s.uncompressed_len,
            s.ratio() * 100.0,
            s.crc32
        );
        sections.push(json!({
            "kind": s.id.kind.to_string(),
            "kind_code": s.id.kind.code(),
            "name": s.id.name,
            "compression": s.compression.to_string(),
            "offset": s.offset,
            "stored_len": s.stored_len,
            "uncompressed_len": s.uncompressed_len,
            "ratio": s.ratio(),
            "crc32": format!("{:#010x}", s.crc32),
            "status": if status.is_ok() { json!("ok") } else { json!({ "damaged": status.as_ref().err().map(damage_json) }) },
        }));
    }
    j["sections"] = Value::Array(sections);

    // Every kernel object: its type, sandbox id, version and size.
    for s in r
        .sections()
        .iter()
        .filter(|s| s.id.kind == SectionKind::Kernel && s.id.name == sentry::state::OBJECTS_SECTION)
    {
        let parsed = r.read_section(s).and_then(|bytes| {
            let objs = statefile::Objects::parse(&bytes, r.types())?;
            Ok(objs
                .entries()
                .map(|(t, id, len)| (t.to_string(), id, len))
                .collect::<Vec<_>>())
        });
        match parsed {
            Ok(entries) => {
                text += &format!("objects in {} ({}):\n", s.id, entries.len());
                let mut list = Vec::new();
                for (t, id, len) in entries {
                    let v = r.types().get(&t).unwrap_or(0);
                    text += &format!("  {t:<24} #{id:<8} v{v:<3} {len:>10} bytes\n");
                    list.push(json!({ "type": t, "id": id, "version": v, "bytes": len }));
                }
                j["objects"] = Value::Array(list);
            }
            Err(e) => {
                text += &format!("objects in {}: DAMAGED: {e}\n", s.id);
                damage.push(e.to_string());
            }
        }
    }

    let mut memories = Vec::new();
    for s in r
        .sections()
        .iter()
        .filter(|s| s.id.kind == SectionKind::Memory)
    {
        let name = &s.id.name;
        let m = match r.memory(name) {
            Ok(m) => m,
            Err(e) => {
                text += &format!("{}: map DAMAGED: {e}\n", s.id);
                damage.push(e.to_string());
                memories.push(json!({ "name": name, "status": { "damaged": damage_json(&e) } }));
                continue;
            }
        };
        let compressed = (0..m.chunk_count())
            .filter(|&i| m.chunk_info(i).is_some_and(|c| c.compressed))
            .count();
        let bad = m.damaged_chunks();
        text += &format!(
            "{}: {} bytes, {} pages of {}: {} present, {} zero (skipped); {} chunks of up to {} pages ({} zstd, {} raw); stored {} bytes ({:.1}% of present)\n",
            s.id,
            m.image_len(),
            m.pages(),
            m.page_size(),
            m.present_pages(),
            m.zero_pages(),
            m.chunk_count(),
            m.chunk_pages(),
            compressed,
            m.chunk_count() - compressed,
            s.stored_len,
            s.ratio() * 100.0
        );
        if bad.is_empty() {
            text += "  chunks: ok\n";
        }
        for e in &bad {
            text += &format!("  DAMAGED: {e}\n");
            damage.push(e.to_string());
        }
        memories.push(json!({
            "name": name,
            "image_len": m.image_len(),
            "page_size": m.page_size(),
            "pages": m.pages(),
            "present_pages": m.present_pages(),
            "zero_pages": m.zero_pages(),
            "chunks": m.chunk_count(),
            "chunk_pages": m.chunk_pages(),
            "compressed_chunks": compressed,
            "raw_chunks": m.chunk_count() - compressed,
            "stored_len": s.stored_len,
            "damaged_chunks": bad.iter().map(damage_json).collect::<Vec<_>>(),
        }));
    }
    j["memory"] = Value::Array(memories);
    j["damage"] = json!(damage);
    text += if damage.is_empty() {
        "status: ok\n"
    } else {
        "status: DAMAGED\n"
    };
    Report {
        text,
        json: j,
        damage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statefile::{Compression, Header, MemoryOptions, Writer};

    fn write(path: &Path) {
        let mut w =
            Writer::create(path, Header::new("cryo test").with("container-id", "t")).unwrap();
        w.write_section(
            SectionKind::Kernel,
            "",
            Compression::default(),
            &[5u8; 5000],
        )
        .unwrap();
        let mut img = vec![0u8; 300 * 4096];
        img[4096 * 7..4096 * 9].fill(3);
        w.write_memory("memfile", &img, &MemoryOptions::default())
            .unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn intact_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.cryo");
        write(&p);
        let r = inspect(&p);
        assert!(r.damage.is_empty(), "{:?}", r.damage);
        assert!(r.text.contains("container-id: t"));
        assert!(r.text.contains("2 present, 298 zero"));
        assert_eq!(r.json["memory"][0]["present_pages"], 2);
        assert_eq!(r.json["header"]["arch"], statefile::Arch::host().name());
        assert_eq!(run(&p, true).unwrap(), 0);
    }

    #[test]
    fn damaged_section_is_named_and_rest_shown() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.cryo");
        write(&p);
        let off = Reader::open(&p)
            .unwrap()
            .section(SectionKind::Kernel, "")
            .unwrap()
            .offset;
        let mut b = std::fs::read(&p).unwrap();
        b[off as usize + 2] ^= 0xff;
        std::fs::write(&p, &b).unwrap();
        let r = inspect(&p);
        assert_eq!(r.damage.len(), 1);
        assert!(
            r.damage[0].starts_with("checksum mismatch in section kernel"),
            "{}",
            r.damage[0]
        );
        assert!(r.text.contains("header: ok"));
        assert!(r.text.contains("chunks: ok"));
        assert_eq!(run(&p, false).unwrap(), 1);
    }

    #[test]
    fn truncated_file_shows_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.cryo");
        write(&p);
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() - 100]).unwrap();
        let r = inspect(&p);
        assert!(r.text.contains("producer: cryo test"));
        assert!(r.damage[0].contains("truncated"), "{:?}", r.damage);
        assert_eq!(r.json["index"]["error"]["kind"], "truncated");
    }

    #[test]
    fn missing_file() {
        assert_eq!(run(Path::new("/nonexistent/x.cryo"), false).unwrap(), 1);
    }
}
