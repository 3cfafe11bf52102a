/* Checkpoint workload for waits with a timeout in a register (not compared
 * with a native run, so like itimer_ckpt it prints raw times): prints
 *   waiting mono=NS
 * then waits 2 s for nothing in poll (`poll`), epoll_wait (`epoll`) or
 * rt_sigtimedwait (`sigtimedwait`), and prints
 *   done mono=NS ret=R
 * A checkpoint test freezes it in the wait and checks that, restored after
 * a pause, the wait ends 2 s of sandbox time after it began, not a whole
 * timeout after the restore. */
#include "common.h"
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <time.h>

static long long mono(void)
{
	struct timespec t;
	CHECK(clock_gettime(CLOCK_MONOTONIC, &t) == 0);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	int p[2];
	CHECK(pipe(p) == 0);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN};
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
	printf("waiting mono=%lld\n", mono());
	fflush(stdout);
	long r;
	if (strcmp(argv[1], "poll") == 0) {
		struct pollfd pf = {.fd = p[0], .events = POLLIN};
		r = poll(&pf, 1, 2000);
	} else if (strcmp(argv[1], "epoll") == 0) {
		r = epoll_wait(ep, &ev, 1, 2000);
	} else {
		struct timespec ts = {2, 0};
		r = sigtimedwait(&set, NULL, &ts);
		if (r < 0 && errno == EAGAIN)
			r = 0;
	}
	printf("done mono=%lld ret=%ld\n", mono(), r);
	fflush(stdout);
	return 0;
}
