/* epoll: level vs edge triggered, EPOLLONESHOT, over pipes, eventfd and
 * timerfd; the interest list's errors; an item goes with its file's last
 * descriptor; nested sets; an epoll fd in poll; EPOLLEXCLUSIVE between
 * threads. */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>

static int wait1(int ep, int timeout, uint64_t *data, uint32_t *events)
{
	struct epoll_event ev[4];
	int n = epoll_wait(ep, ev, 4, timeout);
	if (n > 0) {
		*data = ev[0].data.u64;
		*events = ev[0].events;
	}
	return n;
}

static void add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = {.events = events, .data.u64 = data};
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);
}

static void mod(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = {.events = events, .data.u64 = data};
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0);
}

static long long ms_since(struct timespec *a)
{
	struct timespec b;
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (b.tv_sec - a->tv_sec) * 1000LL + (b.tv_nsec - a->tv_nsec) / 1000000;
}

static int exclusive_ep[2];
static int exclusive_evfd;
static int woken;
static pthread_mutex_t woken_lock = PTHREAD_MUTEX_INITIALIZER;

static void *exclusive_waiter(void *arg)
{
	int ep = exclusive_ep[(intptr_t)arg];
	struct epoll_event ev;
	int n = epoll_wait(ep, &ev, 1, 300);
	if (n == 1) {
		pthread_mutex_lock(&woken_lock);
		woken++;
		pthread_mutex_unlock(&woken_lock);
	}
	return NULL;
}

int main(void)
{
	int p[2];
	uint64_t data = 0;
	uint32_t events = 0;
	char buf[64];

	CHECK(pipe(p) == 0);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0);
	add(ep, p[0], EPOLLIN, 1);

	/* Level-triggered: nothing, then reported on every wait. */
	printf("empty: %d\n", wait1(ep, 0, &data, &events));
	CHECK(write(p[1], "ab", 2) == 2);
	for (int i = 0; i < 2; i++) {
		int n = wait1(ep, 0, &data, &events);
		printf("level %d: n=%d data=%llu in=%d\n", i, n,
		       (unsigned long long)data, !!(events & EPOLLIN));
	}
	/* Edge-triggered: once per new write. */
	mod(ep, p[0], EPOLLIN | EPOLLET, 2);
	printf("edge after mod: %d\n", wait1(ep, 0, &data, &events));
	printf("edge again: %d\n", wait1(ep, 0, &data, &events));
	CHECK(write(p[1], "c", 1) == 1);
	printf("edge new data: %d data=%llu\n", wait1(ep, 0, &data, &events),
	       (unsigned long long)data);
	printf("edge drained? %d\n", wait1(ep, 0, &data, &events));
	/* One-shot: disabled after one report until MOD. */
	mod(ep, p[0], EPOLLIN | EPOLLONESHOT, 3);
	printf("oneshot: %d\n", wait1(ep, 0, &data, &events));
	CHECK(write(p[1], "d", 1) == 1);
	printf("oneshot disabled: %d\n", wait1(ep, 0, &data, &events));
	mod(ep, p[0], EPOLLIN, 4);
	printf("rearmed: %d data=%llu\n", wait1(ep, 0, &data, &events),
	       (unsigned long long)data);
	CHECK(read(p[0], buf, sizeof buf) == 4);

	/* A blocking wait woken by a write from another thread's time: the
	 * timeout is honoured when nothing comes. */
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int n = wait1(ep, 50, &data, &events);
	long long el = ms_since(&t0);
	printf("timeout: n=%d waited>=45ms=%d\n", n, el >= 45);

	/* Errors, as Linux gives them. */
	struct epoll_event ev = {.events = EPOLLIN};
	EXPECT_ERR("add twice", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
	EXPECT_ERR("mod absent", epoll_ctl(ep, EPOLL_CTL_MOD, p[1], &ev));
	EXPECT_ERR("del absent", epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL));
	EXPECT_ERR("bad op", epoll_ctl(ep, 99, p[0], &ev));
	EXPECT_ERR("self", epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev));
	EXPECT_ERR("bad fd", epoll_ctl(ep, EPOLL_CTL_ADD, 999, &ev));
	EXPECT_ERR("not epoll", epoll_ctl(p[0], EPOLL_CTL_ADD, p[1], &ev));
	EXPECT_ERR("efault", epoll_ctl(ep, EPOLL_CTL_ADD, p[1], (void *)8));
	int reg = open("/etc/passwd", O_RDONLY);
	CHECK(reg >= 0);
	EXPECT_ERR("regular file", epoll_ctl(ep, EPOLL_CTL_ADD, reg, &ev));
	struct epoll_event excl = {.events = EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT};
	EXPECT_ERR("exclusive+oneshot", epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &excl));
	struct epoll_event out[1];
	EXPECT_ERR("maxevents 0", epoll_wait(ep, out, 0, 0));
	EXPECT_ERR("wait on pipe", epoll_wait(p[0], out, 1, 0));
	EXPECT_ERR("create 0", epoll_create(0));
	EXPECT_ERR("create1 flags", epoll_create1(1));

	/* Nested sets, and a loop refused. */
	int outer = epoll_create1(0);
	CHECK(outer >= 0);
	add(outer, ep, EPOLLIN, 10);
	EXPECT_ERR("loop", epoll_ctl(ep, EPOLL_CTL_ADD, outer, &ev));
	printf("outer idle: %d\n", wait1(outer, 0, &data, &events));
	CHECK(write(p[1], "e", 1) == 1);
	printf("outer sees inner: %d data=%llu\n", wait1(outer, 0, &data, &events),
	       (unsigned long long)data);
	struct pollfd pf = {.fd = ep, .events = POLLIN};
	n = poll(&pf, 1, 0);
	printf("poll on epoll fd: %d revents_in=%d\n", n, !!(pf.revents & POLLIN));
	CHECK(read(p[0], buf, sizeof buf) == 1);

	/* How deep sets nest: built from the bottom and from the top. */
	int chain[8];
	for (int i = 0; i < 8; i++)
		CHECK((chain[i] = epoll_create1(0)) >= 0);
	int ok = 0;
	errno = 0;
	for (int i = 0; i < 7 && epoll_ctl(chain[i + 1], EPOLL_CTL_ADD, chain[i], &ev) == 0; i++)
		ok++;
	printf("nest bottom-up: %d then %s\n", ok, errname(errno));
	int top[8];
	for (int i = 0; i < 8; i++)
		CHECK((top[i] = epoll_create1(0)) >= 0);
	ok = 0;
	errno = 0;
	for (int i = 0; i < 7 && epoll_ctl(top[i], EPOLL_CTL_ADD, top[i + 1], &ev) == 0; i++)
		ok++;
	printf("nest top-down: %d then %s\n", ok, errname(errno));
	for (int i = 0; i < 8; i++) {
		close(chain[i]);
		close(top[i]);
	}

	/* eventfd: level, edge and HUP-free readiness. */
	int efd = eventfd(0, EFD_NONBLOCK);
	CHECK(efd >= 0);
	add(ep, efd, EPOLLIN | EPOLLET, 20);
	uint64_t one = 1;
	CHECK(write(efd, &one, 8) == 8);
	printf("eventfd edge: %d data=%llu\n", wait1(ep, 0, &data, &events),
	       (unsigned long long)data);
	printf("eventfd edge again: %d\n", wait1(ep, 0, &data, &events));
	CHECK(write(efd, &one, 8) == 8);
	printf("eventfd edge new: %d\n", wait1(ep, 0, &data, &events));
	uint64_t got;
	CHECK(read(efd, &got, 8) == 8);
	printf("eventfd count: %llu\n", (unsigned long long)got);

	/* timerfd in a set: the wait ends at the expiry. */
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	CHECK(tfd >= 0);
	add(ep, tfd, EPOLLIN, 30);
	struct itimerspec its = {.it_value = {0, 30 * 1000000}};
	CHECK(timerfd_settime(tfd, 0, &its, NULL) == 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = wait1(ep, 2000, &data, &events);
	el = ms_since(&t0);
	printf("timerfd: n=%d data=%llu after>=25ms=%d early=%d\n", n,
	       (unsigned long long)data, el >= 25, el < 1500);
	CHECK(read(tfd, &got, 8) == 8);
	printf("timerfd expirations: %llu\n", (unsigned long long)got);

	/* Closing the last descriptor of a file removes its item; a dup
	 * keeps it. */
	int d = dup(p[0]);
	CHECK(d >= 0);
	close(p[0]);
	CHECK(write(p[1], "f", 1) == 1);
	printf("dup keeps item: %d data=%llu\n", wait1(ep, 0, &data, &events),
	       (unsigned long long)data);
	EXPECT_ERR("del by closed fd", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
	close(d);
	printf("closed file gone: %d\n", wait1(ep, 0, &data, &events));

	/* HUP on a read end whose writer is closed. */
	int q[2];
	CHECK(pipe(q) == 0);
	add(ep, q[0], EPOLLIN, 40);
	close(q[1]);
	n = wait1(ep, 0, &data, &events);
	printf("hup: n=%d data=%llu hup=%d\n", n, (unsigned long long)data,
	       !!(events & EPOLLHUP));

	/* EPOLLEXCLUSIVE: two sets over one eventfd, one waiter each; a write
	 * wakes at least one. */
	exclusive_evfd = eventfd(0, EFD_NONBLOCK);
	for (int i = 0; i < 2; i++) {
		exclusive_ep[i] = epoll_create1(0);
		struct epoll_event xe = {.events = EPOLLIN | EPOLLEXCLUSIVE};
		CHECK(epoll_ctl(exclusive_ep[i], EPOLL_CTL_ADD, exclusive_evfd, &xe) == 0);
	}
	struct epoll_event xm = {.events = EPOLLIN};
	EXPECT_ERR("mod exclusive",
		   epoll_ctl(exclusive_ep[0], EPOLL_CTL_MOD, exclusive_evfd, &xm));
	pthread_t th[2];
	for (intptr_t i = 0; i < 2; i++)
		CHECK(pthread_create(&th[i], NULL, exclusive_waiter, (void *)i) == 0);
	usleep(50000);
	CHECK(write(exclusive_evfd, &one, 8) == 8);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	printf("exclusive woke at least one: %d\n", woken >= 1);
	return 0;
}
