/* The legacy vsyscall page (0xffffffffff600000): gettimeofday, time and
 * getcpu called there answer as the syscalls do. Natively the host kernel
 * emulates them; under cryo they must reach the Sentry on every platform
 * (the test also checks --strace shows them), never the host kernel:
 * getcpu names a CPU of the sandbox, not the host's. */
#define _GNU_SOURCE
#include "common.h"
#include <sched.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <time.h>

typedef long (*gettimeofday_fn)(struct timeval *, void *);
typedef long (*time_fn)(long *);
typedef long (*getcpu_fn)(unsigned *, unsigned *, void *);

int main(void)
{
	struct timeval tv = { 0, 0 }, ref;
	CHECK(gettimeofday(&ref, NULL) == 0);
	long r = ((gettimeofday_fn)0xffffffffff600000UL)(&tv, NULL);
	long skew = (long)(tv.tv_sec - ref.tv_sec);
	printf("vsyscall_gettimeofday: ret=%ld close_to_syscall=%d usec_valid=%d\n", r,
	       skew >= 0 && skew < 5, tv.tv_usec >= 0 && tv.tv_usec < 1000000);

	long t_out = 0;
	long t = ((time_fn)0xffffffffff600400UL)(&t_out);
	printf("vsyscall_time: same_as_out=%d close_to_time=%d\n", t == t_out,
	       t - (long)time(NULL) <= 0 && (long)time(NULL) - t < 5);

	unsigned cpu = 12345, node = 12345;
	r = ((getcpu_fn)0xffffffffff600800UL)(&cpu, &node, NULL);
	cpu_set_t set;
	CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
	printf("vsyscall_getcpu: ret=%ld cpu_allowed=%d node=%u\n", r, CPU_ISSET(cpu, &set), node);

	/* Pinned to the first allowed CPU, getcpu says so. */
	int first = -1;
	for (int i = 0; i < CPU_SETSIZE && first < 0; i++)
		if (CPU_ISSET(i, &set))
			first = i;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(first, &one);
	CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
	unsigned c2 = 12345;
	CHECK(syscall(SYS_getcpu, &c2, NULL, NULL) == 0);
	printf("getcpu_pinned: on_first=%d\n", (int)c2 == first);
	EXPECT_ERR("getcpu_bad_ptr", syscall(SYS_getcpu, (void *)8, NULL, NULL));
	return 0;
}
