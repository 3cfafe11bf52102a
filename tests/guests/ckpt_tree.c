/* A process tree to checkpoint: init (this program) with a worker child
 * that answers requests through a pipe holding three unread lines at
 * every tick, a zombie child nobody has waited for yet, a stopped child,
 * an armed interval timer and an epoll set over the worker's pipe. Each
 * tick prints a line that is a function of the tick alone (pids in the
 * sandbox are the same after a restore), so a restored run prints what an
 * uninterrupted one does.  Usage: ckpt_tree TICKS */
#include "common.h"
#include <signal.h>
#include <sys/epoll.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

static volatile sig_atomic_t alarms;
static void on_alarm(int s)
{
	(void)s;
	alarms++;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int read_line(int fd, char *buf, size_t n)
{
	size_t i = 0;
	while (i + 1 < n) {
		ssize_t r = read(fd, buf + i, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r != 1)
			return -1;
		if (buf[i] == '\n')
			break;
		i++;
	}
	buf[i] = 0;
	return 0;
}

int main(int argc, char **argv)
{
	int ticks = argc > 1 ? atoi(argv[1]) : 10;
	setvbuf(stdout, NULL, _IOLBF, 0);
	int up[2], down[2];
	if (pipe(up) || pipe(down))
		return 1;
	pid_t w = fork();
	if (w == 0) {
		close(up[0]);
		close(down[1]);
		char req;
		int k = 0;
		for (int i = 0; i < 3; i++)
			dprintf(up[1], "w%d\n", k++);
		while (read(down[0], &req, 1) == 1)
			dprintf(up[1], "w%d\n", k++);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	pid_t z = fork();
	if (z == 0)
		_exit(7);
	pid_t s = fork();
	if (s == 0) {
		for (;;)
			pause();
	}
	kill(s, SIGSTOP);
	int st;
	waitpid(s, &st, WUNTRACED);

	signal(SIGALRM, on_alarm);
	struct itimerval it = { { 0, 50000 }, { 0, 50000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 42 };
	epoll_ctl(ep, EPOLL_CTL_ADD, up[0], &ev);

	for (int i = 0; i < ticks; i++) {
		struct epoll_event got;
		int n;
		do
			n = epoll_wait(ep, &got, 1, 5000);
		while (n < 0 && errno == EINTR);
		char line[64];
		if (n != 1 || got.data.u32 != 42 || read_line(up[0], line, sizeof line) != 0) {
			printf("tick %d: the worker's pipe failed\n", i);
			return 3;
		}
		printf("tick %d pid %d worker %d zombie %d stopped %d read %s\n", i, (int)getpid(), (int)w,
		       (int)z, (int)s, line);
		if (write(down[1], "r", 1) != 1)
			return 3;
		sleep_ms(150);
	}
	printf("zombie: %s", waitpid(z, &st, WNOHANG) == z ? "reaped" : "missing");
	printf(" exit %d\n", WEXITSTATUS(st));
	kill(s, SIGCONT);
	printf("stopped child continued: %d\n", waitpid(s, &st, WCONTINUED) == s && WIFCONTINUED(st));
	kill(s, SIGKILL);
	waitpid(s, &st, 0);
	close(down[1]);
	waitpid(w, &st, 0);
	printf("worker exit %d, timer fired %d\n", WEXITSTATUS(st), alarms > 0);
	return 0;
}
