/* Checkpoint workload for pidfds: child A (made with clone(CLONE_PIDFD),
 * a second pidfd of it PIDFD_NONBLOCK, the first in an epoll set) keeps
 * running; child B has exited and is a zombie, its pidfd PIDFD_NONBLOCK;
 * child C has exited and been reaped. Prints "setup", TICKS lines
 * "tick N" 100 ms apart (the checkpoint comes among them), then what each
 * pidfd does: the same lines natively and across a checkpoint and
 * restore. */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif

#define TICKS 20

static int pidfd_open(pid_t pid, unsigned flags)
{
	return (int)syscall(SYS_pidfd_open, pid, flags);
}

static const char *send(int fd, int sig)
{
	return syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) < 0 ? errname(errno) : "OK";
}

static int readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* waitid(P_PIDFD, fd, options): its result and what it reaped. */
static void wait_on(const char *who, int fd, int options)
{
	siginfo_t si;
	memset(&si, 0, sizeof si);
	long r = syscall(SYS_waitid, P_PIDFD, fd, &si, options, NULL);
	if (r < 0) {
		printf("%s waitid: %s\n", who, errname(errno));
		return;
	}
	const char *code = si.si_pid == 0                ? "none"
			   : si.si_code == CLD_EXITED ? "CLD_EXITED"
			   : si.si_code == CLD_KILLED ? "CLD_KILLED"
						      : "other";
	printf("%s waitid: OK %s status %d\n", who, code, si.si_status);
}

static pid_t child_waiting_on(int fds[2], int code)
{
	CHECK(pipe(fds) == 0);
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		char b;
		close(fds[1]);
		if (read(fds[0], &b, 1) != 1)
			_exit(1);
		_exit(code);
	}
	close(fds[0]);
	return c;
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);

	int afd = -1;
	long a = syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &afd, 0, 0);
	CHECK(a >= 0);
	if (a == 0) {
		for (;;)
			pause();
	}
	CHECK(afd >= 0);
	int anb = pidfd_open((pid_t)a, PIDFD_NONBLOCK);
	CHECK(anb >= 0);
	int ep = epoll_create1(0);
	CHECK(ep >= 0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 41};
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, afd, &ev) == 0);

	int bgo[2], cgo[2];
	pid_t b = child_waiting_on(bgo, 5);
	int bfd = pidfd_open(b, PIDFD_NONBLOCK);
	CHECK(bfd >= 0);
	pid_t c = child_waiting_on(cgo, 6);
	int cfd = pidfd_open(c, 0);
	CHECK(cfd >= 0);
	CHECK(write(bgo[1], "x", 1) == 1);
	CHECK(readable(bfd, 10000)); /* B is a zombie now */
	CHECK(write(cgo[1], "x", 1) == 1);
	int st;
	CHECK(waitpid(c, &st, 0) == c); /* C is reaped */
	printf("setup\n");

	for (int i = 1; i <= TICKS; i++) {
		struct timespec ts = {0, 100000000};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		printf("tick %d\n", i);
	}

	/* A: running. */
	printf("a: cloexec %d nonblock %d/%d readable %d\n", (fcntl(afd, F_GETFD) & FD_CLOEXEC) != 0,
	       (fcntl(afd, F_GETFL) & O_NONBLOCK) != 0, (fcntl(anb, F_GETFL) & O_NONBLOCK) != 0,
	       readable(afd, 0));
	printf("a: epoll %d\n", epoll_wait(ep, &ev, 1, 0));
	wait_on("a nonblock", anb, WEXITED);
	wait_on("a WNOHANG", afd, WEXITED | WNOHANG);
	printf("a: signal %s\n", send(afd, SIGTERM));
	ev.data.u64 = 0;
	int n = epoll_wait(ep, &ev, 1, 10000);
	printf("a: epoll after signal %d data %d readable %d\n", n, (int)ev.data.u64, readable(afd, 0));
	wait_on("a", afd, WEXITED);
	printf("a: signal after reap %s readable %d\n", send(afd, SIGTERM), readable(afd, 0));
	wait_on("a after reap", afd, WEXITED | WNOHANG);

	/* B: a zombie. */
	printf("b: nonblock %d readable %d signal %s\n", (fcntl(bfd, F_GETFL) & O_NONBLOCK) != 0,
	       readable(bfd, 0), send(bfd, SIGTERM));
	wait_on("b", bfd, WEXITED);

	/* C: reaped. */
	printf("c: readable %d signal %s\n", readable(cfd, 0), send(cfd, SIGTERM));
	wait_on("c", cfd, WEXITED | WNOHANG);
	printf("done\n");
	return 0;
}
