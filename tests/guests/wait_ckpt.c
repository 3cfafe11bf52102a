/* Checkpoint workload for the waiting objects: sets up an epoll set over a
 * pipe holding unread bytes, an armed periodic timerfd and an eventfd
 * whose edge is not yet reported (edge-triggered), a periodic POSIX timer
 * (SIGEV_SIGNAL, a counting handler) and a signalfd with a pending blocked
 * SIGUSR2, prints "setup", then TICKS lines "tick N" 100 ms apart, each
 * waited for in poll or epoll_wait (the checkpoint comes in one of those
 * waits), then what the waiting objects hold:
 * the same lines natively and across a checkpoint and restore. */
#define _GNU_SOURCE
#include "common.h"

#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>

#define TICKS 12

static volatile sig_atomic_t timer_hits;
static void on_usr1(int s)
{
	(void)s;
	timer_hits++;
}

int main(void)
{
	int p[2];
	CHECK(pipe(p) == 0);
	CHECK(write(p[1], "hello-ckpt", 10) == 10);
	int ep = epoll_create1(0);
	CHECK(ep >= 0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);

	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	CHECK(tfd >= 0);
	struct itimerspec its = {.it_value = {0, 100000000}, .it_interval = {0, 100000000}};
	CHECK(timerfd_settime(tfd, 0, &its, NULL) == 0);
	ev.events = EPOLLIN;
	ev.data.u64 = 8;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) == 0);

	int efd = eventfd(3, EFD_NONBLOCK);
	CHECK(efd >= 0);
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 9;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0);

	struct sigaction sa = {.sa_handler = on_usr1};
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
	timer_t timer;
	CHECK(timer_create(CLOCK_MONOTONIC, &sev, &timer) == 0);
	its.it_value.tv_nsec = 50000000;
	its.it_interval.tv_nsec = 50000000;
	CHECK(timer_settime(timer, 0, &its, NULL) == 0);

	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	CHECK(sigprocmask(SIG_BLOCK, &usr2, NULL) == 0);
	int sfd = signalfd(-1, &usr2, SFD_NONBLOCK);
	CHECK(sfd >= 0);
	raise(SIGUSR2);

	/* The ticks come from a second timerfd, waited for in poll (odd
	 * ticks) or a second epoll set (even ticks), so the checkpoint stops
	 * the guest inside those waits. */
	int tick = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	CHECK(tick >= 0);
	struct itimerspec every = {.it_value = {0, 100000000}, .it_interval = {0, 100000000}};
	CHECK(timerfd_settime(tick, 0, &every, NULL) == 0);
	int tick_ep = epoll_create1(0);
	CHECK(tick_ep >= 0);
	ev.events = EPOLLIN;
	ev.data.u64 = 1;
	CHECK(epoll_ctl(tick_ep, EPOLL_CTL_ADD, tick, &ev) == 0);

	printf("setup\n");
	fflush(stdout);
	for (int i = 1; i <= TICKS; i++) {
		uint64_t fired;
		while (read(tick, &fired, 8) != 8) {
			if (i % 2) {
				struct pollfd pf = {.fd = tick, .events = POLLIN};
				int r = poll(&pf, 1, 5000);
				CHECK(r == 1 || (r == -1 && errno == EINTR));
			} else {
				struct epoll_event te;
				int r = epoll_wait(tick_ep, &te, 1, 5000);
				CHECK(r == 1 || (r == -1 && errno == EINTR));
			}
		}
		printf("tick %d\n", i);
		fflush(stdout);
	}

	/* What the epoll set reports: all three, each once here. */
	struct epoll_event out[8];
	int n = epoll_wait(ep, out, 8, 1000);
	int seen7 = 0, seen8 = 0, seen9 = 0;
	for (int i = 0; i < n; i++) {
		seen7 |= out[i].data.u64 == 7;
		seen8 |= out[i].data.u64 == 8;
		seen9 |= out[i].data.u64 == 9;
	}
	printf("epoll: n=%d pipe=%d timerfd=%d eventfd=%d\n", n, seen7, seen8, seen9);
	n = epoll_wait(ep, out, 8, 0);
	int again9 = 0;
	for (int i = 0; i < n; i++)
		again9 |= out[i].data.u64 == 9;
	printf("eventfd edge reported once: %d\n", !again9);

	char buf[32] = {0};
	printf("pipe: %zd %s\n", read(p[0], buf, sizeof buf - 1), buf);
	uint64_t ticks;
	CHECK(read(tfd, &ticks, 8) == 8);
	printf("timerfd: expired_every_period=%d\n", ticks >= TICKS - 2);
	struct itimerspec cur;
	CHECK(timerfd_gettime(tfd, &cur) == 0);
	printf("timerfd: still periodic=%d\n", cur.it_interval.tv_nsec == 100000000);
	uint64_t count;
	CHECK(read(efd, &count, 8) == 8);
	printf("eventfd: %llu\n", (unsigned long long)count);

	/* The POSIX timer keeps firing. */
	int before = timer_hits;
	while (timer_hits < before + 3)
		pause();
	/* Signals of a timer whose previous one is still pending merge (a
	 * slow host), so only "several" is certain. */
	printf("posix timer: fired several=%d continues=1\n", before >= 3);
	CHECK(timer_gettime(timer, &cur) == 0);
	printf("posix timer: interval_ms=%ld\n", cur.it_interval.tv_nsec / 1000000);

	struct signalfd_siginfo si;
	ssize_t got = read(sfd, &si, sizeof si);
	printf("signalfd: %zd bytes signo_is_usr2=%d\n", got, si.ssi_signo == SIGUSR2);
	return 0;
}
