//! A change set for a person (text, one change a line, a unified diff under
//! a changed text file) and for a script (JSON, every field).

use std::io::Write;

use serde_json::json;

use super::changes::{ChangeSet, Exit, Lower, Proc};
use super::load::Side;

fn side_json(s: &Side) -> serde_json::Value {
    json!({
        "label": s.label,
        "container_id": s.header.metadata.get("container-id"),
        "monotonic_ns": s.saved.kernel.clocks.monotonic_at_save,
        "processes": s.saved.processes.len(),
        "process_log": {
            "entries": s.saved.process_log.entries.len(),
            "dropped": s.saved.process_log.dropped,
        },
    })
}

pub fn json(
    out: &mut impl Write,
    a: &Side,
    b: &Side,
    lower: &Lower,
    set: &ChangeSet,
) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(set)?;
    v["a"] = side_json(a);
    v["b"] = side_json(b);
    v["lower"] = json!(lower.0.as_ref().map(|p| p.display().to_string()));
    v["empty"] = json!(set.is_empty());
    serde_json::to_writer_pretty(&mut *out, &v)?;
    writeln!(out)?;
    Ok(())
}

fn exit_text(e: Option<Exit>) -> String {
    match e {
        Some(Exit {
            signaled: true,
            code,
        }) => format!("killed by signal {code}"),
        Some(Exit {
            signaled: false,
            code,
        }) => format!("exit {code}"),
        None => "exit status unknown".into(),
    }
}

fn argv_text(p: &Proc) -> String {
    if p.argv.is_empty() {
        p.exe.clone()
    } else {
        p.argv.join(" ")
    }
}

pub fn text(out: &mut impl Write, a: &Side, b: &Side, set: &ChangeSet) -> anyhow::Result<()> {
    writeln!(out, "--- {}", a.label)?;
    writeln!(out, "+++ {}", b.label)?;
    if set.is_empty() {
        writeln!(out, "no changes")?;
        return Ok(());
    }
    let p = &set.processes;
    if !(p.started.is_empty() && p.ended.is_empty() && p.exec.is_empty() && p.unlogged == 0) {
        writeln!(out, "processes:")?;
        for s in &p.started {
            let how = if s.in_b && s.exit.is_some() {
                format!("started and ended (a zombie), {}", exit_text(s.exit))
            } else if s.in_b {
                "started, running".to_string()
            } else {
                format!("started and ended, {}", exit_text(s.exit))
            };
            writeln!(
                out,
                "  + pid {} (ppid {}) {}: {how}",
                s.pid,
                s.ppid,
                argv_text(s)
            )?;
        }
        for e in &p.ended {
            let zombie = if e.in_b { " (a zombie)" } else { "" };
            writeln!(
                out,
                "  - pid {} {}: ended{zombie}, {}",
                e.pid,
                argv_text(e),
                exit_text(e.exit)
            )?;
        }
        for x in &p.exec {
            writeln!(
                out,
                "  ~ pid {}: exec {} -> {}",
                x.pid,
                x.before.join(" "),
                x.after.join(" ")
            )?;
        }
        if p.unlogged > 0 {
            writeln!(
                out,
                "  ? {} more processes started and ended (the process log was full)",
                p.unlogged
            )?;
        }
    }
    if !set.files.is_empty() {
        writeln!(out, "files:")?;
        for f in &set.files {
            let size = match (f.size_before, f.size_after) {
                (Some(x), Some(y)) if x != y => format!(", {x} -> {y} bytes"),
                (_, Some(y)) => format!(", {y} bytes"),
                (Some(x), None) => format!(", {x} bytes"),
                (None, None) => String::new(),
            };
            let mark = match f.change {
                "added" => '+',
                "removed" => '-',
                _ => '~',
            };
            let what = if f.what.is_empty() {
                String::new()
            } else {
                format!(": {}", f.what.join(", "))
            };
            writeln!(out, "  {mark} {} ({}{size}){what}", f.path, f.kind)?;
            if let Some(d) = &f.diff {
                for line in d.lines() {
                    writeln!(out, "    {line}")?;
                }
            }
        }
    }
    if !set.descriptors.is_empty() {
        writeln!(out, "descriptors:")?;
        for d in &set.descriptors {
            let show = |i: &super::changes::FdInfo| {
                let name = if i.path.is_empty() { &i.kind } else { &i.path };
                format!("{name} (offset {}, flags {:#o})", i.offset, i.flags)
            };
            match (&d.before, &d.after) {
                (None, Some(y)) => writeln!(out, "  + pid {} fd {}: {}", d.pid, d.fd, show(y))?,
                (Some(x), None) => writeln!(out, "  - pid {} fd {}: {}", d.pid, d.fd, show(x))?,
                (Some(x), Some(y)) => writeln!(
                    out,
                    "  ~ pid {} fd {}: {} -> {}",
                    d.pid,
                    d.fd,
                    show(x),
                    show(y)
                )?,
                (None, None) => {}
            }
        }
    }
    if !set.memory.is_empty() {
        writeln!(out, "memory:")?;
        for m in &set.memory {
            let mut ranges: Vec<String> = m
                .ranges
                .iter()
                .take(8)
                .map(|r| format!("{:#x}-{:#x}", r[0], r[1]))
                .collect();
            if m.ranges.len() > 8 {
                ranges.push(format!("and {} more ranges", m.ranges.len() - 8));
            }
            writeln!(
                out,
                "  ~ pid {} {:#x}-{:#x} {}: {} of {} pages {}: {}",
                m.pid,
                m.start,
                m.end,
                m.name,
                m.pages_changed,
                m.pages,
                m.change,
                ranges.join(", ")
            )?;
        }
    }
    if !set.environment.is_empty() {
        writeln!(out, "environment:")?;
        for e in &set.environment {
            match (&e.before, &e.after) {
                (None, Some(y)) => writeln!(out, "  + pid {} {}={y}", e.pid, e.var)?,
                (Some(x), None) => writeln!(out, "  - pid {} {}={x}", e.pid, e.var)?,
                (Some(x), Some(y)) => writeln!(out, "  ~ pid {} {}: {x} -> {y}", e.pid, e.var)?,
                (None, None) => {}
            }
        }
    }
    if !set.credentials.is_empty() {
        writeln!(out, "credentials:")?;
        for c in &set.credentials {
            writeln!(
                out,
                "  ~ pid {} tid {} {}: {} -> {}",
                c.pid, c.tid, c.field, c.before, c.after
            )?;
        }
    }
    Ok(())
}
