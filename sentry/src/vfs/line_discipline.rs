//! The terminal line discipline (Linux's n_tty, gVisor's
//! kernel/line_discipline.go): termios input processing (ICRNL, INLCR,
//! IGNCR, ISTRIP, IXON), canonical line editing (VERASE, VWERASE, VKILL,
//! VEOF, VEOL, VLNEXT, VREPRINT), ISIG, echo (ECHO, ECHOE, ECHOK, ECHOKE,
//! ECHONL, ECHOCTL) and output processing (OPOST, ONLCR, OCRNL, ONOCR,
//! ONLRET, XTABS).
//!
//! It is pure state: the caller ([`super::pty::Terminal`]) holds it under
//! its lock and sends the signals and wake-ups it reports.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Linux's N_TTY_BUF_SIZE: what the input queue holds.
pub const INPUT_CAP: usize = 4096;
/// What the master's read side holds (the flip buffers' 64 KiB limit).
pub const OUTPUT_CAP: usize = 64 * 1024;
/// Number of control characters in the kernel's termios.
pub const NCCS: usize = 19;
/// A control character set to this is disabled.
const VDISABLE: u8 = 0;

/// The kernel's `struct termios` (what TCGETS copies out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Termios {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    pub cc: [u8; NCCS],
}
statefile::versioned!(Termios, "vfs.Termios", 1);

impl Default for Termios {
    /// A new pty's settings, as Linux's tty_std_termios: ICRNL|IXON,
    /// OPOST|ONLCR, B38400|CS8|CREAD|HUPCL... and the usual characters.
    fn default() -> Termios {
        let mut cc = [0u8; NCCS];
        cc[libc::VINTR] = 0o3;
        cc[libc::VQUIT] = 0o34;
        cc[libc::VERASE] = 0o177;
        cc[libc::VKILL] = 0o25;
        cc[libc::VEOF] = 0o4;
        cc[libc::VTIME] = 0;
        cc[libc::VMIN] = 1;
        cc[libc::VSWTC] = 0;
        cc[libc::VSTART] = 0o21;
        cc[libc::VSTOP] = 0o23;
        cc[libc::VSUSP] = 0o32;
        cc[libc::VEOL] = 0;
        cc[libc::VREPRINT] = 0o22;
        cc[libc::VDISCARD] = 0o17;
        cc[libc::VWERASE] = 0o27;
        cc[libc::VLNEXT] = 0o26;
        cc[libc::VEOL2] = 0;
        Termios {
            iflag: libc::ICRNL | libc::IXON,
            oflag: libc::OPOST | libc::ONLCR,
            cflag: libc::B38400 | libc::CS8 | libc::CREAD,
            lflag: libc::ISIG
                | libc::ICANON
                | libc::ECHO
                | libc::ECHOE
                | libc::ECHOK
                | libc::ECHOCTL
                | libc::ECHOKE
                | libc::IEXTEN,
            line: 0,
            cc,
        }
    }
}

/// `sizeof(struct termios)` as TCGETS/TCSETS copy it.
pub const TERMIOS_SIZE: usize = 36;

impl Termios {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TERMIOS_SIZE);
        for v in [self.iflag, self.oflag, self.cflag, self.lflag] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(self.line);
        out.extend_from_slice(&self.cc);
        out
    }

    /// Decodes TCSETS's argument; `None` when too short.
    pub fn from_bytes(b: &[u8]) -> Option<Termios> {
        if b.len() < TERMIOS_SIZE {
            return None;
        }
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut cc = [0u8; NCCS];
        cc.copy_from_slice(&b[17..17 + NCCS]);
        Some(Termios {
            iflag: word(0),
            oflag: word(4),
            cflag: word(8),
            lflag: word(12),
            line: b[16],
            cc,
        })
    }

    fn i(&self, f: u32) -> bool {
        self.iflag & f != 0
    }
    fn o(&self, f: u32) -> bool {
        self.oflag & f != 0
    }
    fn l(&self, f: u32) -> bool {
        self.lflag & f != 0
    }
    pub fn canonical(&self) -> bool {
        self.l(libc::ICANON)
    }
    /// Whether `c` is the enabled control character `idx`.
    fn is(&self, c: u8, idx: usize) -> bool {
        c != VDISABLE && self.cc[idx] == c
    }
    pub fn vmin(&self) -> u8 {
        self.cc[libc::VMIN]
    }
    pub fn vtime(&self) -> u8 {
        self.cc[libc::VTIME]
    }
}

fn is_cntrl(c: u8) -> bool {
    c < 0x20 || c == 0x7f
}

/// The line discipline's queues.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDiscipline {
    /// Canonical mode: complete lines, readable (an EOF-ended line has no
    /// terminator and may be empty: a read of it returns 0).
    pub lines: VecDeque<Vec<u8>>,
    /// Canonical mode: the line being edited, not yet readable.
    pub edit: Vec<u8>,
    /// Non-canonical mode: every byte received.
    pub raw: VecDeque<u8>,
    /// What the master reads: processed output and echoes.
    pub out: VecDeque<u8>,
    /// The output column (for tabs, ONOCR and erasing tabs).
    pub column: u32,
    /// The column at which the line being edited started.
    pub canon_column: u32,
    /// The last character was VLNEXT: the next is taken literally.
    pub lnext: bool,
    /// Output stopped by VSTOP (IXON) or TCOOFF.
    pub stopped: bool,
    /// Output stopped by TCOOFF, which only TCOON undoes.
    pub tco_stopped: bool,
    /// Echoes of the input being received, not yet committed to `out`:
    /// an ISIG character discards them (n_tty's echo buffer). Always empty
    /// between two receives.
    #[serde(skip)]
    echo: VecDeque<u8>,
    /// Whether output processing writes to `echo` rather than `out`.
    #[serde(skip)]
    echoing: bool,
}

/// n_tty commits echoes to the output once this many are pending (and at
/// the end of each receive).
const ECHO_COMMIT_WATERMARK: usize = 256;
statefile::versioned!(LineDiscipline, "vfs.LineDiscipline", 1);

/// What receiving input asks of the terminal besides queueing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Bytes taken (the rest wait for room).
    pub taken: usize,
    /// Signals for the foreground process group, in order.
    pub signals: Vec<i32>,
}

impl LineDiscipline {
    /// Bytes a read can take now (FIONREAD on the replica): whole lines in
    /// canonical mode.
    pub fn readable(&self, t: &Termios) -> usize {
        if t.canonical() {
            self.lines.iter().map(Vec::len).sum()
        } else {
            self.raw.len()
        }
    }

    /// Whether a read would return now (canonical: a complete line, even
    /// an empty EOF one; raw: at least `min` bytes).
    pub fn input_ready(&self, t: &Termios, min: usize) -> bool {
        if t.canonical() {
            !self.lines.is_empty()
        } else {
            self.raw.len() >= min.max(1)
        }
    }

    fn queued(&self) -> usize {
        self.lines.iter().map(Vec::len).sum::<usize>() + self.edit.len() + self.raw.len()
    }

    /// Whether more input can be taken now: a full queue throttles the
    /// writer, except in canonical mode while no line is complete, when
    /// input is taken and dropped (so that an erase or a newline still
    /// works), as n_tty does.
    pub fn input_room(&self, t: &Termios) -> bool {
        (self.queued() < INPUT_CAP && self.lines.len() < INPUT_CAP)
            || (t.canonical() && self.lines.is_empty())
    }

    /// Room for output (a replica write blocks without it).
    pub fn output_room(&self) -> usize {
        if self.stopped {
            0
        } else {
            OUTPUT_CAP.saturating_sub(self.out.len())
        }
    }

    /// Switching ICANON: pending input stays readable (n_tty_set_termios:
    /// leaving canonical mode makes the partial line raw input; entering it
    /// pushes what is queued as one line).
    pub fn set_termios(&mut self, old: &Termios, new: &Termios) {
        if old.canonical() && !new.canonical() {
            let mut raw: VecDeque<u8> = self.lines.drain(..).flatten().collect();
            raw.extend(self.edit.drain(..));
            raw.extend(self.raw.drain(..));
            self.raw = raw;
        } else if !old.canonical() && new.canonical() && !self.raw.is_empty() {
            let line: Vec<u8> = self.raw.drain(..).collect();
            self.lines.push_back(line);
        }
        // Turning IXON off restarts output a VSTOP stopped, not a TCOOFF.
        if !new.i(libc::IXON) && old.i(libc::IXON) && !self.tco_stopped {
            self.stopped = false;
        }
    }

    /// start_tty: output resumes unless TCOOFF stopped it.
    pub fn start(&mut self) {
        if !self.tco_stopped {
            self.stopped = false;
        }
    }

    /// Empties the input queue (TCIFLUSH, ISIG without NOFLSH).
    pub fn flush_input(&mut self) {
        self.lines.clear();
        self.edit.clear();
        self.raw.clear();
        self.lnext = false;
    }

    pub fn flush_output(&mut self) {
        self.out.clear();
    }

    /// A read of up to `max` bytes (canonical: from one line).
    pub fn read(&mut self, t: &Termios, max: usize) -> Vec<u8> {
        if t.canonical() {
            let Some(line) = self.lines.front_mut() else {
                return Vec::new();
            };
            let n = max.min(line.len());
            let out: Vec<u8> = line.drain(..n).collect();
            if line.is_empty() {
                self.lines.pop_front();
            }
            out
        } else {
            let n = max.min(self.raw.len());
            self.raw.drain(..n).collect()
        }
    }

    /// Takes the master's read of up to `max` bytes.
    pub fn read_output(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.out.len());
        self.out.drain(..n).collect()
    }

    /// Output processing of one character (do_output_char) into `out`;
    /// false when there is no room for it.
    fn output_char(&mut self, t: &Termios, c: u8, cap: usize) -> bool {
        let room = cap.saturating_sub(self.out.len() + self.echo.len());
        if !t.o(libc::OPOST) {
            if room == 0 {
                return false;
            }
            self.emit(&[c]);
            return true;
        }
        let mut c = c;
        match c {
            b'\n' => {
                if t.o(libc::ONLRET) {
                    self.column = 0;
                }
                if t.o(libc::ONLCR) {
                    if room < 2 {
                        return false;
                    }
                    self.column = 0;
                    self.canon_column = 0;
                    self.emit(b"\r\n");
                    return true;
                }
                self.canon_column = self.column;
            }
            b'\r' => {
                if t.o(libc::ONOCR) && self.column == 0 {
                    return true;
                }
                if t.o(libc::OCRNL) {
                    c = b'\n';
                    if t.o(libc::ONLRET) {
                        self.column = 0;
                        self.canon_column = 0;
                    }
                } else {
                    self.column = 0;
                    self.canon_column = 0;
                }
            }
            b'\t' => {
                let spaces = 8 - (self.column & 7);
                if t.oflag & libc::TABDLY == libc::XTABS {
                    if room < spaces as usize {
                        return false;
                    }
                    self.column = self.column.saturating_add(spaces);
                    self.emit(&b"        "[..spaces as usize]);
                    return true;
                }
                self.column = self.column.saturating_add(spaces);
            }
            8 => self.column = self.column.saturating_sub(1),
            _ => {
                if !is_cntrl(c) {
                    if t.o(libc::OLCUC) {
                        c = c.to_ascii_uppercase();
                    }
                    if !(t.i(libc::IUTF8) && c & 0xc0 == 0x80) {
                        self.column = self.column.saturating_add(1);
                    }
                }
            }
        }
        if room == 0 {
            return false;
        }
        self.emit(&[c]);
        true
    }

    fn emit(&mut self, b: &[u8]) {
        if self.echoing {
            self.echo.extend(b);
        } else {
            self.out.extend(b);
        }
    }

    fn commit_echoes(&mut self) {
        self.out.extend(self.echo.drain(..));
    }

    /// A replica write: as many bytes of `buf` as fit after output
    /// processing.
    pub fn write(&mut self, t: &Termios, buf: &[u8]) -> usize {
        if self.stopped {
            return 0;
        }
        let mut n = 0;
        for &c in buf {
            if !self.output_char(t, c, OUTPUT_CAP) {
                break;
            }
            n += 1;
        }
        n
    }

    /// Echoes a character raw (through output processing, never blocked:
    /// echo beyond the hard limit is dropped, as n_tty drops echoes it
    /// has no room for).
    fn echo_raw(&mut self, t: &Termios, c: u8) {
        self.echoing = true;
        self.output_char(t, c, OUTPUT_CAP + INPUT_CAP);
        self.echoing = false;
        if self.echo.len() >= ECHO_COMMIT_WATERMARK {
            self.commit_echoes();
        }
    }

    /// echo_char: a control character as ^X under ECHOCTL.
    fn echo_char(&mut self, t: &Termios, c: u8) {
        if t.l(libc::ECHOCTL) && is_cntrl(c) && c != b'\t' {
            self.echo_raw(t, b'^');
            self.echo_raw(t, c ^ 0o100);
        } else {
            self.echo_raw(t, c);
        }
    }

    /// Receives bytes written to the master.
    pub fn receive(&mut self, t: &Termios, buf: &[u8]) -> Received {
        let mut r = Received::default();
        for &c in buf {
            if !self.input_room(t) {
                break;
            }
            r.taken += 1;
            if let Some(sig) = self.receive_char(t, c) {
                r.signals.push(sig);
            }
        }
        self.commit_echoes();
        r
    }

    fn receive_char(&mut self, t: &Termios, c: u8) -> Option<i32> {
        let mut c = c;
        if t.i(libc::ISTRIP) {
            c &= 0x7f;
        }
        if t.i(libc::IUCLC) && t.l(libc::IEXTEN) {
            c = c.to_ascii_lowercase();
        }
        if self.lnext {
            self.lnext = false;
            self.store(t, c, true);
            return None;
        }
        if t.i(libc::IXON) {
            if t.is(c, libc::VSTART) {
                self.start();
                return None;
            }
            if t.is(c, libc::VSTOP) {
                self.stopped = true;
                return None;
            }
        }
        if t.l(libc::ISIG) {
            let sig = if t.is(c, libc::VINTR) {
                Some(libc::SIGINT)
            } else if t.is(c, libc::VQUIT) {
                Some(libc::SIGQUIT)
            } else if t.is(c, libc::VSUSP) {
                Some(libc::SIGTSTP)
            } else {
                None
            };
            if let Some(sig) = sig {
                if !t.l(libc::NOFLSH) {
                    self.flush_input();
                    self.echo.clear();
                }
                if t.i(libc::IXON) {
                    self.start();
                }
                if t.l(libc::ECHO) {
                    self.echo_char(t, c);
                }
                return Some(sig);
            }
        }
        if self.stopped && t.i(libc::IXON) && t.i(libc::IXANY) {
            self.start();
        }
        if c == b'\r' {
            if t.i(libc::IGNCR) {
                return None;
            }
            if t.i(libc::ICRNL) {
                c = b'\n';
            }
        } else if c == b'\n' && t.i(libc::INLCR) {
            c = b'\r';
        }
        if t.canonical() {
            let iexten = t.l(libc::IEXTEN);
            if t.is(c, libc::VERASE) || t.is(c, libc::VKILL) || (iexten && t.is(c, libc::VWERASE)) {
                self.erase(t, c);
                return None;
            }
            if iexten && t.is(c, libc::VLNEXT) {
                self.lnext = true;
                if t.l(libc::ECHO) && t.l(libc::ECHOCTL) {
                    self.echo_raw(t, b'^');
                    self.echo_raw(t, 8);
                }
                return None;
            }
            if iexten && t.is(c, libc::VREPRINT) && t.l(libc::ECHO) {
                self.echo_char(t, c);
                self.echo_raw(t, b'\n');
                let line = self.edit.clone();
                for ch in line {
                    self.echo_char(t, ch);
                }
                return None;
            }
            if c == b'\n' {
                if t.l(libc::ECHO) || t.l(libc::ECHONL) {
                    self.echo_raw(t, b'\n');
                }
                self.end_line(Some(c));
                return None;
            }
            if t.is(c, libc::VEOF) {
                self.end_line(None);
                return None;
            }
            if t.is(c, libc::VEOL) || (iexten && t.is(c, libc::VEOL2)) {
                if t.l(libc::ECHO) {
                    if self.edit.is_empty() {
                        self.canon_column = self.column;
                    }
                    self.echo_char(t, c);
                }
                self.end_line(Some(c));
                return None;
            }
        }
        self.store(t, c, false);
        None
    }

    /// Queues an ordinary character, echoing it.
    fn store(&mut self, t: &Termios, c: u8, literal: bool) {
        if t.canonical() {
            // A full queue keeps room for the newline that ends the line.
            if self.queued() >= INPUT_CAP - 1 {
                if t.l(libc::ECHO) {
                    self.echo_raw(t, 7);
                }
                return;
            }
            if t.l(libc::ECHO) {
                if self.edit.is_empty() {
                    self.canon_column = self.column;
                }
                if c == b'\n' && !literal {
                    self.echo_raw(t, c);
                } else {
                    self.echo_char(t, c);
                }
            }
            self.edit.push(c);
        } else {
            if t.l(libc::ECHO) {
                if c == b'\n' {
                    self.echo_raw(t, c);
                } else {
                    self.echo_char(t, c);
                }
            }
            self.raw.push_back(c);
        }
    }

    /// Makes the edited line readable, with its terminator if any.
    fn end_line(&mut self, terminator: Option<u8>) {
        // An empty EOF line takes a place in the queue as in n_tty's
        // buffer, so lines are bounded too.
        if self.queued() >= INPUT_CAP || self.lines.len() >= INPUT_CAP {
            return;
        }
        let mut line = std::mem::take(&mut self.edit);
        if let Some(c) = terminator {
            line.push(c);
        }
        self.lines.push_back(line);
    }

    /// VERASE, VWERASE and VKILL (n_tty's eraser).
    fn erase(&mut self, t: &Termios, c: u8) {
        if self.edit.is_empty() {
            return;
        }
        #[derive(PartialEq)]
        enum Eraser {
            Char,
            Word,
            Line,
        }
        let kind = if t.is(c, libc::VERASE) {
            Eraser::Char
        } else if t.is(c, libc::VWERASE) {
            Eraser::Word
        } else {
            if !t.l(libc::ECHO) {
                self.edit.clear();
                return;
            }
            if !t.l(libc::ECHOK) || !t.l(libc::ECHOKE) || !t.l(libc::ECHOE) {
                self.edit.clear();
                self.echo_char(t, c);
                if t.l(libc::ECHOK) {
                    self.echo_raw(t, b'\n');
                }
                return;
            }
            Eraser::Line
        };
        let mut seen_alnum = false;
        while !self.edit.is_empty() {
            // A UTF-8 character goes whole.
            let mut start = self.edit.len() - 1;
            if t.i(libc::IUTF8) {
                while start > 0 && self.edit[start] & 0xc0 == 0x80 {
                    start -= 1;
                }
            }
            let ch = self.edit[start];
            if kind == Eraser::Word {
                if ch.is_ascii_alphanumeric() || ch == b'_' {
                    seen_alnum = true;
                } else if seen_alnum {
                    break;
                }
            }
            self.edit.truncate(start);
            if t.l(libc::ECHO) {
                if kind == Eraser::Char && !t.l(libc::ECHOE) {
                    self.echo_char(t, c);
                } else if ch == b'\t' {
                    self.erase_tab(t);
                } else {
                    if is_cntrl(ch) && t.l(libc::ECHOCTL) {
                        self.echo_raw(t, 8);
                        self.echo_raw(t, b' ');
                        self.echo_raw(t, 8);
                    }
                    if !is_cntrl(ch) || t.l(libc::ECHOCTL) {
                        self.echo_raw(t, 8);
                        self.echo_raw(t, b' ');
                        self.echo_raw(t, 8);
                    }
                }
            }
            if kind == Eraser::Char {
                break;
            }
        }
    }

    /// Backs over an erased tab: as many columns as it took, counted from
    /// where the line started (echo_erase_tab).
    fn erase_tab(&mut self, t: &Termios) {
        let mut col = self.canon_column;
        for &ch in &self.edit {
            if ch == b'\t' {
                col = (col | 7).saturating_add(1);
            } else if is_cntrl(ch) {
                if t.l(libc::ECHOCTL) {
                    col = col.saturating_add(2);
                }
            } else if !(t.i(libc::IUTF8) && ch & 0xc0 == 0x80) {
                col = col.saturating_add(1);
            }
        }
        let n = 8 - (col & 7);
        for _ in 0..n {
            self.echo_raw(t, 8);
        }
    }

    /// Checks a restored discipline against the limits.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.queued() > INPUT_CAP {
            return Err(("input", format!("{} bytes queued", self.queued())));
        }
        if self.lines.len() > INPUT_CAP {
            return Err(("input", format!("{} lines queued", self.lines.len())));
        }
        if self.out.len() > OUTPUT_CAP + INPUT_CAP {
            return Err(("out", format!("{} bytes queued", self.out.len())));
        }
        if !self.lines.is_empty() && !self.raw.is_empty() {
            return Err(("raw", "both lines and raw input queued".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(ld: &mut LineDiscipline, t: &Termios, s: &[u8]) -> Vec<i32> {
        ld.receive(t, s).signals
    }

    fn echoed(ld: &mut LineDiscipline) -> Vec<u8> {
        ld.read_output(usize::MAX)
    }

    #[test]
    fn canonical_editing_and_echo() {
        let t = Termios::default();
        let mut ld = LineDiscipline::default();
        feed(&mut ld, &t, b"helo\x7flo wor\x17world\r");
        assert_eq!(ld.read(&t, 100), b"hello world\n");
        assert_eq!(
            echoed(&mut ld),
            b"helo\x08 \x08lo wor\x08 \x08\x08 \x08\x08 \x08world\r\n"
        );
        feed(&mut ld, &t, b"junk\x15ok\x04");
        assert_eq!(ld.read(&t, 100), b"ok");
        feed(&mut ld, &t, b"\x04");
        assert!(ld.input_ready(&t, 1));
        assert_eq!(ld.read(&t, 100), b"", "an EOF alone reads as 0");
        assert!(!ld.input_ready(&t, 1));
    }

    #[test]
    fn a_partial_read_leaves_the_rest_of_the_line() {
        let t = Termios::default();
        let mut ld = LineDiscipline::default();
        feed(&mut ld, &t, b"abcdef\nxy\n");
        assert_eq!(ld.readable(&t), 10);
        assert_eq!(ld.read(&t, 4), b"abcd");
        assert_eq!(ld.read(&t, 100), b"ef\n");
        assert_eq!(ld.read(&t, 100), b"xy\n");
    }

    #[test]
    fn signals_flush_and_echo_ctl() {
        let t = Termios::default();
        let mut ld = LineDiscipline::default();
        assert_eq!(
            feed(&mut ld, &t, b"abc\x03x\x1c\x1a"),
            vec![libc::SIGINT, libc::SIGQUIT, libc::SIGTSTP]
        );
        assert_eq!(
            echoed(&mut ld),
            b"^Z",
            "a signal discards the echoes not yet committed, earlier signals' too"
        );
        assert_eq!(ld.readable(&t), 0);
        assert!(ld.edit.is_empty());
    }

    #[test]
    fn raw_mode_and_output_processing() {
        let mut t = Termios::default();
        let old = t;
        t.lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
        t.iflag &= !libc::ICRNL;
        let mut ld = LineDiscipline::default();
        ld.set_termios(&old, &t);
        feed(&mut ld, &t, b"a\r\x03");
        assert_eq!(ld.read(&t, 10), b"a\r\x03");
        assert_eq!(echoed(&mut ld), b"");
        assert_eq!(ld.write(&t, b"x\ny\tz"), 5);
        assert_eq!(echoed(&mut ld), b"x\r\ny\tz");
        t.oflag &= !libc::OPOST;
        ld.write(&t, b"\n");
        assert_eq!(echoed(&mut ld), b"\n");
    }

    #[test]
    fn mode_switches_keep_pending_input() {
        let canon = Termios::default();
        let mut raw = canon;
        raw.lflag &= !libc::ICANON;
        let mut ld = LineDiscipline::default();
        feed(&mut ld, &canon, b"one\ntw");
        ld.set_termios(&canon, &raw);
        assert_eq!(ld.read(&raw, 100), b"one\ntw");
        feed(&mut ld, &raw, b"xyz");
        ld.set_termios(&raw, &canon);
        assert_eq!(ld.read(&canon, 100), b"xyz");
    }

    #[test]
    fn a_full_canonical_queue_still_takes_the_newline() {
        let t = Termios::default();
        let mut ld = LineDiscipline::default();
        let long = vec![b'a'; INPUT_CAP + 100];
        let r = ld.receive(&t, &long);
        assert_eq!(r.taken, long.len(), "excess canonical input is dropped");
        feed(&mut ld, &t, b"\n");
        let line = ld.read(&t, INPUT_CAP * 2);
        assert_eq!(line.len(), INPUT_CAP);
        assert_eq!(line.last(), Some(&b'\n'));
        let mut raw = t;
        raw.lflag &= !libc::ICANON;
        let r = ld.receive(&raw, &long);
        assert_eq!(r.taken, INPUT_CAP, "raw input throttles at the limit");
        assert!(!ld.input_room(&raw));
    }

    #[test]
    fn eof_lines_and_columns_are_bounded() {
        let t = Termios::default();
        let mut ld = LineDiscipline::default();
        let eofs = vec![4u8; INPUT_CAP * 3];
        let r = ld.receive(&t, &eofs);
        assert_eq!(ld.lines.len(), INPUT_CAP, "EOF lines fill the queue");
        assert!(r.taken <= INPUT_CAP + 1);
        assert!(!ld.input_room(&t));
        ld.column = u32::MAX;
        let mut raw = t;
        raw.oflag |= libc::XTABS;
        ld.write(&raw, b"x\tx");
        assert_eq!(ld.column, u32::MAX, "the column saturates");
    }

    #[test]
    fn termios_bytes_round_trip() {
        let t = Termios::default();
        let b = t.to_bytes();
        assert_eq!(b.len(), TERMIOS_SIZE);
        assert_eq!(Termios::from_bytes(&b), Some(t));
        assert_eq!(Termios::from_bytes(&b[..10]), None);
    }
}
