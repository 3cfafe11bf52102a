/* Checkpoint workload for the clocks (not compared with a native run, so
 * unlike the other guests it prints raw times): every 100 ms prints
 *   n=N mono=NS boot=NS
 * with CLOCK_MONOTONIC and CLOCK_BOOTTIME in nanoseconds. A checkpoint test
 * restores it after a pause and checks that neither clock jumped forward
 * by the time the sandbox spent frozen, nor went back. */
#include "common.h"
#include <time.h>

static long long ns(clockid_t c)
{
	struct timespec t;
	CHECK(clock_gettime(c, &t) == 0);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(void)
{
	for (long n = 0;; n++) {
		long long mono = ns(CLOCK_MONOTONIC);
		printf("n=%ld mono=%lld boot=%lld\n", n, mono, ns(CLOCK_BOOTTIME));
		fflush(stdout);
		struct timespec req = { 0, 100 * 1000 * 1000 };
		while (nanosleep(&req, &req) != 0 && errno == EINTR)
			;
	}
}
