/* Blocked waits woken from another thread: poll and a blocking read on a
 * signalfd by a signal sent to the waiting thread, a blocking eventfd read
 * and epoll_wait by a write, and poll/epoll_wait/select interrupted by a
 * handled signal: EINTR even with SA_RESTART (Linux never restarts them
 * after a handler), while a blocking pipe read restarts. */
#define _GNU_SOURCE
#include "common.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>

static pid_t main_tid;
static int action; /* what the helper does after its delay */
static int efd;
static int pipe_w;

static void *helper(void *arg)
{
	(void)arg;
	usleep(40000);
	uint64_t one = 1;
	switch (action) {
	case 0:
		syscall(SYS_tgkill, getpid(), main_tid, SIGUSR1);
		break;
	case 1:
		CHECK(write(efd, &one, 8) == 8);
		break;
	case 2:
		syscall(SYS_tgkill, getpid(), main_tid, SIGUSR2);
		break;
	case 3:
		syscall(SYS_tgkill, getpid(), main_tid, SIGUSR2);
		usleep(40000);
		CHECK(write(pipe_w, "z", 1) == 1);
		break;
	}
	return NULL;
}

static pthread_t start(int what)
{
	pthread_t th;
	action = what;
	CHECK(pthread_create(&th, NULL, helper, NULL) == 0);
	return th;
}

static volatile sig_atomic_t usr2;
static void on_usr2(int s)
{
	(void)s;
	usr2++;
}

int main(void)
{
	main_tid = syscall(SYS_gettid);
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	CHECK(sigprocmask(SIG_BLOCK, &m, NULL) == 0);
	int sfd = signalfd(-1, &m, 0);
	CHECK(sfd >= 0);

	pthread_t th = start(0);
	struct pollfd pf = {.fd = sfd, .events = POLLIN};
	int n = poll(&pf, 1, 5000);
	printf("poll signalfd woken: n=%d in=%d\n", n, !!(pf.revents & POLLIN));
	pthread_join(th, NULL);
	struct signalfd_siginfo si;
	ssize_t got = read(sfd, &si, sizeof si);
	printf("read: %zd usr1=%d\n", got, si.ssi_signo == SIGUSR1);

	th = start(0);
	ssize_t r = read(sfd, &si, sizeof si);
	printf("blocking signalfd read woken: %zd usr1=%d code_tkill=%d\n", r,
	       si.ssi_signo == SIGUSR1, si.ssi_code == SI_TKILL);
	pthread_join(th, NULL);

	efd = eventfd(0, 0);
	th = start(1);
	uint64_t v;
	got = read(efd, &v, 8);
	printf("blocking eventfd read woken: %zd value=%llu\n", got, (unsigned long long)v);
	pthread_join(th, NULL);

	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 5};
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0);
	th = start(1);
	struct epoll_event out;
	n = epoll_wait(ep, &out, 1, 5000);
	printf("epoll_wait woken: n=%d data=%llu\n", n, (unsigned long long)out.data.u64);
	pthread_join(th, NULL);
	CHECK(read(efd, &v, 8) == 8);

	struct sigaction sa = {.sa_handler = on_usr2, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
	th = start(2);
	errno = 0;
	n = epoll_wait(ep, &out, 1, 5000);
	printf("epoll_wait + handler: n=%d errno=%s handled=%d\n", n, errname(errno), (int)usr2);
	pthread_join(th, NULL);
	th = start(2);
	errno = 0;
	pf.fd = efd;
	n = poll(&pf, 1, 5000);
	printf("poll + handler: n=%d errno=%s handled=%d\n", n, errname(errno), (int)usr2);
	pthread_join(th, NULL);
	th = start(2);
	fd_set rs;
	FD_ZERO(&rs);
	FD_SET(efd, &rs);
	struct timeval tv = {5, 0};
	errno = 0;
	n = select(efd + 1, &rs, NULL, NULL, &tv);
	printf("select + handler: n=%d errno=%s handled=%d\n", n, errname(errno), (int)usr2);
	pthread_join(th, NULL);

	/* epoll_pwait's mask lets a pending blocked SIGUSR2 in: EINTR, its
	 * handler runs, and SIGUSR2 is blocked again afterwards. */
	sigset_t b2, none, after;
	sigemptyset(&b2);
	sigaddset(&b2, SIGUSR2);
	sigemptyset(&none);
	CHECK(sigprocmask(SIG_BLOCK, &b2, NULL) == 0);
	raise(SIGUSR2);
	int h = usr2;
	errno = 0;
	n = epoll_pwait(ep, &out, 1, 5000, &none);
	CHECK(sigprocmask(SIG_BLOCK, NULL, &after) == 0);
	printf("epoll_pwait mask: n=%d errno=%s handled=%d blocked_again=%d\n", n, errname(errno),
	       usr2 - h, sigismember(&after, SIGUSR2));
	CHECK(sigprocmask(SIG_UNBLOCK, &b2, NULL) == 0);

	/* A blocking pipe read with SA_RESTART goes on after the handler. */
	int p[2];
	CHECK(pipe(p) == 0);
	pipe_w = p[1];
	th = start(3);
	char c = 0;
	errno = 0;
	r = read(p[0], &c, 1);
	printf("pipe read + SA_RESTART handler: r=%zd c=%c handled=%d\n", r, c, (int)usr2);
	pthread_join(th, NULL);
	return 0;
}
