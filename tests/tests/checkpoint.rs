//! Checkpoint and restore end to end: `cryo do` runs the `ckpt_counter`
//! guest (or a host program), `cryo checkpoint` freezes it into a statefile,
//! `cryo restore` continues it — from a moved image directory, twice at
//! once, after `--leave-running`, twice in a row — and every line the
//! restored program prints must be the line a native run prints for the
//! same counter (same memory checksum, same fd offset, a monotonic clock
//! that never went back). A sleep restored mid-way sleeps only what was
//! left, and the monotonic clocks do not jump over the time the sandbox
//! spent frozen (`mono_ticker`, restored after a 3 s pause), nor does an
//! armed interval timer (`itimer_ckpt`). Then the
//! refusals: damaged statefiles, files
//! changed on the host, unknown ids, occupied or unwritable image paths, a
//! checkpoint that runs out of space halfway, bad flags and duplicate ids —
//! each exits 125 with one line naming the cause, and leaves nothing
//! running or half-written.
//!
//! Every test has its own temporary `--root` and image directories; every
//! process it starts runs in its own process group, which is killed when
//! the test ends (pass or fail).

use std::ffi::{CString, OsStr};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use cryo_tests::sandbox::{
    assert_no_record, assert_ok, assert_only_statefile, assert_refused, assert_restore_refused,
    checkpoint, files_under, Sandbox, Scratch, NO_ARGS, STATEFILE,
};
use cryo_tests::{guest, run_cryo_cli, run_native, Libc};

/// How long to wait for a sandbox to print its first lines (the guest
/// fills its buffer first) or for a checkpointed sandbox to exit.
const START: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The guest's lines

#[derive(Debug, Clone, PartialEq)]
struct Line {
    counter: u64,
    checksum: String,
    clock_back: u32,
    fileoff: u64,
}

fn parse(line: &str) -> Line {
    let field = |name: &str| -> &str {
        line.split(' ')
            .find_map(|f| f.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_else(|| panic!("no {name}= in guest line {line:?}"))
    };
    let num = |name: &str| -> u64 {
        field(name)
            .parse()
            .unwrap_or_else(|_| panic!("bad {name} in guest line {line:?}"))
    };
    Line {
        counter: num("counter"),
        checksum: field("checksum").to_string(),
        clock_back: num("clock_back") as u32,
        fileoff: num("fileoff"),
    }
}

fn counter_guest() -> PathBuf {
    guest("ckpt_counter", Libc::Glibc)
}

/// The first `count` lines of a native run of `ckpt_counter MIB FILE COUNT`.
fn reference(mib: u32, file: &Path, count: u64) -> Vec<String> {
    let file = file.to_str().unwrap();
    let out = run_native(
        counter_guest(),
        &[&mib.to_string(), file, &count.to_string()],
        b"",
    );
    assert_eq!(
        out.code,
        0,
        "native ckpt_counter failed: {}",
        out.stderr_str()
    );
    let lines: Vec<String> = out.stdout_str().lines().map(str::to_string).collect();
    assert_eq!(
        lines.len() as u64,
        count,
        "native run printed {} lines",
        lines.len()
    );
    lines
}

/// Checks that `got` are exactly the native lines `first`, `first+1`, …:
/// same memory checksum, the fd still at offset 17, the clock never back.
fn assert_continues(what: &str, got: &[String], first: u64, native: &[String]) {
    assert!(!got.is_empty(), "{what}: no lines");
    for (i, line) in got.iter().enumerate() {
        let n = first + i as u64;
        let l = parse(line);
        assert_eq!(
            l.counter, n,
            "{what}: line {i} is {line:?}, expected counter {n}; all: {got:#?}"
        );
        assert_eq!(
            l.clock_back, 0,
            "{what}: CLOCK_MONOTONIC went back: {line:?}"
        );
        assert_eq!(l.fileoff, 17, "{what}: the file offset was lost: {line:?}");
        let want = native
            .get(n as usize)
            .unwrap_or_else(|| panic!("{what}: no native line for counter {n}"));
        assert_eq!(
            line, want,
            "{what}: counter {n} differs from the native run (memory changed?)"
        );
    }
}

/// The counters of the lines a sandbox running `ckpt_counter` printed.
trait Counters {
    /// Counters of the lines received so far.
    fn counters(&self) -> Vec<u64>;
    fn last_counter(&self) -> u64;
}

impl Counters for Sandbox {
    fn counters(&self) -> Vec<u64> {
        self.lines().iter().map(|l| parse(l).counter).collect()
    }

    fn last_counter(&self) -> u64 {
        parse(self.lines().last().expect("no lines")).counter
    }
}

// ---------------------------------------------------------------------------
// Scratch space

/// A scratch directory for a test's `--root`, image directories and the
/// host file the guest opens.
fn scratch() -> Scratch {
    Scratch::new("cryo-ckpt-")
}

/// `data/file.bin` in `s`: 4 KiB of deterministic content for the guest to
/// open.
fn data_file(s: &Scratch) -> PathBuf {
    let dir = s.path("data");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("file.bin");
    if !file.exists() {
        let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 31 + 7) as u8).collect();
        std::fs::write(&file, bytes).unwrap();
    }
    file
}

/// Starts `ckpt_counter MIB DATAFILE` as sandbox `id` and waits for 3 lines.
fn start_counter(s: &Scratch, id: &str, mib: u32) -> Sandbox {
    let file = data_file(s);
    let mut sb = Sandbox::run(
        &s.root(),
        id,
        &counter_guest(),
        &[OsStr::new(&mib.to_string()), file.as_os_str()],
    );
    sb.wait_lines(3, START);
    sb
}

/// Checkpoints running sandbox `sb` (id `id`) into `img` without
/// --leave-running: the checkpoint succeeds, `cryo do` exits 0, the image
/// holds only the statefile. Returns the last counter printed.
fn checkpoint_and_exit(s: &Scratch, sb: &mut Sandbox, id: &str, img: &Path) -> u64 {
    let out = checkpoint(&s.root(), img, id, &[]);
    assert_ok(&out, &format!("cryo checkpoint {id}"));
    let code = sb.wait_exit(EXIT);
    assert_eq!(
        code,
        0,
        "{} after checkpoint: exit {code}; stderr: {}",
        sb.what(),
        sb.stderr_str()
    );
    assert_only_statefile(img);
    assert_no_record(&s.root(), id);
    // Its own lines were consecutive from 0.
    let counters = sb.counters();
    let first = counters[0];
    assert!(
        counters
            .iter()
            .enumerate()
            .all(|(i, c)| *c == first + i as u64),
        "{}: counters not consecutive: {counters:?}",
        sb.what()
    );
    sb.last_counter()
}

// ---------------------------------------------------------------------------
// Checkpoint and restore

#[test]
fn checkpoint_moved_and_restored() {
    let s = scratch();
    let file = data_file(&s);
    let mut a = start_counter(&s, "A", 64);
    let img = s.path("img");
    let last = checkpoint_and_exit(&s, &mut a, "A", &img);
    let native = reference(64, &file, last + 4);
    assert_continues("cryo do before the checkpoint", a.lines(), 0, &native);

    // Move the image directory elsewhere; restore from there.
    std::fs::create_dir_all(s.path("elsewhere")).unwrap();
    let moved = s.path("elsewhere/moved-img");
    std::fs::rename(&img, &moved).unwrap();
    let mut b = Sandbox::restore(&s.root(), &moved, "B");
    b.wait_lines(3, START);
    assert_continues(
        "restored from a moved image",
        &b.lines()[..3],
        last + 1,
        &native,
    );
    assert!(b.is_running(), "the restored program stopped early");
}

#[test]
fn restore_twice_gives_two_sandboxes() {
    let s = scratch();
    let file = data_file(&s);
    let mut a = start_counter(&s, "A", 16);
    let img = s.path("img");
    let last = checkpoint_and_exit(&s, &mut a, "A", &img);
    let native = reference(16, &file, last + 10);

    let mut b = Sandbox::restore(&s.root(), &img, "B");
    let mut c = Sandbox::restore(&s.root(), &img, "C");
    b.wait_lines(3, START);
    c.wait_lines(3, START);
    assert_eq!(
        b.lines()[..3],
        c.lines()[..3],
        "the two restored sandboxes differ"
    );
    assert_continues("restore B", &b.lines()[..3], last + 1, &native);
    assert_continues("restore C", &c.lines()[..3], last + 1, &native);

    // Killing B leaves C running, still correct.
    b.kill();
    b.assert_group_gone();
    c.drain();
    let have = c.lines().len();
    c.wait_lines(have + 3, Duration::from_secs(10));
    assert!(
        c.is_running(),
        "C stopped when B was killed: {}",
        c.stderr_str()
    );
    let upto = c.lines().len().min(9);
    assert_continues(
        "restore C after B was killed",
        &c.lines()[..upto],
        last + 1,
        &native,
    );
}

#[test]
fn leave_running_then_restore() {
    let s = scratch();
    let file = data_file(&s);
    let mut a = start_counter(&s, "A", 16);
    a.drain();
    let before = a.last_counter();
    let img = s.path("img");
    let out = checkpoint(&s.root(), &img, "A", &["--leave-running"]);
    assert_ok(&out, "cryo checkpoint --leave-running A");
    assert_only_statefile(&img);
    // Every line printed before the checkpoint returned has been read by now.
    thread::sleep(Duration::from_millis(300));
    a.drain();
    let at_return = a.last_counter();

    // The original carries on past the checkpoint.
    a.wait_for(
        Duration::from_secs(10),
        "counter to pass the checkpoint by 3",
        |l| parse(l.last().unwrap()).counter >= at_return + 3,
    );
    assert!(a.is_running(), "the original stopped after --leave-running");

    let mut b = Sandbox::restore(&s.root(), &img, "B");
    b.wait_lines(3, START);
    let first = parse(&b.lines()[0]).counter;
    assert!(
        before < first && first <= at_return + 1,
        "restored copy starts at counter {first}; the checkpoint was taken between counters {before} and {at_return}"
    );
    // The restored copy prints exactly what the original printed for the same counters.
    a.wait_for(
        Duration::from_secs(10),
        "the original to reach the restored counters",
        |l| parse(l.last().unwrap()).counter >= first + 2,
    );
    let a0 = parse(&a.lines()[0]).counter;
    let same: Vec<String> = a.lines()[(first - a0) as usize..][..3].to_vec();
    assert_eq!(
        b.lines()[..3],
        same[..],
        "restored copy and original differ"
    );
    let native = reference(16, &file, first + 3);
    assert_continues(
        "restored after --leave-running",
        &b.lines()[..3],
        first,
        &native,
    );
    assert_continues(
        "original after --leave-running",
        a.lines(),
        a0,
        &reference(16, &file, a.last_counter() + 1),
    );
}

#[test]
fn checkpoint_restore_checkpoint_restore() {
    let s = scratch();
    let file = data_file(&s);
    let mut a = start_counter(&s, "A", 16);
    let img1 = s.path("img1");
    let last1 = checkpoint_and_exit(&s, &mut a, "A", &img1);

    let mut b = Sandbox::restore(&s.root(), &img1, "B");
    b.wait_lines(3, START);
    let img2 = s.path("img2");
    let out = checkpoint(&s.root(), &img2, "B", &[]);
    assert_ok(&out, "cryo checkpoint B (a restored sandbox)");
    let code = b.wait_exit(EXIT);
    assert_eq!(
        code,
        0,
        "restored B after its checkpoint: exit {code}; stderr: {}",
        b.stderr_str()
    );
    assert_only_statefile(&img2);
    let last2 = b.last_counter();

    let mut c = Sandbox::restore(&s.root(), &img2, "C");
    c.wait_lines(3, START);
    let native = reference(16, &file, last2 + 4);
    assert_continues("first restore", b.lines(), last1 + 1, &native);
    assert_continues("second restore", &c.lines()[..3], last2 + 1, &native);
}

const PY_LOOP: &str =
    "import time,sys\nfor i in range(10**6):\n print(i, flush=True); time.sleep(0.1)";

#[test]
fn dynamic_program_checkpointed() {
    let python = python3();
    let s = scratch();
    let mut a = Sandbox::run(
        &s.root(),
        "P",
        python,
        &[OsStr::new("-c"), OsStr::new(PY_LOOP)],
    );
    a.wait_lines(3, START);
    let img = s.path("img");
    let out = checkpoint(&s.root(), &img, "P", &[]);
    assert_ok(&out, "cryo checkpoint P (python3)");
    let code = a.wait_exit(EXIT);
    assert_eq!(
        code,
        0,
        "python3 after checkpoint: exit {code}; stderr: {}",
        a.stderr_str()
    );
    assert_only_statefile(&img);
    let nums = |lines: &[String]| -> Vec<u64> {
        lines
            .iter()
            .map(|l| {
                l.parse()
                    .unwrap_or_else(|_| panic!("python3 printed {l:?}"))
            })
            .collect()
    };
    let before = nums(a.lines());
    assert_eq!(before, (0..before.len() as u64).collect::<Vec<_>>());
    let last = *before.last().unwrap();

    let mut b = Sandbox::restore(&s.root(), &img, "Q");
    b.wait_lines(5, START);
    let after = nums(&b.lines()[..5]);
    assert_eq!(
        after,
        (last + 1..last + 6).collect::<Vec<_>>(),
        "restored python3 printed {after:?}"
    );
    assert!(
        b.is_running(),
        "restored python3 stopped: {}",
        b.stderr_str()
    );
}

/// Two descriptors of one open file description (dup) and a pipe whose
/// ends are in one table: each line is `i fd_offset dup_offset piped`.
const PY_SHARED: &str = "import os,sys,time\nfd=os.open(sys.argv[1],os.O_RDONLY)\ndup=os.dup(fd)\nr,w=os.pipe()\nfor i in range(10**6):\n os.read(fd,1)\n os.write(w,b'x')\n n=len(os.read(r,1))\n print(i,os.lseek(fd,0,1),os.lseek(dup,0,1),n,flush=True); time.sleep(0.05)";

/// References between objects are ids, so sharing survives: after the
/// restore, the dup'd descriptors are still one open file description (a
/// read through one moves the other's offset), and the pipe still joins
/// its two ends.
#[test]
fn shared_open_files_stay_shared_after_restore() {
    let python = python3();
    let s = scratch();
    let file = data_file(&s);
    let args = [OsStr::new("-c"), OsStr::new(PY_SHARED), file.as_os_str()];
    let mut a = Sandbox::run(&s.root(), "S", python, &args);
    a.wait_lines(3, START);
    let img = s.path("img");
    assert_ok(&checkpoint(&s.root(), &img, "S", &[]), "cryo checkpoint S");
    assert_eq!(
        a.wait_exit(EXIT),
        0,
        "python3 after checkpoint: {}",
        a.stderr_str()
    );
    let parse = |l: &String| -> [u64; 4] {
        let v: Vec<u64> = l
            .split(' ')
            .map(|x| {
                x.parse()
                    .unwrap_or_else(|_| panic!("python3 printed {l:?}"))
            })
            .collect();
        v.try_into()
            .unwrap_or_else(|_| panic!("python3 printed {l:?}"))
    };
    let last = parse(a.lines().last().expect("lines before the checkpoint"))[0];
    let mut b = Sandbox::restore(&s.root(), &img, "T");
    b.wait_lines(5, START);
    for l in &b.lines()[..5] {
        let [i, off, dup_off, piped] = parse(l);
        assert!(i > last, "restored python3 went back: {l:?} after {last}");
        assert_eq!(off, i + 1, "the file offset did not continue: {l:?}");
        assert_eq!(
            dup_off, off,
            "dup'd descriptor no longer shares the offset: {l:?}"
        );
        assert_eq!(piped, 1, "the pipe's ends were separated: {l:?}");
    }
}

#[test]
fn dynamic_sleep_finishes_after_restore() {
    // A dynamically linked coreutils program blocked in nanosleep: after
    // restore it sleeps what was left of its time (the sandbox's monotonic
    // clock continues from the checkpoint) and exits 0 by itself — neither
    // at once nor after a whole new sleep.
    const SLEEP: Duration = Duration::from_secs(4);
    // Startup before the sleep began plus the restore's own work: generous,
    // yet well below the 2 s a full re-sleep would add.
    const MARGIN: Duration = Duration::from_millis(1000);
    let s = scratch();
    let started = Instant::now();
    let mut a = Sandbox::run(
        &s.root(),
        "S",
        Path::new("/usr/bin/sleep"),
        &[OsStr::new("4")],
    );
    thread::sleep(Duration::from_millis(2000));
    assert!(a.is_running(), "sleep 4 ended early: {}", a.stderr_str());
    let img = s.path("img");
    let asked = started.elapsed();
    let out = checkpoint(&s.root(), &img, "S", &[]);
    let answered = started.elapsed();
    assert_ok(&out, "cryo checkpoint S (sleep 4)");
    assert_eq!(
        a.wait_exit(EXIT),
        0,
        "sleep after checkpoint: {}",
        a.stderr_str()
    );
    let mut b = Sandbox::restore(&s.root(), &img, "T");
    let restored = Instant::now();
    let code = b.wait_exit(Duration::from_secs(10));
    let took = restored.elapsed();
    assert_eq!(
        code,
        0,
        "restored sleep: exit {code}; stderr: {}",
        b.stderr_str()
    );
    // The sleep began after `started` and was frozen between `asked` and
    // `answered`, so it had slept at most `answered` and at least `asked`
    // minus its startup; what is left is the rest of the 4 s.
    let least = SLEEP.saturating_sub(answered);
    let most = SLEEP.saturating_sub(asked) + MARGIN;
    assert!(
        took + Duration::from_millis(100) >= least,
        "restored sleep 4 ended after {took:?}, but at most {answered:?} of it had passed"
    );
    assert!(
        took <= most,
        "restored sleep 4 took {took:?} after a checkpoint {asked:?} into it: \
         a fresh sleep rather than the {least:?}..{most:?} left"
    );
}

#[test]
fn absolute_sleeps_end_at_their_deadline_after_restore() {
    // clock_nanosleep(TIMER_ABSTIME) frozen mid-way runs again after the
    // restore with the same deadline: on CLOCK_MONOTONIC it sleeps what was
    // left when it was frozen (the clock continues from the checkpoint), on
    // CLOCK_REALTIME it wakes when the host's wall clock reaches the
    // deadline. Neither starts a new 4 s sleep.
    const SLEEP: Duration = Duration::from_secs(4);
    const MARGIN: Duration = Duration::from_millis(500);
    let sleeper = guest("abs_sleep", Libc::Glibc);
    for clock in ["monotonic", "realtime"] {
        let s = scratch();
        let started = Instant::now();
        let mut a = Sandbox::run(
            &s.root(),
            "S",
            &sleeper,
            &[OsStr::new(clock), OsStr::new("4")],
        );
        a.wait_lines(1, START);
        // The deadline was read before the line was printed.
        let printed = Instant::now();
        assert_eq!(a.lines(), ["sleeping"]);
        thread::sleep(Duration::from_millis(2000));
        let img = s.path("img");
        let asked = Instant::now();
        let out = checkpoint(&s.root(), &img, "S", &[]);
        let answered = Instant::now();
        assert_ok(&out, &format!("cryo checkpoint S (abs_sleep {clock})"));
        assert_eq!(
            a.wait_exit(EXIT),
            0,
            "abs_sleep {clock}: {}",
            a.stderr_str()
        );
        assert_eq!(
            a.lines(),
            ["sleeping"],
            "abs_sleep {clock} woke before the checkpoint"
        );

        let mut b = Sandbox::restore(&s.root(), &img, "T");
        let restored = Instant::now();
        let code = b.wait_exit(Duration::from_secs(10));
        let took = restored.elapsed();
        assert_eq!(code, 0, "restored abs_sleep {clock}: {}", b.stderr_str());
        assert_eq!(b.lines(), ["reached=1"], "restored abs_sleep {clock}");
        // The deadline lies between started+4 s and printed+4 s: on the
        // sandbox's monotonic clock it is that far from the freeze, on the
        // wall clock that far from now.
        let (least, most) = if clock == "monotonic" {
            (
                (started + SLEEP).saturating_duration_since(answered),
                (printed + SLEEP).saturating_duration_since(asked),
            )
        } else {
            (
                (started + SLEEP).saturating_duration_since(restored),
                (printed + SLEEP).saturating_duration_since(restored),
            )
        };
        assert!(
            took + Duration::from_millis(100) >= least && took <= most + MARGIN,
            "restored abs_sleep {clock} took {took:?}, expected {least:?}..{:?} (a fresh sleep is {SLEEP:?})",
            most + MARGIN
        );
    }
}

/// The clocks of the `mono_ticker` guest on one of its lines.
#[derive(Debug, Clone, Copy)]
struct Tick {
    n: u64,
    mono: i64,
    boot: i64,
}

fn tick(line: &str) -> Tick {
    let field = |name: &str| -> i64 {
        line.split(' ')
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in mono_ticker line {line:?}"))
    };
    Tick {
        n: field("n") as u64,
        mono: field("mono"),
        boot: field("boot"),
    }
}

/// Each clock of `ticks` never goes back, line after line.
fn assert_clocks_forward(what: &str, ticks: &[Tick]) {
    for w in ticks.windows(2) {
        assert!(
            w[1].n == w[0].n + 1 && w[1].mono >= w[0].mono && w[1].boot >= w[0].boot,
            "{what}: {:?} followed by {:?}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn monotonic_clock_does_not_jump_over_the_frozen_time() {
    // Invariant 6: CLOCK_MONOTONIC and CLOCK_BOOTTIME continue across a
    // restore from where the checkpoint left them. The sandbox stays
    // frozen for 3 s; across the restore the guest's clocks may move on by
    // its 100 ms nap and the checkpoint's own work, far less than the
    // pause, and never back.
    const PAUSE: Duration = Duration::from_secs(3);
    const MOST: i64 = 1_000_000_000;
    let s = scratch();
    let ticker = guest("mono_ticker", Libc::Glibc);
    let mut a = Sandbox::run(&s.root(), "M", &ticker, NO_ARGS);
    a.wait_lines(3, START);
    let img = s.path("img");
    assert_ok(&checkpoint(&s.root(), &img, "M", &[]), "cryo checkpoint M");
    let checkpointed = Instant::now();
    assert_eq!(
        a.wait_exit(EXIT),
        0,
        "mono_ticker after checkpoint: {}",
        a.stderr_str()
    );
    // Every line printed before the freeze has been read (stdout closed).
    let before: Vec<Tick> = a.lines().iter().map(|l| tick(l)).collect();
    assert_clocks_forward("before the checkpoint", &before);
    let last = *before.last().expect("lines before the checkpoint");

    thread::sleep(PAUSE.saturating_sub(checkpointed.elapsed()));
    let mut b = Sandbox::restore(&s.root(), &img, "N");
    b.wait_lines(3, START);
    assert!(
        checkpointed.elapsed() >= PAUSE,
        "the pause was shorter than {PAUSE:?}"
    );
    let after: Vec<Tick> = b.lines()[..3].iter().map(|l| tick(l)).collect();
    let first = after[0];
    assert_eq!(
        first.n,
        last.n + 1,
        "the restored guest continues where it was"
    );
    assert_clocks_forward("after the restore", &after);
    for (clock, was, now) in [
        ("CLOCK_MONOTONIC", last.mono, first.mono),
        ("CLOCK_BOOTTIME", last.boot, first.boot),
    ] {
        let moved = now - was;
        assert!(
            moved >= 0,
            "{clock} went back by {} ns across the restore",
            -moved
        );
        assert!(
            moved < MOST,
            "{clock} jumped forward by {moved} ns across the restore after a {PAUSE:?} pause \
             (the frozen time must not count)"
        );
    }
}

/// `name=VALUE` on a guest's line, as a number.
fn field_of(line: &str, name: &str) -> i64 {
    line.split(' ')
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in line {line:?}"))
}

#[test]
fn armed_itimer_fires_on_time_after_restore() {
    // An ITIMER_REAL armed for 2 s is checkpointed about half a second in,
    // the sandbox stays frozen 3 s, and the restored process gets its
    // SIGALRM 2 s of sandbox time after it armed the timer: the saved
    // remaining time is sandbox-relative, so neither the frozen time
    // counts (5 s) nor does the timer fire at once or get lost. Both while
    // the task sleeps in pause() and while it runs application code.
    const PAUSE: Duration = Duration::from_secs(3);
    const ARMED_FOR: i64 = 2_000_000_000;
    // The checkpoint's and restore's own work runs on the sandbox's clock.
    const LATE: i64 = 800_000_000;
    let guest_bin = guest("itimer_ckpt", Libc::Glibc);
    for mode in ["pause", "spin"] {
        let s = scratch();
        let mut a = Sandbox::run(&s.root(), "I", &guest_bin, &[OsStr::new(mode)]);
        a.wait_lines(1, START);
        let armed = field_of(&a.lines()[0], "mono");
        thread::sleep(Duration::from_millis(500));
        let img = s.path("img");
        assert_ok(
            &checkpoint(&s.root(), &img, "I", &[]),
            &format!("cryo checkpoint I (itimer_ckpt {mode})"),
        );
        let checkpointed = Instant::now();
        assert_eq!(
            a.wait_exit(EXIT),
            0,
            "itimer_ckpt {mode} after checkpoint: {}",
            a.stderr_str()
        );
        assert_eq!(
            a.lines().len(),
            1,
            "itimer_ckpt {mode} fired before the checkpoint: {:?}",
            a.lines()
        );

        if mode == "pause" {
            saved_itimer_is_relative_and_hostile_ones_are_refused(&s, &img);
        }

        thread::sleep(PAUSE.saturating_sub(checkpointed.elapsed()));
        assert!(checkpointed.elapsed() >= PAUSE);
        let mut b = Sandbox::restore(&s.root(), &img, "J");
        let restored = Instant::now();
        let code = b.wait_exit(Duration::from_secs(10));
        let took = restored.elapsed();
        assert_eq!(
            code,
            0,
            "restored itimer_ckpt {mode}: exit {code}; stderr: {}",
            b.stderr_str()
        );
        let lines = b.lines();
        assert_eq!(lines.len(), 1, "restored itimer_ckpt {mode}: {lines:?}");
        assert_eq!(field_of(&lines[0], "hits"), 1, "{mode}: {lines:?}");
        let after = field_of(&lines[0], "mono") - armed;
        assert!(
            (ARMED_FOR - 10_000_000..=ARMED_FOR + LATE).contains(&after),
            "itimer_ckpt {mode}: SIGALRM {after} ns of sandbox time after the 2 s timer was armed \
             (a checkpoint and a {PAUSE:?} pause in between)"
        );
        assert!(
            took < Duration::from_millis(2500),
            "itimer_ckpt {mode}: the restored timer took {took:?} of host time to fire"
        );
    }
}

/// The statefile in `img` keeps the armed timer as the time it had left
/// (sandbox-relative, under its 2 s, never a host absolute time), and a
/// copy with a hostile value (negative, beyond the clock's bound) is
/// refused by the restore with the field named.
fn saved_itimer_is_relative_and_hostile_ones_are_refused(s: &Scratch, img: &Path) {
    use sentry::kernel::itimer::MAX_ITIMER_NANOS;
    use sentry::kernel::thread_group::ThreadGroupRecord;
    use sentry::kernel::KernelRecord;
    use sentry::state::hostile::ObjectTable;
    let bytes = std::fs::read(img.join(STATEFILE)).expect("the statefile");
    let table = ObjectTable::from_statefile(&bytes).expect("the object table");
    let kernel: KernelRecord = table.get(0).expect("the kernel record");
    let tgid = kernel.thread_groups[0] as u64;
    let tg: ThreadGroupRecord = table.get(tgid).expect("the thread group record");
    let real = tg.itimers.real;
    assert!(
        real.remaining_ns > 0 && real.remaining_ns < 2_000_000_000 && real.interval_ns == 0,
        "the saved ITIMER_REAL: {real:?}"
    );
    type Edit = fn(&mut ThreadGroupRecord);
    let cases: [(&str, Edit); 2] = [
        ("itimers.real.interval_ns", |r| {
            r.itimers.real.interval_ns = -20_000_000
        }),
        ("itimers.real.remaining_ns", |r| {
            r.itimers.real.remaining_ns = MAX_ITIMER_NANOS + 1
        }),
    ];
    for (i, (field, edit)) in cases.into_iter().enumerate() {
        let hostile = damaged_copy(s, img, &format!("hostile-itimer-{i}"), |file| {
            let mut t = ObjectTable::from_statefile(file).expect("the object table");
            t.edit::<ThreadGroupRecord>(tgid, edit)
                .expect("the thread group record");
            *file = t.to_statefile_like(file).expect("a re-encoded statefile");
        });
        assert_restore_refused(
            &s.root(),
            &hostile,
            &format!("a statefile with a hostile {field}"),
            &["kernel.ThreadGroup", field],
        );
    }
}

// ---------------------------------------------------------------------------
// Refusals

/// A statefile of a small counter (8 MiB) with the data file open; returns
/// the image directory.
fn small_statefile(s: &Scratch) -> PathBuf {
    let mut a = start_counter(s, "A", 8);
    let img = s.path("img");
    checkpoint_and_exit(s, &mut a, "A", &img);
    img
}

/// Copies `img` into a new image directory `name` with its statefile
/// transformed by `damage`.
fn damaged_copy(s: &Scratch, img: &Path, name: &str, damage: impl Fn(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(img.join(STATEFILE)).unwrap();
    damage(&mut bytes);
    let dir = s.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(STATEFILE), &bytes).unwrap();
    dir
}

#[test]
fn restore_refuses_truncated_statefile() {
    let s = scratch();
    let img = small_statefile(&s);
    let bad = damaged_copy(&s, &img, "truncated", |b| b.truncate(b.len() / 2));
    assert_restore_refused(
        &s.root(),
        &bad,
        "restore of a half statefile",
        &["truncated"],
    );
    // The damaged file is left as it was.
    let len = std::fs::metadata(img.join(STATEFILE)).unwrap().len();
    assert_eq!(
        std::fs::metadata(bad.join(STATEFILE)).unwrap().len(),
        len / 2
    );
}

#[test]
fn restore_refuses_bit_flipped_statefile() {
    let s = scratch();
    let img = small_statefile(&s);
    let bad = damaged_copy(&s, &img, "flipped", |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
    });
    assert_restore_refused(
        &s.root(),
        &bad,
        "restore of a bit-flipped statefile",
        &["checksum"],
    );
}

#[test]
fn restore_refuses_changed_host_file() {
    let s = scratch();
    let img = small_statefile(&s);
    let file = data_file(&s);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(&mut f, b"x").unwrap();
    drop(f);
    assert_restore_refused(
        &s.root(),
        &img,
        "restore after the open file grew by a byte",
        &[file.to_str().unwrap(), "changed"],
    );
}

#[test]
fn restore_refuses_deleted_host_file() {
    let s = scratch();
    let img = small_statefile(&s);
    let file = data_file(&s);
    std::fs::remove_file(&file).unwrap();
    assert_restore_refused(
        &s.root(),
        &img,
        "restore after the open file was deleted",
        &[file.to_str().unwrap(), "ENOENT"],
    );
}

#[test]
fn checkpoint_refuses_unknown_id() {
    let s = scratch();
    let img = s.path("img");
    let out = checkpoint(&s.root(), &img, "nosuchid", &[]);
    assert_refused(
        out.code,
        &out.stderr_str(),
        "checkpoint of an unknown id",
        &["no sandbox", "nosuchid"],
    );
    assert!(
        !img.exists(),
        "a refused checkpoint created {}",
        img.display()
    );
}

#[test]
fn checkpoint_refuses_occupied_image_dir_unless_forced() {
    let s = scratch();
    let mut a = start_counter(&s, "A", 8);
    let img = s.path("img");
    assert_ok(
        &checkpoint(&s.root(), &img, "A", &["--leave-running"]),
        "first checkpoint",
    );
    let old = std::fs::read(img.join(STATEFILE)).unwrap();

    let out = checkpoint(&s.root(), &img, "A", &["--leave-running"]);
    assert_refused(
        out.code,
        &out.stderr_str(),
        "checkpoint into an occupied image dir",
        &["already holds a statefile"],
    );
    let out = checkpoint(&s.root(), &img, "A", &[]);
    assert_refused(
        out.code,
        &out.stderr_str(),
        "checkpoint (exit) into an occupied image dir",
        &["already holds a statefile"],
    );
    assert_eq!(
        std::fs::read(img.join(STATEFILE)).unwrap(),
        old,
        "the old statefile was touched"
    );
    assert_only_statefile(&img);

    // The sandbox keeps running.
    a.drain();
    let have = a.lines().len();
    a.wait_lines(have + 2, Duration::from_secs(10));
    assert!(a.is_running());

    // --force replaces it (the counter has moved on: the bytes differ).
    let out = checkpoint(&s.root(), &img, "A", &["--force"]);
    assert_ok(&out, "checkpoint --force");
    assert_eq!(a.wait_exit(EXIT), 0, "{}", a.stderr_str());
    assert_only_statefile(&img);
    assert_ne!(
        std::fs::read(img.join(STATEFILE)).unwrap(),
        old,
        "--force did not replace the statefile"
    );
    let last = a.last_counter();
    let mut b = Sandbox::restore(&s.root(), &img, "B");
    b.wait_lines(1, START);
    assert_eq!(
        parse(&b.lines()[0]).counter,
        last + 1,
        "restored from the forced statefile"
    );
}

/// A sandbox keeps running and stays correct after a failed checkpoint.
fn assert_still_running(s: &Scratch, a: &mut Sandbox, mib: u32) {
    a.drain();
    let have = a.lines().len();
    a.wait_lines(have + 2, Duration::from_secs(10));
    assert!(
        a.is_running(),
        "the sandbox stopped after a failed checkpoint: {}",
        a.stderr_str()
    );
    let a0 = parse(&a.lines()[0]).counter;
    let native = reference(mib, &data_file(s), a.last_counter() + 1);
    assert_continues("after a failed checkpoint", a.lines(), a0, &native);
}

#[test]
fn checkpoint_to_unwritable_path_is_refused() {
    let s = scratch();
    let mut a = start_counter(&s, "A", 8);
    let plain = s.path("plain-file");
    std::fs::write(&plain, b"not a directory").unwrap();
    for (img, why) in [
        (plain.join("img"), "Not a directory"),
        (
            PathBuf::from("/proc/cryo-no-such/img"),
            "No such file or directory",
        ),
    ] {
        let out = checkpoint(&s.root(), &img, "A", &[]);
        assert_refused(
            out.code,
            &out.stderr_str(),
            &format!("checkpoint to {}", img.display()),
            &[img.to_str().unwrap(), why],
        );
        assert!(!img.exists());
        assert_still_running(&s, &mut a, 8);
    }
    assert_eq!(std::fs::read(&plain).unwrap(), b"not a directory");
    let stray: Vec<_> = files_under(s.dir())
        .into_iter()
        .filter(|p| !p.starts_with(s.path("root")) && *p != plain && !p.starts_with(s.path("data")))
        .collect();
    assert!(stray.is_empty(), "failed checkpoints left files: {stray:?}");
}

/// A small tmpfs mounted over a directory of the test's own, unmounted on
/// drop.
struct SmallTmpfs(CString);

impl SmallTmpfs {
    fn mount(dir: &Path) -> std::io::Result<SmallTmpfs> {
        let target = CString::new(dir.to_str().unwrap()).unwrap();
        // SAFETY: mount(2) with valid NUL-terminated strings; it touches no
        // memory of this process.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"size=2m".as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SmallTmpfs(target))
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        // SAFETY: umount2(2) of the mount made above.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn checkpoint_failing_halfway_leaves_nothing() {
    // The image directory is on a 2 MiB tmpfs (mounted over a directory of
    // this test's own): the statefile of a 16 MiB counter, written by the
    // sandbox into the file `cryo checkpoint` created there, runs out of
    // space halfway through.
    let s = scratch();
    let small = s.path("small");
    std::fs::create_dir_all(&small).unwrap();
    // The tests run as root (cryo itself needs it): a refused mount is a
    // broken setup, not a reason to pass.
    let _tmpfs = SmallTmpfs::mount(&small)
        .unwrap_or_else(|e| panic!("cannot mount a tmpfs on {}: {e}", small.display()));
    let mut a = start_counter(&s, "A", 16);
    let img = small.join("img");
    let out = checkpoint(&s.root(), &img, "A", &[]);
    assert_refused(
        out.code,
        &out.stderr_str(),
        "checkpoint onto a full tmpfs",
        // ENOSPC, not any failure (a refused open would also exit 125).
        &["No space left on device"],
    );
    assert_still_running(&s, &mut a, 16);
    let left = files_under(&small);
    assert!(
        left.is_empty(),
        "the failed checkpoint left {left:?} on the full tmpfs"
    );

    // A checkpoint that fits still works afterwards and restores correctly.
    let good = s.path("good");
    let out = checkpoint(&s.root(), &good, "A", &[]);
    assert_ok(&out, "checkpoint after the failed one");
    assert_eq!(a.wait_exit(EXIT), 0, "{}", a.stderr_str());
    let last = a.last_counter();
    let mut b = Sandbox::restore(&s.root(), &good, "B");
    b.wait_lines(2, START);
    assert_continues(
        "restore after a failed checkpoint",
        &b.lines()[..2],
        last + 1,
        &reference(16, &data_file(&s), last + 3),
    );
}

#[test]
fn checkpoint_refuses_bad_compression_before_touching_the_sandbox() {
    let s = scratch();
    let mut a = start_counter(&s, "A", 8);
    let img = s.path("img");
    let out = checkpoint(&s.root(), &img, "A", &["--compression", "lz4"]);
    assert_refused(
        out.code,
        &out.stderr_str(),
        "checkpoint --compression lz4",
        &["lz4"],
    );
    assert!(
        !img.exists(),
        "a refused checkpoint created {}",
        img.display()
    );
    assert_still_running(&s, &mut a, 8);
}

#[test]
fn duplicate_id_is_refused() {
    let s = scratch();
    let mut a = start_counter(&s, "A", 8);
    let mut dup = Sandbox::run(&s.root(), "A", Path::new("/usr/bin/true"), NO_ARGS);
    let code = dup.wait_exit(Duration::from_secs(20));
    assert_refused(
        code,
        &dup.stderr_str(),
        "a second cryo do --id A",
        &["already exists"],
    );
    dup.assert_group_gone();
    assert_still_running(&s, &mut a, 8);
    // A's record still works: it can be checkpointed.
    let img = s.path("img");
    checkpoint_and_exit(&s, &mut a, "A", &img);
}

// ---------------------------------------------------------------------------
// inspect

#[test]
fn inspect_shows_kernel_objects() {
    let s = scratch();
    let img = small_statefile(&s);
    let statefile = img.join(STATEFILE);
    let out = run_cryo_cli(&[
        OsStr::new("inspect"),
        OsStr::new("--json"),
        statefile.as_os_str(),
    ]);
    assert_ok(&out, "cryo inspect --json");
    let json = out.stdout_str();
    for ty in [
        "kernel.Task",
        "kernel.Kernel",
        "kernel.ThreadGroup",
        "mm.MemoryManager",
        "vfs.MountNamespace",
        "kernel.FdTable",
        "vfs.OpenFile",
        "mm.MemoryFile",
        // Nested types carry their own versions too.
        "kernel.SigInfo",
        "platform.Registers",
        "vfs.TmpfsNode",
    ] {
        // "types": { "kernel.Task": <version>, … }
        let key = format!("\"{ty}\":");
        let at = json
            .find(&key)
            .unwrap_or_else(|| panic!("inspect --json does not list {ty}:\n{json}"));
        let version: String = json[at + key.len()..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert!(!version.is_empty(), "{ty} has no version in:\n{json}");
    }
    // Every record is listed with its type, its sandbox id and its version:
    // the kernel and its mount namespace and memory file (id 0), the init
    // process and its task (pid 1).
    let v: serde_json::Value = serde_json::from_str(&json).expect("inspect --json is JSON");
    let objects = v["objects"].as_array().expect("objects listed");
    for (ty, id) in [
        ("kernel.Kernel", 0),
        ("vfs.MountNamespace", 0),
        ("mm.MemoryFile", 0),
        ("kernel.ThreadGroup", 1),
        ("kernel.Task", 1),
        ("mm.MemoryManager", 1),
        ("kernel.FdTable", 1),
    ] {
        let found = objects
            .iter()
            .find(|o| o["type"] == ty && o["id"] == id)
            .unwrap_or_else(|| panic!("no object {ty} #{id} in {objects:?}"));
        assert!(
            found["version"].as_u64().is_some_and(|v| v >= 1),
            "{ty} #{id} has no version: {found}"
        );
    }
    assert!(
        objects.iter().any(|o| o["type"] == "vfs.OpenFile"),
        "no open file listed in {objects:?}"
    );
    assert!(
        json.contains("\"status\": \"ok\""),
        "no status ok in:\n{json}"
    );
    assert!(
        json.contains("\"damage\": []"),
        "damage reported in:\n{json}"
    );

    let out = run_cryo_cli(&[OsStr::new("inspect"), statefile.as_os_str()]);
    assert_ok(&out, "cryo inspect");
    let text = out.stdout_str();
    assert!(text.contains("kernel.Task v"), "{text}");
    assert!(text.trim_end().ends_with("status: ok"), "{text}");

    let bad = damaged_copy(&s, &img, "truncated", |b| b.truncate(b.len() / 2));
    for json in [true, false] {
        let mut args = vec![OsStr::new("inspect")];
        if json {
            args.push(OsStr::new("--json"));
        }
        let path = bad.join(STATEFILE);
        args.push(path.as_os_str());
        let out = run_cryo_cli(&args);
        assert_ne!(
            out.code,
            0,
            "cryo inspect (json={json}) of a truncated statefile exited 0:\n{}",
            out.stdout_str()
        );
        assert!(
            out.stdout_str().contains("truncated") || out.stderr_str().contains("truncated"),
            "inspect (json={json}) does not say truncated: {} {}",
            out.stdout_str(),
            out.stderr_str()
        );
    }
}

/// The host's python3. tests/scripts/deps.sh installs it: missing, the
/// setup is broken and the test fails.
fn python3() -> &'static Path {
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "/usr/bin/python3 is not installed (a broken test setup: run tests/scripts/deps.sh)"
    );
    python
}

/// A python3 program with a second thread: each line is printed by the
/// worker thread while the main thread waits for it.
const PY_THREADS: &str = "import threading, time\n\
def work():\n    for i in range(10**6):\n        print(i, flush=True); time.sleep(0.1)\n\
t = threading.Thread(target=work); t.start(); t.join()\n";

#[test]
fn multi_threaded_program_checkpointed_and_restored() {
    let python = python3();
    let s = scratch();
    let mut a = Sandbox::run(
        &s.root(),
        "T",
        python,
        &[OsStr::new("-c"), OsStr::new(PY_THREADS)],
    );
    a.wait_lines(3, START);
    let img = s.path("img");
    let out = checkpoint(&s.root(), &img, "T", &[]);
    assert_ok(&out, "cryo checkpoint T (two-thread python3)");
    assert_eq!(
        a.wait_exit(EXIT),
        0,
        "python3 after checkpoint: {}",
        a.stderr_str()
    );
    assert_only_statefile(&img);
    let nums = |lines: &[String]| -> Vec<u64> {
        lines.iter().map(|l| l.parse().expect("a number")).collect()
    };
    let before = nums(a.lines());
    assert_eq!(before, (0..before.len() as u64).collect::<Vec<_>>());
    let last = *before.last().expect("lines before the checkpoint");

    // Restored twice: the worker thread goes on counting in each.
    for id in ["U", "V"] {
        let mut b = Sandbox::restore(&s.root(), &img, id);
        b.wait_lines(3, START);
        let after = nums(&b.lines()[..3]);
        assert_eq!(
            after,
            vec![last + 1, last + 2, last + 3],
            "restore {id} of the two-thread python3"
        );
    }
}

// ---------------------------------------------------------------------------
// Waiting objects: epoll, timerfd, eventfd, signalfd, POSIX timers

/// `wait_ckpt` builds an epoll set over a pipe holding unread bytes, an
/// armed timerfd and an edge-triggered eventfd, a periodic POSIX timer and
/// a signalfd with a pending signal; checkpointed mid-way and restored from
/// a moved image directory, it prints exactly what an uninterrupted native
/// run prints. The statefile holds the set's interest list, the timers as
/// time left, and hostile copies are refused with the field named.
#[test]
fn epoll_timerfd_signalfd_and_posix_timer_survive_a_moved_restore() {
    let bin = guest("wait_ckpt", Libc::Glibc);
    let native = run_native(&bin, NO_ARGS, b"");
    assert_eq!(native.code, 0, "native wait_ckpt: {}", native.stderr_str());
    let native: Vec<String> = native.stdout_str().lines().map(str::to_string).collect();

    let s = scratch();
    let mut a = Sandbox::run(&s.root(), "W", &bin, NO_ARGS);
    a.wait_lines(4, START);
    let img = s.path("img");
    assert_ok(&checkpoint(&s.root(), &img, "W", &[]), "cryo checkpoint W");
    assert_eq!(
        a.wait_exit(EXIT),
        0,
        "wait_ckpt after checkpoint: {}",
        a.stderr_str()
    );
    let before = a.lines().to_vec();
    assert!(
        before.len() >= 4 && before.len() < 13,
        "the checkpoint came during the ticks: {before:?}"
    );

    saved_waiting_objects_are_relative_and_hostile_ones_are_refused(&s, &img);

    let moved = s.path("elsewhere/moved-img");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&img, &moved).unwrap();
    let mut b = Sandbox::restore(&s.root(), &moved, "X");
    let code = b.wait_exit(Duration::from_secs(20));
    assert_eq!(
        code,
        0,
        "restored wait_ckpt: exit {code}; stderr: {}",
        b.stderr_str()
    );
    let mut all = before;
    all.extend(b.lines().iter().cloned());
    assert_eq!(all, native, "checkpointed and restored wait_ckpt vs native");
}

fn saved_waiting_objects_are_relative_and_hostile_ones_are_refused(s: &Scratch, img: &Path) {
    use sentry::kernel::posix_timer::PosixTimersRecord;
    use sentry::kernel::KernelRecord;
    use sentry::state::hostile::ObjectTable;
    use sentry::vfs::epoll::EpollRecord;
    let bytes = std::fs::read(img.join(STATEFILE)).expect("the statefile");
    let table = ObjectTable::from_statefile(&bytes).expect("the object table");
    let kernel: KernelRecord = table.get(0).expect("the kernel record");
    let tgid = kernel.thread_groups[0] as u64;
    let timers: PosixTimersRecord = table.get(tgid).expect("the POSIX timers record");
    assert_eq!(timers.timers.len(), 1, "{timers:?}");
    let t = timers.timers[0];
    assert!(
        t.remaining_ns > 0 && t.remaining_ns <= 50_000_000 && t.interval_ns == 50_000_000,
        "the saved POSIX timer is the time it had left: {t:?}"
    );
    let epolls: Vec<u64> = table
        .entries
        .iter()
        .filter(|e| e.type_name == "vfs.Epoll")
        .map(|e| e.id)
        .collect();
    assert_eq!(epolls.len(), 2, "both epoll sets saved");
    let sets: Vec<EpollRecord> = epolls
        .iter()
        .map(|&id| table.get(id).expect("an epoll record"))
        .collect();
    let set = sets
        .iter()
        .find(|s| s.items.len() == 3)
        .unwrap_or_else(|| panic!("no set of three items: {sets:?}"));
    let mut data: Vec<u64> = set.items.iter().map(|i| i.data).collect();
    data.sort();
    assert_eq!(data, vec![7, 8, 9]);
    let ticks = sets
        .iter()
        .find(|s| s.items.len() == 1)
        .expect("the tick set");
    assert_eq!(ticks.items[0].data, 1);

    let ep_id = set.id;
    type EditSet = fn(&mut EpollRecord);
    let set_cases: [(&str, EditSet); 2] = [
        ("items[0].file", |r| r.items[0].file = 999_999),
        ("items[1]", |r| r.items[1] = r.items[0]),
    ];
    for (i, (field, edit)) in set_cases.into_iter().enumerate() {
        let hostile = damaged_copy(s, img, &format!("hostile-epoll-{i}"), |file| {
            let mut t = ObjectTable::from_statefile(file).expect("the object table");
            t.edit::<EpollRecord>(ep_id, edit)
                .expect("the epoll record");
            *file = t.to_statefile_like(file).expect("a re-encoded statefile");
        });
        assert_restore_refused(
            &s.root(),
            &hostile,
            &format!("a statefile with a hostile epoll {field}"),
            &["vfs.Epoll", field],
        );
    }
    type EditTimers = fn(&mut PosixTimersRecord);
    let timer_cases: [(&str, EditTimers); 2] = [
        ("timers[0].interval_ns", |r| r.timers[0].interval_ns = -1),
        ("timers[0].notify", |r| {
            r.timers[0].notify = sentry::kernel::posix_timer::Notify::Thread {
                signo: 10,
                tid: 4000,
            }
        }),
    ];
    for (i, (field, edit)) in timer_cases.into_iter().enumerate() {
        let hostile = damaged_copy(s, img, &format!("hostile-ptimer-{i}"), |file| {
            let mut t = ObjectTable::from_statefile(file).expect("the object table");
            t.edit::<PosixTimersRecord>(tgid, edit)
                .expect("the POSIX timers record");
            *file = t.to_statefile_like(file).expect("a re-encoded statefile");
        });
        assert_restore_refused(
            &s.root(),
            &hostile,
            &format!("a statefile with a hostile POSIX timer {field}"),
            &["kernel.PosixTimers", field],
        );
    }
}

/// A poll, epoll_wait or rt_sigtimedwait stopped by a checkpoint and
/// restored after a pause ends when its timeout runs out in sandbox time
/// (2 s after it began), not a whole timeout after the restore: the
/// restarted call keeps its deadline, as Linux's restart block for poll.
#[test]
fn a_wait_stopped_by_a_checkpoint_keeps_its_deadline() {
    const TIMEOUT: i64 = 2_000_000_000;
    const LATE: i64 = 800_000_000;
    let guest_bin = guest("wait_timeout_ckpt", Libc::Glibc);
    for mode in ["poll", "epoll", "sigtimedwait"] {
        let s = scratch();
        let mut a = Sandbox::run(&s.root(), "T", &guest_bin, &[OsStr::new(mode)]);
        a.wait_lines(1, START);
        let began = field_of(&a.lines()[0], "mono");
        thread::sleep(Duration::from_millis(500));
        let img = s.path("img");
        assert_ok(
            &checkpoint(&s.root(), &img, "T", &[]),
            &format!("cryo checkpoint T (wait_timeout_ckpt {mode})"),
        );
        assert_eq!(a.wait_exit(EXIT), 0, "{mode}: {}", a.stderr_str());
        assert_eq!(a.lines().len(), 1, "{mode} ended before the checkpoint");
        thread::sleep(Duration::from_secs(3));
        let mut b = Sandbox::restore(&s.root(), &img, "U");
        let restored = Instant::now();
        assert_eq!(
            b.wait_exit(Duration::from_secs(10)),
            0,
            "{mode}: {}",
            b.stderr_str()
        );
        let took = restored.elapsed();
        let lines = b.lines();
        assert_eq!(lines.len(), 1, "restored {mode}: {lines:?}");
        assert_eq!(field_of(&lines[0], "ret"), 0, "{mode} timed out: {lines:?}");
        let after = field_of(&lines[0], "mono") - began;
        assert!(
            (TIMEOUT - 10_000_000..=TIMEOUT + LATE).contains(&after),
            "{mode}: the wait ended {after} ns of sandbox time after it began (timeout 2 s)"
        );
        assert!(
            took < Duration::from_millis(1900),
            "{mode}: the restored wait took {took:?} of host time: a whole new timeout"
        );
    }
}
