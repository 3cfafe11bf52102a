/* Benchmark guest: clock_loop [N=1000000]
 *
 * Makes N clock_gettime(CLOCK_MONOTONIC) calls through libc, which uses the
 * vDSO when the system offers one (Linux, runsc, cryo: no trap) and the
 * system call otherwise, and prints the cost per call, measured with the
 * same clock:
 *   clock_gettime iterations=N total_ns=T ns_per_op=X.Y
 * One untimed warm-up call runs first. Build: gcc -O2 -static. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long mono_ns(void)
{
	struct timespec t;
	if (clock_gettime(CLOCK_MONOTONIC, &t) != 0) {
		perror("clock_gettime");
		exit(1);
	}
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	if (n <= 0) {
		fprintf(stderr, "usage: %s [iterations>0]\n", argv[0]);
		return 2;
	}
	volatile long long sink = mono_ns(); /* warm-up */
	long long t0 = mono_ns();
	for (long i = 0; i < n; i++)
		sink += mono_ns();
	long long t1 = mono_ns();
	(void)sink;
	printf("clock_gettime iterations=%ld total_ns=%lld ns_per_op=%.1f\n", n, t1 - t0,
	       (double)(t1 - t0) / (double)n);
	return 0;
}
