/* Pseudo-terminals and job control: ptmx/devpts and glibc's
 * posix_openpt/grantpt/unlockpt/ptsname/openpty, the line discipline
 * (canonical editing, EOF, raw mode with VMIN/VTIME, echo flags), ISIG
 * reaching the foreground job and not a background one, SIGTSTP stopping
 * it, SIGWINCH, SIGTTOU/SIGTTIN for background groups (EIO when orphaned
 * or ignored), the controlling terminal (acquired at open, /dev/tty,
 * TIOCSCTTY/TIOCNOTTY/TIOCGSID rules), and hangups: master close (the
 * session leader gets SIGHUP, replica reads 0, writes EIO), replica close
 * (master reads EIO, POLLHUP) and the session leader's exit (SIGHUP to the
 * foreground group).
 *
 * The main process drives a session S through the master and prints what
 * the master reads, escaped; S and its jobs never print to stdout. Steps
 * are sequenced by a pipe (main -> S) and by markers <<...>> S's side
 * writes to the terminal, so the output does not depend on timing.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

static int go_r, go_w; /* main -> S: one byte per step */
static int rep_r, rep_w; /* S -> main: what S saw of the hangup */

static void say(int fd, const char *s)
{
	if (write(fd, s, strlen(s)) < 0) {
		/* reported by the missing marker */
	}
}

static void sayf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sayf(int fd, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	say(fd, buf);
}

static void print_escaped(const char *what, const char *b, size_t n)
{
	printf("%s: \"", what);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = b[i];
		if (c == '\r')
			printf("\\r");
		else if (c == '\n')
			printf("\\n");
		else if (c == '\\')
			printf("\\\\");
		else if (c < 0x20 || c >= 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	printf("\"\n");
}

/* FIONREAD of `fd` once it has reached `want` (Linux moves bytes between
 * the ends asynchronously) or after two seconds. */
static int inq(int fd, int want)
{
	int q = -1;
	for (int i = 0; i < 200; i++) {
		if (ioctl(fd, FIONREAD, &q) < 0 || q >= want)
			break;
		usleep(10000);
	}
	return q;
}

/* Whether `marker` and the rest of its line (Linux may hand the master a
 * line's end in a later read) have arrived. */
static int arrived(const char *acc, size_t n, const char *marker)
{
	const char *at = memmem(acc, n, marker, strlen(marker));
	if (!at)
		return 0;
	at += strlen(marker);
	return at[-1] == '\n' || memchr(at, '\n', (size_t)(acc + n - at)) != NULL;
}

/* Reads the master until `marker` and the end of its line have arrived
 * and prints all of it. */
static void expect(int m, const char *what, const char *marker)
{
	static char acc[8192];
	size_t n = 0;
	while (!arrived(acc, n, marker)) {
		struct pollfd p = { m, POLLIN, 0 };
		int r = poll(&p, 1, 10000);
		if (r <= 0) {
			printf("%s: timed out waiting for %s\n", what, marker);
			break;
		}
		ssize_t k = read(m, acc + n, sizeof acc - n);
		if (k <= 0) {
			printf("%s: master read %zd %s\n", what, k, k < 0 ? errname(errno) : "");
			break;
		}
		n += k;
		if (n == sizeof acc)
			break;
	}
	print_escaped(what, acc, n);
	fflush(stdout);
}

static void go(void)
{
	if (write(go_w, "g", 1) != 1)
		printf("go pipe broken\n");
}

static void wait_go(void)
{
	char c;
	if (read(go_r, &c, 1) != 1)
		_exit(90);
}

static void put(int m, const char *s)
{
	if (write(m, s, strlen(s)) != (ssize_t)strlen(s))
		printf("master write failed: %s\n", errname(errno));
}

static volatile sig_atomic_t got_sig[65];
static void record(int sig)
{
	got_sig[sig]++;
}

static void on(int sig, void (*h)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = h;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}

static const char *status_str(int st)
{
	static char b[64];
	if (WIFEXITED(st))
		snprintf(b, sizeof b, "exit %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(b, sizeof b, "killed by %d", WTERMSIG(st));
	else if (WIFSTOPPED(st))
		snprintf(b, sizeof b, "stopped by %d", WSTOPSIG(st));
	else
		snprintf(b, sizeof b, "status %#x", st);
	return b;
}

/* Waits, in a child of S, for signal `sig` and reports it on the tty. */
static void job_reporting(int tty, int ready_w, int sig, const char *name)
{
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, sig);
	sigprocmask(SIG_BLOCK, &block, &old);
	on(sig, record, 0);
	if (write(ready_w, "r", 1) != 1)
		_exit(91);
	for (;;) {
		sigsuspend(&old);
		if (got_sig[sig]) {
			got_sig[sig] = 0;
			if (sig == SIGWINCH) {
				struct winsize ws;
				ioctl(tty, TIOCGWINSZ, &ws);
				sayf(tty, "%s:WINCH %dx%d<<%s>>\n", name, ws.ws_row, ws.ws_col, name);
			} else {
				sayf(tty, "%s:sig %d<<%s>>\n", name, sig, name);
			}
			if (sig == SIGHUP)
				_exit(0);
		}
	}
}

static pid_t spawn_job(int tty, int sig, const char *name)
{
	int p[2];
	if (pipe(p))
		_exit(92);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		setpgid(0, 0);
		job_reporting(tty, p[1], sig, name);
	}
	setpgid(pid, pid);
	close(p[1]);
	char c;
	if (read(p[0], &c, 1) != 1)
		_exit(93);
	close(p[0]);
	return pid;
}

static void set_lflag(int tty, tcflag_t on_bits, tcflag_t off_bits)
{
	struct termios t;
	tcgetattr(tty, &t);
	t.c_lflag |= on_bits;
	t.c_lflag &= ~off_bits;
	tcsetattr(tty, TCSANOW, &t);
}

/* A background child doing `what` to the tty; S reports how it ended. */
static void background(int tty, const char *name, int what)
{
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		signal(SIGTTOU, SIG_DFL); /* S ignores it */
		char c;
		switch (what) {
		case 0: /* write with TOSTOP */
			say(tty, "never");
			_exit(0);
		case 1: /* read */
			_exit(read(tty, &c, 1) < 0 ? 10 + errno : 1);
		case 2: /* read with SIGTTIN ignored */
			signal(SIGTTIN, SIG_IGN);
			_exit(read(tty, &c, 1) < 0 ? 10 + errno : 1);
		case 3: { /* write with TOSTOP and SIGTTOU blocked */
			sigset_t s;
			sigemptyset(&s);
			sigaddset(&s, SIGTTOU);
			sigprocmask(SIG_BLOCK, &s, NULL);
			_exit(write(tty, "w", 1) == 1 ? 6 : 10 + errno);
		}
		case 4: /* tcsetpgrp from the background */
			_exit(tcsetpgrp(tty, getpgrp()) < 0 ? 10 + errno : 7);
		case 5: { /* tcsetattr from the background, SIGTTOU ignored */
			struct termios t;
			signal(SIGTTOU, SIG_IGN);
			tcgetattr(tty, &t);
			_exit(tcsetattr(tty, TCSANOW, &t) < 0 ? 10 + errno : 8);
		}
		}
		_exit(99);
	}
	setpgid(pid, pid);
	int st;
	waitpid(pid, &st, WUNTRACED);
	sayf(tty, "%s: %s", name, status_str(st));
	if (WIFSTOPPED(st)) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	say(tty, "\n");
}

/* The session S: leader, with the replica as its controlling terminal. */
static void session(const char *name)
{
	setsid();
	int tty = open(name, O_RDWR); /* no O_NOCTTY: acquires it */
	if (tty < 0)
		_exit(80);
	signal(SIGTTOU, SIG_IGN); /* a shell's habit: tcsetpgrp from the background */
	signal(SIGINT, SIG_IGN);
	on(SIGHUP, record, SA_RESTART);
	on(SIGCONT, record, SA_RESTART);
	char line[256];
	ssize_t n;

	/* 1: the controlling terminal. */
	wait_go();
	pid_t sid = 0, pg = 0;
	ioctl(tty, TIOCGSID, &sid);
	ioctl(tty, TIOCGPGRP, &pg);
	sayf(tty, "sid=me:%d pgrp=me:%d", sid == getpid(), pg == getpid());
	int dev = open("/dev/tty", O_RDWR);
	struct stat st;
	fstat(dev, &st);
	sayf(tty, " /dev/tty:%s %d,%d", dev >= 0 ? "open" : errname(errno), major(st.st_rdev),
	     minor(st.st_rdev));
	say(dev, " via-dev-tty");
	close(dev);
	sayf(tty, " sctty-again:%s", ioctl(tty, TIOCSCTTY, 0) == 0 ? "OK" : errname(errno));
	pid_t c = fork();
	if (c == 0) {
		int r = ioctl(tty, TIOCSCTTY, 0);
		int e1 = r < 0 ? errno : 0;
		setsid();
		int d = open("/dev/tty", O_RDWR);
		int e2 = d < 0 ? errno : 0;
		r = ioctl(tty, TIOCGPGRP, &pg);
		int e3 = r < 0 ? errno : 0;
		sayf(tty, " child: sctty:%s newsession-dev-tty:%s gpgrp:%s", errname(e1),
		     errname(e2), errname(e3));
		_exit(0);
	}
	waitpid(c, NULL, 0);
	c = fork();
	if (c == 0)
		_exit(0);
	waitpid(c, NULL, 0);
	errno = 0;
	int r = tcsetpgrp(tty, c);
	sayf(tty, " spgrp-gone:%s", r < 0 ? errname(errno) : "OK");
	pid_t neg = -1;
	r = ioctl(tty, TIOCSPGRP, &neg);
	sayf(tty, " spgrp-neg:%s", r < 0 ? errname(errno) : "OK");
	r = tcsetpgrp(tty, getpgid(getppid()));
	sayf(tty, " spgrp-other-session:%s<<1>>\n", r < 0 ? errname(errno) : "OK");

	/* 2: canonical input and line editing, read back. */
	wait_go();
	for (int i = 0; i < 4; i++) {
		n = read(tty, line, sizeof line);
		if (n < 0)
			n = 0;
		sayf(tty, "read %zd [%.*s]\n", n, (int)n, line);
	}
	say(tty, "<<2>>\n");

	/* 3: ^C with SIGINT ignored: echoed, input flushed. */
	wait_go();
	n = read(tty, line, sizeof line);
	sayf(tty, "after ^C: [%.*s]<<3>>\n", n > 0 ? (int)n : 0, line);

	/* 4: raw mode, VMIN/VTIME, no echo; then ECHONL alone. */
	wait_go();
	struct termios saved, raw;
	tcgetattr(tty, &saved);
	raw = saved;
	raw.c_lflag &= ~(ICANON | ECHO | ISIG | IEXTEN);
	raw.c_iflag &= ~(ICRNL | IXON);
	raw.c_cc[VMIN] = 3;
	raw.c_cc[VTIME] = 0;
	tcsetattr(tty, TCSANOW, &raw);
	say(tty, "raw<<4a>>\n");
	n = read(tty, line, sizeof line);
	sayf(tty, "raw read %zd:", n);
	for (ssize_t i = 0; i < n; i++)
		sayf(tty, " %02x", (unsigned char)line[i]);
	raw.c_cc[VMIN] = 0;
	raw.c_cc[VTIME] = 2;
	tcsetattr(tty, TCSANOW, &raw);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = read(tty, line, sizeof line);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	sayf(tty, " vtime read %zd waited>=150ms:%d<<4r>>\n", n, ms >= 150);
	tcsetattr(tty, TCSANOW, &saved);
	wait_go();
	set_lflag(tty, ECHONL, ECHO);
	say(tty, "echonl<<4b>>\n");
	n = read(tty, line, sizeof line);
	sayf(tty, "secret read %zd<<4c>>\n", n);
	tcsetattr(tty, TCSANOW, &saved);

	/* 5: ^C reaches the foreground job only; ^Z stops it. No echo, so
	 * that the echo cannot race the job's report. */
	wait_go();
	set_lflag(tty, 0, ECHO);
	pid_t fg = spawn_job(tty, SIGINT, "fg");
	pid_t bg = spawn_job(tty, SIGINT, "bg");
	tcsetpgrp(tty, fg);
	say(tty, "jobs<<5a>>\n");
	int wst;
	waitpid(fg, &wst, WUNTRACED);
	sayf(tty, "fg %s<<5b>>\n", status_str(wst));
	wait_go();
	tcsetpgrp(tty, getpgrp());
	kill(fg, SIGCONT);
	kill(fg, SIGKILL);
	kill(bg, SIGKILL);
	waitpid(fg, &wst, 0);
	waitpid(bg, NULL, 0);
	say(tty, "reaped<<5c>>\n");

	/* 6: SIGWINCH to the foreground job on a change only. */
	wait_go();
	pid_t w = spawn_job(tty, SIGWINCH, "winch");
	tcsetpgrp(tty, w);
	say(tty, "winch job<<6a>>\n");
	wait_go();
	tcsetpgrp(tty, getpgrp());
	kill(w, SIGKILL);
	waitpid(w, NULL, 0);
	say(tty, "<<6b>>\n");

	/* 7: background groups. */
	wait_go();
	set_lflag(tty, TOSTOP, 0);
	background(tty, "bg write TOSTOP", 0);
	background(tty, "bg read", 1);
	background(tty, "bg read SIGTTIN ignored", 2);
	background(tty, "bg write SIGTTOU blocked", 3);
	background(tty, "bg tcsetpgrp", 4);
	background(tty, "bg tcsetattr SIGTTOU ignored", 5);
	set_lflag(tty, 0, TOSTOP);
	/* An orphaned group: its reads get EIO, not SIGTTIN. */
	int orph[2];
	if (pipe(orph))
		_exit(81);
	c = fork();
	if (c == 0) {
		pid_t gc = fork();
		if (gc == 0) {
			setpgid(0, 0);
			close(orph[1]);
			char b;
			if (read(orph[0], &b, 1) < 0) /* until the parent is gone */
				_exit(94);
			while (getppid() == c)
				usleep(1000);
			r = read(tty, &b, 1);
			sayf(tty, "orphaned read: %s<<7>>\n", r < 0 ? errname(errno) : "data");
			_exit(0);
		}
		_exit(0);
	}
	close(orph[0]);
	waitpid(c, NULL, 0);
	close(orph[1]);

	/* 8: the master's close: SIGHUP and SIGCONT to us, reads 0, writes EIO. */
	wait_go();
	tcsetpgrp(tty, getpgrp());
	got_sig[SIGHUP] = got_sig[SIGCONT] = 0;
	say(tty, "waiting for the hangup<<8>>\n");
	n = read(tty, line, sizeof line);
	int e = 0;
	if (n < 0)
		e = errno;
	/* Linux wakes the reader (EIO: the other side closed) before it hangs
	 * the tty up, and sends SIGHUP only once the files are hung up, so the
	 * signal is what says the hangup is over. */
	for (int i = 0; i < 5000 && !got_sig[SIGHUP]; i++)
		usleep(1000);
	ssize_t wr = write(tty, "x", 1);
	int we = wr < 0 ? errno : 0;
	struct termios t;
	int ge = tcgetattr(tty, &t) < 0 ? errno : 0;
	/* The read the hangup ends returns EIO, or 0 when SIGHUP's restart
	 * comes first (Linux does both); a later read is EOF. */
	int ended = n == 0 || (n < 0 && e == EIO);
	ssize_t again = read(tty, line, sizeof line);
	sayf(rep_w, "blocked read ended %d, read again %zd, write %s, tcgetattr %s, SIGHUP %d, SIGCONT %d\n",
	     ended, again, errname(we), errname(ge), got_sig[SIGHUP] > 0, got_sig[SIGCONT] > 0);
	_exit(4);
}

static void pair_basics(void)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	printf("posix_openpt: %s\n", m >= 0 ? "OK" : errname(errno));
	struct stat st;
	fstat(m, &st);
	printf("master: chr=%d rdev=%d,%d isatty=%d\n", S_ISCHR(st.st_mode), major(st.st_rdev),
	       minor(st.st_rdev), isatty(m));
	char *name = ptsname(m);
	int n = -1;
	ioctl(m, TIOCGPTN, &n);
	char want[64];
	snprintf(want, sizeof want, "/dev/pts/%d", n);
	printf("ptsname matches TIOCGPTN: %d\n", name && strcmp(name, want) == 0);
	int lk = -1;
	ioctl(m, TIOCGPTLCK, &lk);
	int s = open(want, O_RDWR | O_NOCTTY);
	printf("locked=%d open while locked: %s\n", lk, s < 0 ? errname(errno) : "opened");
	printf("grantpt: %d unlockpt: %d\n", grantpt(m), unlockpt(m));
	ioctl(m, TIOCGPTLCK, &lk);
	s = open(want, O_RDWR | O_NOCTTY);
	fstat(s, &st);
	printf("locked=%d replica: %s chr=%d major=%d minor-is-ptn=%d\n", lk,
	       s >= 0 ? "opened" : errname(errno), S_ISCHR(st.st_mode), major(st.st_rdev),
	       (int)minor(st.st_rdev) == n);
	struct termios t;
	tcgetattr(s, &t);
	printf("termios: iflag=%o oflag=%o cflag=%o lflag=%o vmin=%d veof=%d\n", t.c_iflag,
	       t.c_oflag, t.c_cflag, t.c_lflag, t.c_cc[VMIN], t.c_cc[VEOF]);
	struct winsize ws = { 0 };
	ioctl(m, TIOCGWINSZ, &ws);
	printf("winsize %dx%d\n", ws.ws_row, ws.ws_col);
	pid_t pg = -1;
	printf("gpgrp on master: %d pgrp=%d\n", ioctl(m, TIOCGPGRP, &pg), pg);
	int r = ioctl(s, TIOCGPGRP, &pg);
	printf("gpgrp on a replica that is not our tty: %s\n", r < 0 ? errname(errno) : "OK");
	r = ioctl(m, TIOCGSID, &pg);
	printf("gsid without a session: %s\n", r < 0 ? errname(errno) : "OK");
	r = ioctl(m, TIOCNOTTY);
	printf("notty on master: %s\n", r < 0 ? errname(errno) : "OK");
	printf("lseek: %s\n", lseek(s, 0, SEEK_SET) < 0 ? errname(errno) : "OK");
	r = ioctl(m, FIOCLEX);
	int cloexec = fcntl(m, F_GETFD);
	int r2 = ioctl(m, FIONCLEX);
	printf("FIOCLEX: %d cloexec %d, FIONCLEX: %d cloexec %d\n", r, cloexec, r2, fcntl(m, F_GETFD));
	printf("tcdrain: %d tcsendbreak: %d on master: %d\n", tcdrain(s), tcsendbreak(s, 0), tcdrain(m));
	int bits = 0;
	r = ioctl(s, TIOCMGET, &bits);
	printf("TIOCMGET: %s\n", r < 0 ? errname(errno) : "OK");
	/* Replica output through OPOST/ONLCR, FIONREAD both ways. */
	say(s, "out\n");
	printf("master FIONREAD after 'out\\n': %d\n", inq(m, 5));
	expect(m, "replica wrote", "\n");
	put(m, "in\n");
	printf("replica FIONREAD after 'in\\n': %d\n", inq(s, 3));
	expect(m, "echo", "\n");
	tcflush(s, TCIFLUSH);
	int q = -1;
	ioctl(s, FIONREAD, &q);
	printf("after TCIFLUSH: %d\n", q);
	/* epoll over both ends: the replica edge-triggered. */
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u32 = 1 };
	epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
	ev.events = EPOLLIN;
	ev.data.u32 = 2;
	epoll_ctl(ep, EPOLL_CTL_ADD, m, &ev);
	struct epoll_event got[4];
	printf("epoll before input: %d\n", epoll_wait(ep, got, 4, 100));
	put(m, "e\n");
	unsigned seen = 0;
	for (int i = 0; i < 20 && seen != 6; i++) {
		int k = epoll_wait(ep, got, 4, 500);
		for (int j = 0; j < k; j++)
			seen |= 1u << got[j].data.u32;
	}
	printf("epoll after input: replica %d master %d\n", !!(seen & 2), !!(seen & 4));
	int ek = epoll_wait(ep, got, 4, 50);
	printf("epoll again: %d (the replica is edge-triggered; the master's echo %s)\n", ek,
	       ek == 1 && got[0].data.u32 == 2 ? "still ready" : "?");
	expect(m, "echo of e", "\n");
	tcflush(s, TCIFLUSH);
	/* The replica's last close: the master drains, then EIO and POLLHUP. */
	say(s, "bye");
	close(s);
	char b[16];
	ssize_t k = read(m, b, sizeof b);
	printf("master read after replica close: %zd\n", k);
	struct pollfd p = { m, POLLIN | POLLOUT, 0 };
	poll(&p, 1, 0);
	printf("master revents: %#x\n", p.revents);
	ek = epoll_wait(ep, got, 4, 100);
	printf("epoll after the replica's close: %d events %#x\n", ek, ek == 1 ? got[0].events : 0);
	close(ep);
	k = read(m, b, sizeof b);
	printf("master read again: %s\n", k < 0 ? errname(errno) : "data");
	close(m);
	/* openpty; the master's close removes /dev/pts/N at once, while the
	 * replica still holds the index (so no other process's pty can take
	 * it before we look). */
	int am, as;
	printf("openpty: %d\n", openpty(&am, &as, NULL, NULL, NULL));
	printf("isatty(replica)=%d\n", isatty(as));
	snprintf(want, sizeof want, "%s", ptsname(am));
	close(am);
	printf("pts gone after the master's close: %s\n",
	       open(want, O_RDWR | O_NOCTTY) < 0 ? errname(errno) : "opened");
	close(as);
	int fds[2];
	if (pipe(fds))
		return;
	r = tcgetattr(fds[0], &t);
	printf("tcgetattr on a pipe: %s\n", r < 0 ? errname(errno) : "OK");
	int null = open("/dev/null", O_RDWR);
	r = ioctl(null, TIOCGWINSZ, &ws);
	printf("TIOCGWINSZ on /dev/null: %s\n", r < 0 ? errname(errno) : "OK");
	close(null);
	close(fds[0]);
	close(fds[1]);
	fflush(stdout);
}

/* A session leader's exit: its foreground job gets SIGHUP. */
static void leader_exit(void)
{
	int m, s;
	if (openpty(&m, &s, NULL, NULL, NULL))
		return;
	char name[64];
	snprintf(name, sizeof name, "%s", ptsname(m));
	int gp[2];
	if (pipe(gp))
		return;
	fflush(stdout);
	pid_t leader = fork();
	if (leader == 0) {
		close(m);
		close(gp[1]);
		setsid();
		int tty = open(name, O_RDWR);
		set_lflag(tty, 0, ECHO);
		pid_t fg = spawn_job(tty, SIGHUP, "fg-of-exiting-leader");
		tcsetpgrp(tty, fg);
		say(tty, "leader exits<<9a>>\n");
		char c;
		if (read(gp[0], &c, 1) != 1)
			_exit(95);
		_exit(3);
	}
	close(gp[0]);
	expect(m, "leader", "<<9a>>");
	if (write(gp[1], "g", 1) != 1)
		printf("go pipe broken\n");
	close(gp[1]);
	int st;
	waitpid(leader, &st, 0);
	printf("leader: %s\n", status_str(st));
	expect(m, "after the leader's exit", "<<fg-of-exiting-leader>>");
	close(s);
	close(m);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	pair_basics();

	int m = posix_openpt(O_RDWR | O_NOCTTY);
	grantpt(m);
	unlockpt(m);
	char name[64];
	snprintf(name, sizeof name, "%s", ptsname(m));
	int gp[2], rp[2];
	if (pipe(gp) || pipe(rp))
		return 1;
	rep_r = rp[0];
	rep_w = rp[1];
	go_r = gp[0];
	go_w = gp[1];
	fflush(stdout);
	pid_t s = fork();
	if (s == 0) {
		close(m);
		close(go_w);
		close(rep_r);
		session(name);
	}
	close(go_r);
	close(rep_w);

	go();
	expect(m, "ctty", "<<1>>");
	pid_t sid = 0;
	ioctl(m, TIOCGSID, &sid);
	printf("master TIOCGSID is S: %d\n", sid == s);

	go();
	/* Erase, word-erase, kill, EOF mid-line and alone. */
	/* One write: all of it is echoed before S can answer. */
	put(m, "hello wrld\x7f\x7f\x7f\x7forld\rfoo bar\x17" "baz\x15qux\nabc\x04\x04");
	expect(m, "canonical", "<<2>>");

	go();
	put(m, "lost\x03kept\n");
	expect(m, "^C ignored", "<<3>>");

	go();
	expect(m, "raw", "<<4a>>");
	put(m, "x\x03\r");
	expect(m, "raw input", "<<4r>>");
	go();
	expect(m, "echonl", "<<4b>>");
	put(m, "secret\n");
	expect(m, "secret", "<<4c>>");

	go();
	expect(m, "jobs", "<<5a>>");
	put(m, "\x03");
	expect(m, "^C", "<<fg>>");
	put(m, "\x1a");
	expect(m, "^Z", "<<5b>>");
	go();
	expect(m, "after ^Z", "<<5c>>");

	go();
	expect(m, "winch job", "<<6a>>");
	struct winsize ws = { .ws_row = 24, .ws_col = 80 };
	ioctl(m, TIOCSWINSZ, &ws);
	expect(m, "resize", "<<winch>>");
	ioctl(m, TIOCSWINSZ, &ws); /* no change: no signal */
	ws.ws_row = 30;
	ws.ws_col = 100;
	ioctl(m, TIOCSWINSZ, &ws);
	expect(m, "resize again", "<<winch>>");
	go();
	expect(m, "winch done", "<<6b>>");

	go();
	expect(m, "background", "<<7>>");

	go();
	expect(m, "before the hangup", "<<8>>");
	close(m);
	int st;
	waitpid(s, &st, 0);
	char report[256];
	ssize_t k = read(rep_r, report, sizeof report - 1);
	report[k > 0 ? k : 0] = 0;
	printf("S after the hangup: %s, saw: %s", status_str(st), report);

	leader_exit();
	return 0;
}
