//! The state contract's guard: every type that reaches a statefile (records
//! and every type nested in them) has a stable name and a version, and its
//! serde shape is held in `tests/data/saved_shapes.txt`. A shape that
//! changes without a version bump fails here, naming the type; a new type
//! or a new version must have its shape recorded (run with
//! `CRYO_UPDATE_SHAPES=1`, which only ever adds lines) and, per
//! golden/README.md, a golden statefile.
//!
//! Shapes are traced with serde-reflection: a container's format names its
//! fields in order, their primitive types and the containers nested in it,
//! so a renamed, reordered, retyped, added or removed field shows, and so
//! does a nested type that is not declared as nested (and so would change
//! without its parent's type table knowing).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_reflection::{Tracer, TracerConfig};
use statefile::{TypeVisitor, Versioned};

/// One saved type as traced now.
#[derive(Clone, Debug)]
struct Traced {
    name: &'static str,
    version: u32,
    serde_name: &'static str,
    nested: Vec<&'static str>,
}

struct Trace {
    tracer: Tracer,
    types: Vec<Traced>,
    seen: BTreeSet<&'static str>,
    errors: Vec<String>,
}

impl Trace {
    fn new() -> Trace {
        Trace {
            tracer: Tracer::new(TracerConfig::default()),
            types: Vec::new(),
            seen: BTreeSet::new(),
            errors: Vec::new(),
        }
    }
}

impl TypeVisitor for Trace {
    fn visit<T: Versioned>(&mut self, nested: &[&'static str]) -> bool {
        if !self.seen.insert(T::TYPE_NAME) {
            return false;
        }
        if let Err(e) = self.tracer.trace_simple_type::<T>() {
            self.errors
                .push(format!("{}: cannot trace: {e}", T::TYPE_NAME));
        }
        self.types.push(Traced {
            name: T::TYPE_NAME,
            version: T::VERSION,
            serde_name: T::SERDE_NAME,
            nested: nested.to_vec(),
        });
        true
    }
}

/// The containers a format refers to by name.
fn referenced(format_json: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let key = "\"TYPENAME\":\"";
    let mut rest = format_json;
    while let Some(at) = rest.find(key) {
        rest = &rest[at + key.len()..];
        if let Some(end) = rest.find('"') {
            out.insert(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

/// (type name, version) -> shape, as traced now; or what is wrong.
fn current_shapes(
    visit: impl FnOnce(&mut Trace),
) -> Result<BTreeMap<(String, u32), String>, Vec<String>> {
    let mut trace = Trace::new();
    visit(&mut trace);
    let mut errors = std::mem::take(&mut trace.errors);
    let types = std::mem::take(&mut trace.types);
    let registry = match trace.tracer.registry() {
        Ok(r) => r,
        Err(e) => {
            errors.push(format!("incomplete trace: {e}"));
            return Err(errors);
        }
    };
    let by_serde: BTreeMap<&str, &Traced> = types.iter().map(|t| (t.serde_name, t)).collect();
    let mut shapes = BTreeMap::new();
    for t in &types {
        let Some(format) = registry.get(t.serde_name) else {
            errors.push(format!("{}: no traced format for {}", t.name, t.serde_name));
            continue;
        };
        let json = serde_json::to_string(format).expect("formats serialize");
        for r in referenced(&json) {
            if !t.nested.contains(&r.as_str()) {
                let hint = by_serde
                    .get(r.as_str())
                    .map(|n| format!(" (saved type {})", n.name))
                    .unwrap_or_else(|| {
                        " (not a versioned type: declare it with statefile::versioned!)".into()
                    });
                errors.push(format!(
                    "{} ({}) contains {r}{hint} but does not list it among its nested types",
                    t.name, t.serde_name
                ));
            }
        }
        shapes.insert((t.name.to_string(), t.version), json);
    }
    if errors.is_empty() {
        Ok(shapes)
    } else {
        Err(errors)
    }
}

/// Checks `now` against the recorded shapes: a (type, version) whose shape
/// differs is a change without a version bump; one not recorded is new.
fn compare(
    recorded: &BTreeMap<(String, u32), String>,
    now: &BTreeMap<(String, u32), String>,
) -> (Vec<String>, Vec<String>) {
    let mut changed = Vec::new();
    let mut new = Vec::new();
    for ((name, version), shape) in now {
        match recorded.get(&(name.clone(), *version)) {
            Some(old) if old == shape => {}
            Some(old) => changed.push(format!(
                "saved type {name} changed its shape without a version bump (still v{version}): bump its VERSION, add a migration and a golden statefile\n  recorded: {old}\n  now:      {shape}"
            )),
            None => new.push(format!("{name} v{version}")),
        }
    }
    (changed, new)
}

fn shapes_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/saved_shapes.txt")
}

/// Lines `NAME vVERSION SHAPE`.
fn parse(text: &str) -> BTreeMap<(String, u32), String> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let (Some(name), Some(v), Some(shape)) = (parts.next(), parts.next(), parts.next()) else {
            panic!("{}:{}: malformed line", shapes_file().display(), n + 1);
        };
        let version: u32 = v
            .strip_prefix('v')
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{}:{}: bad version {v}", shapes_file().display(), n + 1));
        out.insert((name.to_string(), version), shape.to_string());
    }
    out
}

#[test]
fn every_saved_type_keeps_its_shape_at_its_version() {
    let now = current_shapes(sentry::state::types::visit_saved_types).unwrap_or_else(|errors| {
        panic!("saved types are not all versioned:\n{}", errors.join("\n"))
    });
    let path = shapes_file();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let recorded = parse(&text);
    let (changed, new) = compare(&recorded, &now);
    assert!(changed.is_empty(), "{}", changed.join("\n"));
    if new.is_empty() {
        return;
    }
    if std::env::var_os("CRYO_UPDATE_SHAPES").is_some() {
        // Only adds: a recorded (type, version) keeps its shape for ever.
        let mut out = text.clone();
        if out.is_empty() {
            out.push_str("# The serde shape of every saved type at every version (sentry/tests/saved_shapes.rs).\n# Lines are only ever added.\n");
        }
        for ((name, version), shape) in &now {
            if !recorded.contains_key(&(name.clone(), *version)) {
                out.push_str(&format!("{name} v{version} {shape}\n"));
            }
        }
        std::fs::write(&path, out).expect("write the shapes file");
        return;
    }
    panic!(
        "saved types without a recorded shape: {}\nrecord them with CRYO_UPDATE_SHAPES=1 cargo test -p sentry --test saved_shapes (and add a golden statefile, golden/README.md)",
        new.join(", ")
    );
}

/// Two versions of one nested type, as a change to the source would make
/// them: the checker must catch the second under the first's version.
mod before {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Probe {
        pub a: u32,
    }
    statefile::versioned!(Probe, "test.Probe", 1);
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Holder {
        pub probe: Probe,
    }
    statefile::versioned!(Holder, "test.Holder", 1, [Probe]);
}

mod after {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Probe {
        pub a: u32,
        pub b: u64,
    }
    statefile::versioned!(Probe, "test.Probe", 1);
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Holder {
        pub probe: Probe,
    }
    statefile::versioned!(Holder, "test.Holder", 1, [Probe]);

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Undeclared {
        pub probe: Probe,
    }
    statefile::versioned!(Undeclared, "test.Undeclared", 1);
}

#[test]
fn a_nested_type_changed_without_a_version_bump_is_named() {
    let old = current_shapes(<before::Holder as Versioned>::visit).unwrap();
    let new = current_shapes(<after::Holder as Versioned>::visit).unwrap();
    let (changed, added) = compare(&old, &new);
    assert!(added.is_empty(), "{added:?}");
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].contains("test.Probe"), "{}", changed[0]);
    // The parent, whose own shape only names the nested type, is unchanged.
    assert!(!changed[0].contains("test.Holder"), "{}", changed[0]);
}

#[test]
fn a_nested_type_left_out_of_the_list_is_named() {
    let errors = current_shapes(<after::Undeclared as Versioned>::visit).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("test.Undeclared") && e.contains("Probe")),
        "{errors:?}"
    );
}
