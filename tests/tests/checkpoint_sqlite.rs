//! sqlite3 in the middle of a transaction across a checkpoint of a
//! `cryo do` sandbox (issue 10): a database in /tmp, a transaction begun
//! and 10,000 rows inserted, its rollback journal on disk and its lock
//! held; checkpointed there, then restored twice from an image moved to
//! another directory. Each restored sandbox finds the journal, commits,
//! and reads back every row, and a fresh sqlite3 finds them committed.

use std::path::Path;
use std::time::Duration;

use cryo_tests::sandbox::{run_then_checkpoint, CheckpointedRun, Scratch};

const START: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(90);

fn tick_of(line: &str) -> Option<u64> {
    line.strip_prefix("tick ")?.split(' ').next()?.parse().ok()
}

/// The guest: a shell feeding one sqlite3 session through a pipe. The
/// session begins a transaction and inserts the rows; the shell waits for
/// sqlite3 to say so (through a file: sqlite3 buffers its stdout), prints
/// tick 2 (the test checkpoints there), waits a while, checks that the
/// journal is still there, and only then sends COMMIT and the queries.
const SCRIPT: &str = r#"set -e
exec 3>&1
d=/tmp/cryo-sqlite-ckpt
rm -rf "$d"; mkdir -p "$d"; cd "$d"
sqlite3 db 'CREATE TABLE t(i INTEGER PRIMARY KEY, v TEXT NOT NULL);'
echo "tick 1 created" >&3
{
  echo "BEGIN;"
  echo "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000) INSERT INTO t SELECT x, 'row ' || x FROM c;"
  echo ".once $d/inserted"
  echo "SELECT count(*) FROM t;"
  while [ ! -s "$d/inserted" ]; do sleep 0.05; done
  echo "tick 2 inserted $(cat "$d/inserted") uncommitted" >&3
  sleep 4
  if [ -s db-journal ]; then echo "tick 3 journal still there" >&3; else echo "tick 3 NO JOURNAL" >&3; fi
  echo "COMMIT;"
  echo "SELECT 'tick 4 committed ' || count(*) || ' sum ' || sum(i) || ' last ' || max(v) FROM t;"
  echo "SELECT 'tick 5 integrity ' || integrity_check FROM pragma_integrity_check;"
} | sqlite3 db
[ -e db-journal ] && echo "tick 6 journal left behind" || echo "tick 6 journal gone"
sqlite3 db "SELECT 'tick 7 reopened ' || count(*) || ' rows' FROM t;"
"#;

#[test]
fn sqlite_transaction_checkpointed_and_restored_twice_from_a_moved_image() {
    if !Path::new("/usr/bin/sqlite3").exists() {
        panic!("sqlite3 is missing: tests/scripts/deps.sh installs it");
    }
    let s = Scratch::new("cryo-sqlite-");
    let img = s.path("img");
    let run = run_then_checkpoint(
        &s.root(),
        Path::new("/bin/sh"),
        &["-c", SCRIPT],
        2,
        &img,
        (START, EXIT),
    );
    assert_eq!(
        run.reference,
        [
            "tick 1 created",
            "tick 2 inserted 10000 uncommitted",
            "tick 3 journal still there",
            "tick 4 committed 10000 sum 50005000 last row 9999",
            "tick 5 integrity ok",
            "tick 6 journal gone",
            "tick 7 reopened 10000 rows",
        ],
        "an uninterrupted run"
    );
    // The checkpoint was taken inside the transaction, not after it.
    assert_eq!(
        run.before.last().map(String::as_str),
        Some("tick 2 inserted 10000 uncommitted"),
        "checkpointed mid-transaction: {:?}",
        run.before
    );
    let moved = s.path("moved/elsewhere");
    std::fs::create_dir_all(moved.parent().expect("a parent")).expect("mkdir");
    std::fs::rename(&img, &moved).expect("moving the image");
    let CheckpointedRun { reference, before } = run;
    CheckpointedRun { reference, before }.restores_go_on(
        &s.root(),
        &moved,
        &["B", "C"],
        tick_of,
        EXIT,
    );
}
