/* poll, ppoll, select and pselect6 over pipes: readiness, timeouts, the
 * time left written back, POLLNVAL/EBADF, HUP and ERR, and a wait woken
 * by a write from another thread. */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>

static int wp;

static void *late_writer(void *arg)
{
	(void)arg;
	usleep(40000);
	CHECK(write(wp, "x", 1) == 1);
	return NULL;
}

static long long ms_since(struct timespec *a)
{
	struct timespec b;
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (b.tv_sec - a->tv_sec) * 1000LL + (b.tv_nsec - a->tv_nsec) / 1000000;
}

static volatile sig_atomic_t got_usr1;
static void on_usr1(int s)
{
	(void)s;
	got_usr1++;
}

int main(void)
{
	int p[2];
	char c;
	CHECK(pipe(p) == 0);
	wp = p[1];

	struct pollfd fds[3] = {
		{.fd = p[0], .events = POLLIN},
		{.fd = p[1], .events = POLLOUT},
		{.fd = -1, .events = POLLIN},
	};
	int n = poll(fds, 3, 0);
	printf("poll idle: n=%d r=%#x w=%#x neg=%#x\n", n, fds[0].revents,
	       fds[1].revents, fds[2].revents);
	CHECK(write(p[1], "a", 1) == 1);
	n = poll(fds, 2, 0);
	printf("poll data: n=%d r=%#x\n", n, fds[0].revents);
	CHECK(read(p[0], &c, 1) == 1);

	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = poll(fds, 1, 60);
	printf("poll timeout: n=%d waited>=55ms=%d\n", n, ms_since(&t0) >= 55);

	pthread_t th;
	CHECK(pthread_create(&th, NULL, late_writer, NULL) == 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = poll(fds, 1, 5000);
	long long el = ms_since(&t0);
	printf("poll woken by write: n=%d r=%#x early=%d\n", n, fds[0].revents, el < 2000);
	pthread_join(th, NULL);
	CHECK(read(p[0], &c, 1) == 1);

	struct pollfd bad = {.fd = 999, .events = POLLIN};
	n = poll(&bad, 1, 0);
	printf("poll bad fd: n=%d revents=%#x\n", n, bad.revents);
	EXPECT_ERR("poll efault", syscall(SYS_poll, (void *)8, 1, 0));

	/* ppoll: timeout written back? Linux's ppoll does not touch the
	 * caller's timespec through glibc (it copies); the call's own
	 * semantics: 0 on timeout. */
	struct timespec ts = {0, 30 * 1000000};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = ppoll(fds, 1, &ts, NULL);
	printf("ppoll timeout: n=%d waited>=25ms=%d\n", n, ms_since(&t0) >= 25);
	struct timespec badts = {0, -1};
	EXPECT_ERR("ppoll bad timespec", ppoll(fds, 1, &badts, NULL));

	/* ppoll's mask is applied for the wait only: a blocked SIGUSR1 that
	 * is pending interrupts it (EINTR, handler runs), and is blocked
	 * again afterwards. */
	struct sigaction sa = {.sa_handler = on_usr1};
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	sigset_t block, empty, now;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigemptyset(&empty);
	CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0);
	raise(SIGUSR1);
	printf("pending before ppoll: handled=%d\n", (int)got_usr1);
	errno = 0;
	n = ppoll(fds, 1, NULL, &empty);
	printf("ppoll with mask: n=%d errno=%s handled=%d\n", n, errname(errno), (int)got_usr1);
	CHECK(sigprocmask(SIG_BLOCK, NULL, &now) == 0);
	printf("mask restored: %d\n", sigismember(&now, SIGUSR1));
	CHECK(sigprocmask(SIG_UNBLOCK, &block, NULL) == 0);

	/* select: readiness, the time left written back, EBADF. */
	fd_set r, w;
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_SET(p[0], &r);
	FD_SET(p[1], &w);
	struct timeval tv = {1, 0};
	n = select(p[1] + 1, &r, &w, NULL, &tv);
	printf("select: n=%d r=%d w=%d left<1s=%d left>0.5s=%d\n", n, FD_ISSET(p[0], &r),
	       FD_ISSET(p[1], &w), tv.tv_sec == 0, tv.tv_sec == 1 || tv.tv_usec > 500000);
	FD_ZERO(&r);
	FD_SET(p[0], &r);
	tv.tv_sec = 0;
	tv.tv_usec = 40000;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = select(p[0] + 1, &r, NULL, NULL, &tv);
	printf("select timeout: n=%d r=%d left=%ld.%06ld waited>=35ms=%d\n", n,
	       FD_ISSET(p[0], &r), (long)tv.tv_sec, (long)tv.tv_usec, ms_since(&t0) >= 35);
	FD_ZERO(&r);
	FD_SET(50, &r);
	tv.tv_sec = 0;
	tv.tv_usec = 0;
	EXPECT_ERR("select ebadf", select(51, &r, NULL, NULL, &tv));
	tv.tv_usec = -1;
	EXPECT_ERR("select bad timeval", select(1, NULL, NULL, NULL, &tv));
	EXPECT_ERR("select negative nfds", select(-1, NULL, NULL, NULL, NULL));

	/* A descriptor in the second word of the sets. */
	CHECK(dup2(p[1], 100) == 100);
	FD_ZERO(&w);
	FD_SET(100, &w);
	tv.tv_sec = 0;
	tv.tv_usec = 0;
	n = select(101, NULL, &w, NULL, &tv);
	printf("select fd 100: n=%d w=%d\n", n, FD_ISSET(100, &w));
	close(100);

	/* pselect: with a data-ready pipe and a timespec. */
	CHECK(write(p[1], "b", 1) == 1);
	FD_ZERO(&r);
	FD_SET(p[0], &r);
	ts.tv_sec = 1;
	ts.tv_nsec = 0;
	n = pselect(p[0] + 1, &r, NULL, NULL, &ts, &empty);
	printf("pselect: n=%d r=%d\n", n, FD_ISSET(p[0], &r));
	CHECK(read(p[0], &c, 1) == 1);

	/* HUP and ERR. */
	close(p[1]);
	fds[0].events = POLLIN;
	n = poll(fds, 1, 0);
	printf("poll hup: n=%d revents=%#x\n", n, fds[0].revents);
	int q[2];
	CHECK(pipe(q) == 0);
	close(q[0]);
	struct pollfd wf = {.fd = q[1], .events = POLLOUT};
	n = poll(&wf, 1, 0);
	printf("poll err: n=%d revents=%#x\n", n, wf.revents);
	/* The sandbox's stdin (a host pipe the runner closes): a HUP, seen
	 * through poll and through an epoll set. */
	struct pollfd in = {.fd = 0, .events = POLLIN};
	n = poll(&in, 1, 5000);
	printf("poll stdin: n=%d revents=%#x\n", n, in.revents);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN}, got;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) == 0);
	n = epoll_wait(ep, &got, 1, 5000);
	printf("epoll stdin: n=%d hup=%d\n", n, !!(got.events & EPOLLHUP));
	/* poll(NULL, 0, ms) and select(0, ...) as sleeps. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = poll(NULL, 0, 30);
	printf("poll as sleep: n=%d waited>=25ms=%d\n", n, ms_since(&t0) >= 25);
	tv.tv_sec = 0;
	tv.tv_usec = 30000;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = select(0, NULL, NULL, NULL, &tv);
	printf("select as sleep: n=%d waited>=25ms=%d\n", n, ms_since(&t0) >= 25);
	/* A regular file is always ready. */
	int reg = open("/etc/passwd", O_RDONLY);
	struct pollfd rf = {.fd = reg, .events = POLLIN | POLLOUT};
	n = poll(&rf, 1, 0);
	printf("poll regular: n=%d revents=%#x\n", n, rf.revents);
	return 0;
}
