/* The checkpoint workload for pseudo-terminals: init holds a pty's master;
 * a session S has the replica as its controlling terminal and a
 * foreground job J reading it in canonical mode. Init queues every input
 * line at once (and half a line more), so the terminal holds unread input
 * and a line being edited whenever it is checkpointed; J prints one line
 * per tick. When J has read them all, init completes the half line and
 * then types ^C, which must reach J (the foreground group) as SIGINT.
 * J also shows the window size and settings init and S set at the start.
 *
 * Usage: ckpt_pty [LINES] (default 10). Output goes to stdout by write(2)
 * only, so no stdio buffer is duplicated by fork or split by a restore.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > 0 && write(1, buf, (size_t)n) != n)
		_exit(70);
}

static volatile sig_atomic_t got_int;
static void on_int(int sig)
{
	(void)sig;
	got_int = 1;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

/* J: the foreground job. */
static void job(int tty, int lines)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_int;
	sigaction(SIGINT, &sa, NULL);
	char line[256];
	for (int i = 0; i <= lines; i++) {
		sleep_ms(250);
		ssize_t n = read(tty, line, sizeof line);
		if (n < 0) {
			out("tick %d read: %s\n", i, errname(errno));
			_exit(71);
		}
		out("tick %d read %zd: %.*s", i, n, (int)n, line);
		if (i == lines / 2) {
			struct winsize ws;
			struct termios t;
			pid_t fg = tcgetpgrp(tty), sid = getsid(0);
			ioctl(tty, TIOCGWINSZ, &ws);
			tcgetattr(tty, &t);
			out("tick %d: winsize %dx%d echo %d icanon %d verase %d fg-is-me %d session-of-S %d\n",
			    i, ws.ws_row, ws.ws_col, !!(t.c_lflag & ECHO), !!(t.c_lflag & ICANON),
			    t.c_cc[VERASE], fg == getpgrp(), sid == getppid());
		}
		if (i == lines - 1) {
			/* Tell init (through the master) that the queued lines are read. */
			if (write(tty, "J: all queued lines read\n", 25) != 25)
				_exit(72);
		}
	}
	/* Wait for ^C. */
	while (!got_int)
		pause();
	out("J: SIGINT from the terminal\n");
	_exit(5);
}

int main(int argc, char **argv)
{
	int lines = argc > 1 ? atoi(argv[1]) : 10;
	int m, s;
	struct winsize ws = { .ws_row = 31, .ws_col = 101 };
	if (openpty(&m, &s, NULL, NULL, &ws) < 0) {
		out("openpty: %s\n", errname(errno));
		return 1;
	}
	char name[64];
	snprintf(name, sizeof name, "%s", ptsname(m));
	close(s);
	out("start\n");
	int ready[2];
	if (pipe(ready))
		return 1;
	pid_t sess = fork();
	if (sess == 0) {
		close(m);
		close(ready[0]);
		setsid();
		int tty = open(name, O_RDWR);
		if (tty < 0)
			_exit(73);
		struct termios t;
		tcgetattr(tty, &t);
		t.c_cc[VERASE] = 8; /* ^H */
		tcsetattr(tty, TCSANOW, &t);
		signal(SIGTTOU, SIG_IGN);
		pid_t j = fork();
		if (j == 0) {
			setpgid(0, 0);
			job(tty, lines);
		}
		setpgid(j, j);
		tcsetpgrp(tty, j);
		if (write(ready[1], "r", 1) != 1)
			_exit(74);
		int st;
		waitpid(j, &st, 0);
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st));
	}
	close(ready[1]);
	char c;
	if (read(ready[0], &c, 1) != 1)
		return 1;
	/* Every line at once, and half of one more. */
	char buf[4096];
	size_t n = 0;
	for (int i = 0; i < lines; i++)
		n += snprintf(buf + n, sizeof buf - n, "line %d of input\n", i);
	n += snprintf(buf + n, sizeof buf - n, "half a liNE\b\b");
	if (write(m, buf, n) != (ssize_t)n)
		return 1;
	/* Read the master (echoes, J's note) until J has read them all. */
	static char acc[65536];
	size_t got = 0;
	const char *note = "J: all queued lines read";
	while (!memmem(acc, got, note, strlen(note))) {
		struct pollfd p = { m, POLLIN, 0 };
		if (poll(&p, 1, 60000) <= 0) {
			out("init: no note from J\n");
			return 1;
		}
		ssize_t k = read(m, acc + got, sizeof acc - got);
		if (k <= 0) {
			out("init: master read %zd\n", k);
			return 1;
		}
		got += (size_t)k;
	}
	out("init: the master showed %zu bytes of echo and output\n", got);
	if (write(m, "ne typed later\n", 15) != 15)
		return 1;
	sleep_ms(500);
	if (write(m, "\x03", 1) != 1)
		return 1;
	int st;
	waitpid(sess, &st, 0);
	out("init: S ended with %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return 0;
}
