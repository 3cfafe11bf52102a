/* Signal-driven I/O: O_ASYNC through F_SETFL and FIOASYNC, F_SETOWN and
 * F_SETOWN_EX (process, group, thread), F_SETSIG with its siginfo
 * (si_code POLL_IN/POLL_OUT, si_band, si_fd), on pipes and unix sockets,
 * from the process itself and from a child; the errors fcntl gives.
 * Output is compared with Linux. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t sigio_count;
static volatile sig_atomic_t rt_count, rt_code, rt_fd;
static volatile long rt_band;

static void on_sigio(int sig) { (void)sig; sigio_count++; }

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig; (void)uc;
	rt_count++;
	rt_code = si->si_code;
	rt_fd = si->si_fd;
	rt_band = si->si_band;
}

#define CHECK(c) do { if (!(c)) { printf("FAIL line %d: %s (%s)\n", __LINE__, #c, strerror(errno)); return 1; } } while (0)

static void settle(void)
{
	/* Signals sent to the caller itself are delivered on return from the
	 * syscall; a child's write reaches us by the time waitpid returns. */
	for (int i = 0; i < 3; i++)
		getppid();
}

static const char *err(int r)
{
	return r == 0 ? "ok" : strerror(errno);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	struct sigaction sa = { .sa_handler = on_sigio };
	sigaction(SIGIO, &sa, NULL);
	struct sigaction rsa = { .sa_sigaction = on_rt, .sa_flags = SA_SIGINFO };
	sigaction(SIGRTMIN + 1, &rsa, NULL);

	int p[2];
	CHECK(pipe(p) == 0);
	printf("F_GETOWN before: %d\n", fcntl(p[0], F_GETOWN));
	printf("F_GETSIG before: %d\n", fcntl(p[0], F_GETSIG));
	struct f_owner_ex ex;
	CHECK(fcntl(p[0], F_GETOWN_EX, &ex) == 0);
	printf("F_GETOWN_EX before: type=%d pid=%d\n", ex.type, ex.pid == 0 ? 0 : -1);

	/* Nobody owns it: O_ASYNC alone sends nothing. */
	CHECK(fcntl(p[0], F_SETFL, O_ASYNC | O_NONBLOCK) == 0);
	printf("O_ASYNC in F_GETFL: %d\n", (fcntl(p[0], F_GETFL) & O_ASYNC) != 0);
	CHECK(write(p[1], "a", 1) == 1);
	settle();
	printf("no owner: sigio=%d\n", (int)sigio_count);

	CHECK(fcntl(p[0], F_SETOWN, getpid()) == 0);
	printf("F_GETOWN is me: %d\n", fcntl(p[0], F_GETOWN) == getpid());
	CHECK(write(p[1], "b", 1) == 1);
	settle();
	printf("owner: sigio>0=%d\n", sigio_count > 0);

	/* A child's write signals the owner. */
	sigio_count = 0;
	pid_t c = fork();
	if (c == 0) {
		write(p[1], "c", 1);
		_exit(0);
	}
	waitpid(c, NULL, 0);
	settle();
	printf("child's write: sigio>0=%d\n", sigio_count > 0);

	/* F_SETSIG: a real-time signal with siginfo. */
	CHECK(fcntl(p[0], F_SETSIG, SIGRTMIN + 1) == 0);
	printf("F_GETSIG: %d\n", fcntl(p[0], F_GETSIG) == SIGRTMIN + 1);
	CHECK(write(p[1], "d", 1) == 1);
	settle();
	printf("rt: count>0=%d code=%d (POLL_IN=%d) fd_ok=%d band=%#lx\n", rt_count > 0,
	       (int)rt_code, POLL_IN, rt_fd == p[0], (long)rt_band);

	/* Room for the writer: fill the pipe, then read. */
	int w = p[1];
	CHECK(fcntl(w, F_SETFL, O_ASYNC | O_NONBLOCK) == 0);
	CHECK(fcntl(w, F_SETOWN, getpid()) == 0);
	CHECK(fcntl(w, F_SETSIG, SIGRTMIN + 1) == 0);
	char buf[65536];
	memset(buf, 'x', sizeof buf);
	while (write(w, buf, sizeof buf) > 0)
		;
	rt_count = 0;
	rt_code = 0;
	while (read(p[0], buf, sizeof buf) > 0)
		;
	settle();
	printf("room: count>0=%d code=%d (POLL_OUT=%d) fd_ok=%d band=%#lx\n", rt_count > 0,
	       (int)rt_code, POLL_OUT, rt_fd == w, (long)rt_band);
	CHECK(fcntl(w, F_SETFL, O_NONBLOCK) == 0);

	/* O_ASYNC off: silence. */
	CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
	CHECK(fcntl(p[0], F_SETSIG, 0) == 0);
	sigio_count = 0;
	rt_count = 0;
	CHECK(write(p[1], "e", 1) == 1);
	settle();
	printf("off: sigio=%d rt=%d\n", (int)sigio_count, (int)rt_count);

	/* A unix socket pair through FIOASYNC, owned by a process group: a
	 * child's own, so that nothing outside the guest is signalled. */
	int s[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
	c = fork();
	if (c == 0) {
		int on = 1;
		CHECK(ioctl(s[0], FIOASYNC, &on) == 0);
		printf("FIOASYNC sets O_ASYNC: %d\n", (fcntl(s[0], F_GETFL) & O_ASYNC) != 0);
		CHECK(setpgid(0, 0) == 0);
		CHECK(fcntl(s[0], F_SETOWN, -getpgrp()) == 0);
		printf("F_GETOWN group: %d\n", fcntl(s[0], F_GETOWN) == -getpgrp());
		CHECK(fcntl(s[0], F_GETOWN_EX, &ex) == 0);
		printf("F_GETOWN_EX group: type=%d (F_OWNER_PGRP=%d) pid_ok=%d\n", ex.type,
		       F_OWNER_PGRP, ex.pid == getpgrp());
		sigio_count = 0;
		CHECK(write(s[1], "f", 1) == 1);
		settle();
		printf("socket: sigio>0=%d\n", sigio_count > 0);
		on = 0;
		CHECK(ioctl(s[0], FIOASYNC, &on) == 0);
		printf("FIOASYNC off: %d\n", (fcntl(s[0], F_GETFL) & O_ASYNC) != 0);
		_exit(0);
	}
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char junk[8];
	CHECK(read(s[0], junk, sizeof junk) == 1);

	/* A thread owner through F_SETOWN_EX. */
	CHECK(ioctl(s[0], FIOASYNC, &(int){1}) == 0);
	ex.type = F_OWNER_TID;
	ex.pid = (pid_t)syscall(SYS_gettid);
	CHECK(fcntl(s[0], F_SETOWN_EX, &ex) == 0);
	printf("F_GETOWN of a thread owner is it: %d\n", fcntl(s[0], F_GETOWN) == ex.pid);
	sigio_count = 0;
	CHECK(write(s[1], "g", 1) == 1);
	settle();
	printf("thread owner: sigio>0=%d\n", sigio_count > 0);

	/* Errors. */
	printf("F_SETSIG 65: %s\n", err(fcntl(s[0], F_SETSIG, 65)));
	printf("F_SETSIG -1: %s\n", err(fcntl(s[0], F_SETSIG, -1)));
	printf("F_SETOWN 999999: %s\n", err(fcntl(s[0], F_SETOWN, 999999)));
	ex.type = 7;
	ex.pid = getpid();
	printf("F_SETOWN_EX type 7: %s\n", err(fcntl(s[0], F_SETOWN_EX, &ex)));
	printf("F_SETOWN_EX bad pointer: %s\n", err(fcntl(s[0], F_SETOWN_EX, (void *)8)));
	const char *r0 = err(fcntl(s[0], F_SETOWN, 0));
	printf("F_SETOWN 0: %s then %d\n", r0, fcntl(s[0], F_GETOWN));
	printf("FIOASYNC bad pointer: %s\n", err(ioctl(s[0], FIOASYNC, (void *)8)));
	return 0;
}
