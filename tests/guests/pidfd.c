/* pidfds: pidfd_open polls readable once its process ends, waitid(P_PIDFD)
 * reaps through it, pidfd_send_signal kills through it, clone(CLONE_PIDFD)
 * returns one, and the errors Linux gives. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int pidfd_open(pid_t pid, unsigned flags)
{
	return (int)syscall(SYS_pidfd_open, pid, flags);
}

static int readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	int go[2];
	if (pipe(go) != 0)
		return 1;
	pid_t c = fork();
	if (c == 0) {
		char b;
		close(go[1]);
		if (read(go[0], &b, 1) != 1)
			_exit(1);
		_exit(4);
	}
	close(go[0]);
	int fd = pidfd_open(c, 0);
	printf("pidfd_open: %d, cloexec %d\n", fd >= 0, (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
	printf("readable while running: %d\n", readable(fd, 50));
	if (write(go[1], "x", 1) != 1)
		return 1;
	printf("readable after exit: %d\n", readable(fd, 5000));
	siginfo_t si;
	memset(&si, 0, sizeof si);
	printf("waitid(P_PIDFD): %d", (int)syscall(SYS_waitid, P_PIDFD, fd, &si, WEXITED, NULL));
	printf(" code %s status %d\n", si.si_code == CLD_EXITED ? "CLD_EXITED" : "?", si.si_status);
	printf("signal after reap: %s\n",
	       syscall(SYS_pidfd_send_signal, fd, SIGTERM, NULL, 0) < 0 ? errname(errno) : "sent");
	close(fd);

	c = fork();
	if (c == 0) {
		for (;;)
			pause();
	}
	fd = pidfd_open(c, 0);
	printf("pidfd_send_signal: %d\n", (int)syscall(SYS_pidfd_send_signal, fd, SIGTERM, NULL, 0));
	int st;
	waitpid(c, &st, 0);
	printf("killed through the pidfd: %d sig %d\n", WIFSIGNALED(st), WTERMSIG(st));
	close(fd);

	int cfd = -1;
	long r = syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &cfd, 0, 0);
	if (r == 0)
		_exit(6);
	printf("clone(CLONE_PIDFD): fd %d", cfd >= 0);
	memset(&si, 0, sizeof si);
	syscall(SYS_waitid, P_PIDFD, cfd, &si, WEXITED, NULL);
	printf(" status %d\n", si.si_status);
	close(cfd);

	printf("pidfd_open(no such pid): %s\n", pidfd_open(999999, 0) < 0 ? errname(errno) : "?");
	printf("pidfd_open(bad flags): %s\n", pidfd_open(getpid(), 1) < 0 ? errname(errno) : "?");
	printf("pidfd_send_signal(not a pidfd): %s\n",
	       syscall(SYS_pidfd_send_signal, 1, SIGTERM, NULL, 0) < 0 ? errname(errno) : "?");
	printf("waitid(P_PIDFD, not a child): %s\n", ({
		       int me = pidfd_open(getpid(), 0);
		       long w = syscall(SYS_waitid, P_PIDFD, me, &si, WEXITED | WNOHANG, NULL);
		       close(me);
		       w < 0 ? errname(errno) : "?";
	       }));
	return 0;
}
