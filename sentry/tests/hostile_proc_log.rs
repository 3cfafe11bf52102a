//! The kernel's process log through restore's validation: a statefile
//! without one (every statefile before it) loads with an empty log, a
//! well-formed one loads as saved, and a hostile one is refused naming the
//! record and the field (the seeds are real checkpoints, sentry/fuzz/seeds).

use sentry::kernel::proc_log::{ProcessEnd, ProcessLogEntry, ProcessLogRecord, LOG_CAPACITY};
use sentry::state::hostile::{restore_validate, ObjectTable};
use sentry::state::validate::LoadError;

const COUNTER: &[u8] = include_bytes!("../fuzz/seeds/counter.cryo");

fn entry(seq: u64, pid: i32) -> ProcessLogEntry {
    ProcessLogEntry {
        seq,
        pid,
        ppid: 1,
        start_ns: 1_000,
        exe: "/bin/true".into(),
        argv: vec![b"true".to_vec()],
        env: vec![b"A=1".to_vec()],
        truncated: false,
        execs: 1,
        end: Some(ProcessEnd {
            signaled: false,
            code: 0,
            at_ns: 2_000,
        }),
    }
}

fn good() -> ProcessLogRecord {
    ProcessLogRecord {
        entries: vec![entry(1, 2), entry(2, 3)],
        next_seq: 3,
        dropped: 0,
    }
}

/// The seed without its own log (as every statefile before the log was).
fn without_log() -> ObjectTable {
    let mut t = ObjectTable::from_statefile(COUNTER).expect("a seed statefile");
    // Seeds checkpointed since the log exists hold one, as object 0.
    let _ = t.remove::<ProcessLogRecord>(0);
    t
}

fn with_log(id: u64, log: &ProcessLogRecord) -> Vec<u8> {
    let mut t = without_log();
    t.push(id, log).expect("pushed");
    t.to_statefile().expect("re-assembled")
}

/// The refused record's id and field (the record must be the log).
fn refusal(file: &[u8]) -> (u64, String) {
    match restore_validate(file) {
        Err(LoadError::Invalid(r)) => {
            assert_eq!(r.record, "kernel.ProcessLog", "{r}");
            (r.id, r.field.to_string())
        }
        Err(other) => panic!("refused, but not as an invalid record: {other}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn a_statefile_without_a_log_loads_with_an_empty_one() {
    let file = without_log().to_statefile().expect("re-assembled");
    let saved = restore_validate(&file).expect("the seed without a log validates");
    assert_eq!(saved.process_log, ProcessLogRecord::default());
}

#[test]
fn a_saved_log_loads_as_saved() {
    let saved = restore_validate(&with_log(0, &good())).expect("a good log validates");
    assert_eq!(saved.process_log, good());
}

/// One hostile change to a good log.
type Edit = dyn Fn(&mut ProcessLogRecord);

#[test]
fn hostile_logs_are_refused_by_field() {
    let cases: Vec<(&str, Box<Edit>)> = vec![
        ("entries[1].pid", Box::new(|l| l.entries[1].pid = -4)),
        (
            "entries[0].ppid",
            Box::new(|l| l.entries[0].ppid = i32::MAX),
        ),
        ("entries[1].seq", Box::new(|l| l.entries[1].seq = 1)),
        ("entries[0].seq", Box::new(|l| l.next_seq = 1)),
        (
            "entries[0].start_ns",
            Box::new(|l| l.entries[0].start_ns = -1),
        ),
        (
            "entries[0].end.at_ns",
            Box::new(|l| l.entries[0].end.as_mut().unwrap().at_ns = 10),
        ),
        (
            "entries[0].end.code",
            Box::new(|l| {
                let e = l.entries[0].end.as_mut().unwrap();
                e.signaled = true;
                e.code = 65;
            }),
        ),
        (
            "entries[0].argv",
            Box::new(|l| l.entries[0].argv = vec![vec![b'a'; 100]; 1000]),
        ),
        (
            "entries[0].exe",
            Box::new(|l| l.entries[0].exe = "a\0b".into()),
        ),
        (
            "entries",
            Box::new(|l| {
                l.entries = (1..=LOG_CAPACITY as u64 + 1).map(|s| entry(s, 2)).collect();
                l.next_seq = LOG_CAPACITY as u64 + 2;
            }),
        ),
    ];
    for (field, edit) in cases {
        let mut log = good();
        edit(&mut log);
        assert_eq!(refusal(&with_log(0, &log)), (0, field.to_string()));
    }
}

#[test]
fn a_log_not_the_kernels_is_refused() {
    assert_eq!(refusal(&with_log(7, &good())), (7, "id".to_string()));
}
