/* Calls the four vDSO functions through libc, N times each (argv[1],
 * default 1000): under cryo none of them may trap (tests/tests/vdso.rs
 * counts them in --strace output). Prints only that the values made sense. */
#define _GNU_SOURCE
#include "common.h"
#include <sched.h>
#include <sys/time.h>
#include <time.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;
	int ok = 1;
	struct timespec prev = { 0, 0 };
	for (long i = 0; i < n; i++) {
		struct timespec t;
		ok &= clock_gettime(CLOCK_MONOTONIC, &t) == 0;
		ok &= t.tv_sec > prev.tv_sec || (t.tv_sec == prev.tv_sec && t.tv_nsec >= prev.tv_nsec);
		prev = t;
	}
	for (long i = 0; i < n; i++) {
		struct timeval tv;
		ok &= gettimeofday(&tv, NULL) == 0 && tv.tv_sec > 1577836800;
	}
	for (long i = 0; i < n; i++)
		ok &= time(NULL) > 1577836800;
	for (long i = 0; i < n; i++)
		ok &= sched_getcpu() >= 0;
	printf("calls=%ld ok=%d\n", n, ok);
	return ok ? 0 : 1;
}
