/* pidfds: pidfd_open polls readable once its process ends, waitid(P_PIDFD)
 * reaps through it, pidfd_send_signal kills through it, clone(CLONE_PIDFD)
 * returns one, pidfd_getfd takes another process's descriptor (with
 * ptrace's attach rule), and the errors Linux gives. */
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

	/* pidfd_getfd: the child's pipe end, taken by the parent, is the same
	 * pipe (what the parent writes the child reads), close-on-exec. */
	int q[2], say[2];
	if (pipe(say) != 0)
		return 1;
	c = fork();
	if (c == 0) {
		close(say[0]);
		if (pipe(q) != 0 || write(say[1], &q[1], sizeof q[1]) != sizeof q[1])
			_exit(1);
		close(say[1]);
		char b = 0;
		if (read(q[0], &b, 1) != 1)
			_exit(2);
		_exit(b == 'g' ? 7 : 3);
	}
	close(say[1]);
	int theirs = -1;
	if (read(say[0], &theirs, sizeof theirs) != sizeof theirs)
		return 1;
	fd = pidfd_open(c, 0);
	int got = (int)syscall(SYS_pidfd_getfd, fd, theirs, 0);
	printf("pidfd_getfd: %d, cloexec %d\n", got >= 0,
	       (fcntl(got, F_GETFD) & FD_CLOEXEC) != 0);
	printf("pidfd_getfd(bad flags): %s\n",
	       syscall(SYS_pidfd_getfd, fd, theirs, 1) < 0 ? errname(errno) : "?");
	printf("pidfd_getfd(no such fd): %s\n",
	       syscall(SYS_pidfd_getfd, fd, 999, 0) < 0 ? errname(errno) : "?");
	printf("pidfd_getfd(not a pidfd): %s\n",
	       syscall(SYS_pidfd_getfd, say[0], theirs, 0) < 0 ? errname(errno) : "?");
	printf("write into the taken end: %d\n", (int)write(got, "g", 1));
	close(got);
	waitpid(c, &st, 0);
	printf("the child read it: exit %d\n", WEXITSTATUS(st));
	printf("pidfd_getfd(reaped): %s\n",
	       syscall(SYS_pidfd_getfd, fd, 0, 0) < 0 ? errname(errno) : "?");
	close(fd);
	close(say[0]);

	/* Without the target's ids or CAP_SYS_PTRACE: EPERM. */
	int me = pidfd_open(getpid(), 0);
	c = fork();
	if (c == 0) {
		if (setuid(65534) != 0)
			_exit(1);
		long g = syscall(SYS_pidfd_getfd, me, 0, 0);
		_exit(g < 0 && errno == EPERM ? 8 : 9);
	}
	waitpid(c, &st, 0);
	printf("pidfd_getfd of root's fd as nobody: exit %d\n", WEXITSTATUS(st));
	printf("pidfd_getfd of its own fd: %d\n", (int)syscall(SYS_pidfd_getfd, me, 0, 0) >= 0);
	close(me);

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
