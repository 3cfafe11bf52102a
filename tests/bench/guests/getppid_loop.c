/* Benchmark guest: getppid_loop [N=1000000]
 *
 * Makes N getppid system calls through syscall(SYS_getppid) (so libc can
 * neither cache nor inline the result) and prints the cost per call,
 * measured inside the guest with CLOCK_MONOTONIC:
 *   getppid iterations=N total_ns=T ns_per_op=X.Y
 * One untimed warm-up call runs first. Build: gcc -O2 -static. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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
	volatile long sink = syscall(SYS_getppid); /* warm-up */
	long long t0 = mono_ns();
	for (long i = 0; i < n; i++)
		sink += syscall(SYS_getppid);
	long long t1 = mono_ns();
	(void)sink;
	printf("getppid iterations=%ld total_ns=%lld ns_per_op=%.1f\n", n, t1 - t0,
	       (double)(t1 - t0) / (double)n);
	return 0;
}
