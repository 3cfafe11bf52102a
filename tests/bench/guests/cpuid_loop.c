/* Benchmark guest: cpuid_loop [N=1000000]
 *
 * Executes cpuid (leaf 7, subleaf 0: what IFUNC resolvers read) N times
 * and prints the cost per instruction, measured inside the guest with
 * CLOCK_MONOTONIC:
 *   cpuid iterations=N total_ns=T ns_per_op=X.Y
 * Natively and under `--cpu-features=host` cpuid runs on the CPU; under a
 * profile each one faults and the Sentry answers it. One untimed warm-up
 * runs first. Build: gcc -O2 -static. */
#include <cpuid.h>
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
	unsigned a, b, c, d;
	volatile unsigned sink;
	__cpuid_count(7, 0, a, b, c, d); /* warm-up */
	sink = b;
	long long t0 = mono_ns();
	for (long i = 0; i < n; i++) {
		__cpuid_count(7, 0, a, b, c, d);
		sink += b;
	}
	long long t1 = mono_ns();
	(void)sink;
	printf("cpuid iterations=%ld total_ns=%lld ns_per_op=%.1f\n", n, t1 - t0,
	       (double)(t1 - t0) / (double)n);
	return 0;
}
