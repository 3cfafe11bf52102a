/* prctl (names, death signal, dumpable, no_new_privs, subreaper, unknown
 * options), the scheduler calls over the sandbox's CPUs, getpriority and
 * setpriority, and the CPU-time views (getrusage, times, the CPU clocks)
 * that count what ran, never a sleep, compared with Linux. Times are
 * never printed, only whether they are plausible. */
#define _GNU_SOURCE
#include "common.h"
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/times.h>
#include <time.h>

static long long ns(clockid_t c)
{
	struct timespec t;
	CHECK(clock_gettime(c, &t) == 0);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long tv_ns(struct timeval tv)
{
	return (long long)tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL;
}

/* Burns about `ms` of CPU time in user space. */
static volatile unsigned long sink;
static void burn(int ms)
{
	long long end = ns(CLOCK_THREAD_CPUTIME_ID) + ms * 1000000LL;
	while (ns(CLOCK_THREAD_CPUTIME_ID) < end)
		for (int i = 0; i < 100000; i++)
			sink += i;
}

static void sleep_ms(int ms)
{
	struct timespec d = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&d, &d) != 0)
		;
}

static const char *read_comm(const char *path)
{
	static char buf[64];
	FILE *f = fopen(path, "r");
	if (!f)
		return "unreadable";
	if (!fgets(buf, sizeof buf, f))
		buf[0] = 0;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	return buf;
}

static const char *comm_file(void)
{
	return read_comm("/proc/self/comm");
}

/* /proc/self/task/<tid>/comm of the calling thread. */
static const char *task_comm(void)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/task/%ld/comm", (long)syscall(SYS_gettid));
	return read_comm(path);
}

static void *thread_main(void *arg)
{
	(void)arg;
	char name[16];
	CHECK(prctl(PR_GET_NAME, name) == 0);
	printf("thread inherits name: %s\n", name);
	CHECK(prctl(PR_SET_NAME, "worker") == 0);
	CHECK(prctl(PR_GET_NAME, name) == 0);
	printf("thread renamed: %s, its task comm: %s, /proc/self/comm: %s\n", name, task_comm(),
	       comm_file());
	/* A sleeping thread uses (almost) no CPU time. */
	long long t0 = ns(CLOCK_THREAD_CPUTIME_ID);
	sleep_ms(300);
	printf("thread clock over a 300 ms sleep < 50 ms: %s\n",
	       ns(CLOCK_THREAD_CPUTIME_ID) - t0 < 50000000LL ? "yes" : "no");
	burn(150);
	return NULL;
}

int main(void)
{
	char name[16];
	/* Names. */
	CHECK(prctl(PR_GET_NAME, name) == 0);
	printf("name: %s, /proc/self/comm: %s\n", name, comm_file());
	CHECK(prctl(PR_SET_NAME, "a-name-longer-than-fifteen") == 0);
	CHECK(prctl(PR_GET_NAME, name) == 0);
	printf("long name cut: %s, /proc/self/comm: %s\n", name, comm_file());
	CHECK(prctl(PR_SET_NAME, "main") == 0);
	printf("PR_SET_NAME bad pointer: %s\n", prctl(PR_SET_NAME, (char *)8) == 0 ? "OK" : errname(errno));
	pthread_t th;
	CHECK(pthread_create(&th, NULL, thread_main, NULL) == 0);
	CHECK(pthread_join(th, NULL) == 0);
	CHECK(prctl(PR_GET_NAME, name) == 0);
	printf("main keeps its name: %s, its task comm: %s\n", name, task_comm());

	/* The death signal, dumpable, no_new_privs, subreaper. */
	int v = -1;
	CHECK(prctl(PR_GET_PDEATHSIG, &v) == 0);
	printf("pdeathsig: %d\n", v);
	CHECK(prctl(PR_SET_PDEATHSIG, SIGTERM) == 0);
	CHECK(prctl(PR_GET_PDEATHSIG, &v) == 0);
	printf("pdeathsig set: %d\n", v);
	printf("pdeathsig 65: %s\n", prctl(PR_SET_PDEATHSIG, 65) == 0 ? "OK" : errname(errno));
	printf("dumpable: %d\n", prctl(PR_GET_DUMPABLE));
	CHECK(prctl(PR_SET_DUMPABLE, 0) == 0);
	printf("dumpable cleared: %d\n", prctl(PR_GET_DUMPABLE));
	printf("dumpable 2: %s\n", prctl(PR_SET_DUMPABLE, 2) == 0 ? "OK" : errname(errno));
	CHECK(prctl(PR_SET_DUMPABLE, 1) == 0);
	printf("no_new_privs: %d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	printf("no_new_privs bad args: %s\n",
	       prctl(PR_SET_NO_NEW_PRIVS, 1, 1, 0, 0) == 0 ? "OK" : errname(errno));
	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	printf("no_new_privs set: %d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	CHECK(prctl(PR_GET_CHILD_SUBREAPER, &v) == 0);
	printf("subreaper: %d\n", v);
	CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
	CHECK(prctl(PR_GET_CHILD_SUBREAPER, &v) == 0);
	printf("subreaper set: %d\n", v);
	printf("unknown option: %s\n", prctl(0x7fff0000, 0, 0, 0, 0) == 0 ? "OK" : errname(errno));

	/* Scheduling over the sandbox's CPUs. */
	cpu_set_t set;
	CPU_ZERO(&set);
	CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
	printf("affinity has a CPU: %s, CPU 0 in it: %s\n", CPU_COUNT(&set) >= 1 ? "yes" : "no",
	       CPU_ISSET(0, &set) ? "yes" : "no");
	long n = syscall(SYS_sched_getaffinity, 0, sizeof set, &set);
	printf("raw getaffinity is whole longs: %s\n", n > 0 && n % 8 == 0 ? "yes" : "no");
	printf("getaffinity len 1: %s\n",
	       syscall(SYS_sched_getaffinity, 0, 1, &set) == 0 ? "OK" : errname(errno));
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	CHECK(sched_setaffinity(0, sizeof set, &set) == 0);
	CPU_ZERO(&set);
	CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
	printf("after setting CPU 0: count %d, CPU 0 %s\n", CPU_COUNT(&set), CPU_ISSET(0, &set) ? "yes" : "no");
	CPU_ZERO(&set);
	printf("empty mask: %s\n", sched_setaffinity(0, sizeof set, &set) == 0 ? "OK" : errname(errno));
	printf("affinity of no such pid: %s\n",
	       sched_getaffinity(0x3ffffff0, sizeof set, &set) == 0 ? "OK" : errname(errno));
	printf("scheduler: %s\n", sched_getscheduler(0) == SCHED_OTHER ? "SCHED_OTHER" : "other");
	struct sched_param sp = { .sched_priority = 7 };
	CHECK(sched_getparam(0, &sp) == 0);
	printf("param: %d\n", sp.sched_priority);
	printf("scheduler of no such pid: %s\n", sched_getscheduler(0x3ffffff0) < 0 ? errname(errno) : "OK");
	printf("priority range FIFO %d..%d, OTHER %d..%d, bad: %s\n",
	       sched_get_priority_min(SCHED_FIFO), sched_get_priority_max(SCHED_FIFO),
	       sched_get_priority_min(SCHED_OTHER), sched_get_priority_max(SCHED_OTHER),
	       sched_get_priority_max(77) < 0 ? errname(errno) : "OK");

	/* Priorities (the starting nice value is the caller's: not shown). */
	CHECK(setpriority(PRIO_PROCESS, 0, 10) == 0);
	errno = 0;
	printf("nice after 10: %d\n", getpriority(PRIO_PROCESS, 0));
	CHECK(setpriority(PRIO_PROCESS, getpid(), 100) == 0);
	printf("nice after 100: %d\n", getpriority(PRIO_PROCESS, 0));
	printf("lower to -3 as root: %s\n", setpriority(PRIO_PROCESS, 0, -3) == 0 ? "OK" : errname(errno));
	/* PRIO_USER takes the best of every process of the user: natively
	 * the host's too, so only whether it answers is shown. */
	errno = 0;
	int by_user = getpriority(PRIO_USER, 0);
	printf("nice now: %d, by group: %d, by user answers: %s\n", getpriority(PRIO_PROCESS, 0),
	       getpriority(PRIO_PGRP, 0), by_user >= -20 && by_user <= -3 && errno == 0 ? "yes" : "no");
	errno = 0;
	printf("bad which: %s\n", getpriority(9, 0) == -1 && errno ? errname(errno) : "OK");
	errno = 0;
	printf("no such pid: %s\n", getpriority(PRIO_PROCESS, 0x3ffffff0) == -1 && errno ? errname(errno) : "OK");

	/* CPU time: what ran, not sleeps. */
	struct rusage r0, r1;
	CHECK(getrusage(RUSAGE_SELF, &r0) == 0);
	long long p0 = ns(CLOCK_PROCESS_CPUTIME_ID);
	sleep_ms(300);
	CHECK(getrusage(RUSAGE_SELF, &r1) == 0);
	long long slept = tv_ns(r1.ru_utime) + tv_ns(r1.ru_stime) - tv_ns(r0.ru_utime) - tv_ns(r0.ru_stime);
	printf("rusage over a 300 ms sleep < 50 ms: %s\n", slept < 50000000LL ? "yes" : "no");
	printf("process clock over it < 50 ms: %s\n",
	       ns(CLOCK_PROCESS_CPUTIME_ID) - p0 < 50000000LL ? "yes" : "no");
	burn(200);
	CHECK(getrusage(RUSAGE_SELF, &r1) == 0);
	printf("user time after 200 ms of work >= 150 ms: %s\n",
	       tv_ns(r1.ru_utime) - tv_ns(r0.ru_utime) >= 150000000LL ? "yes" : "no");
	printf("process clock counts the threads (>= 300 ms): %s\n",
	       ns(CLOCK_PROCESS_CPUTIME_ID) >= 300000000LL ? "yes" : "no");
	struct rusage rt, rc;
	CHECK(getrusage(RUSAGE_THREAD, &rt) == 0);
	printf("thread's user time <= process's: %s\n",
	       tv_ns(rt.ru_utime) <= tv_ns(r1.ru_utime) ? "yes" : "no");
	CHECK(getrusage(RUSAGE_CHILDREN, &rc) == 0);
	printf("children's time: %lld\n", tv_ns(rc.ru_utime) + tv_ns(rc.ru_stime));
	printf("maxrss > 0: %s\n", r1.ru_maxrss > 0 ? "yes" : "no");
	printf("getrusage bad who: %s\n", getrusage(5, &rc) == 0 ? "OK" : errname(errno));
	printf("getrusage bad pointer: %s\n", getrusage(RUSAGE_SELF, (void *)8) == 0 ? "OK" : errname(errno));
	struct tms tm;
	clock_t up = times(&tm);
	long hz = sysconf(_SC_CLK_TCK);
	printf("times: ticks > 0 %s, hz %ld, utime >= 30 ticks %s, children 0 %s\n",
	       up > 0 ? "yes" : "no", hz, tm.tms_utime >= 30 ? "yes" : "no",
	       tm.tms_cutime == 0 && tm.tms_cstime == 0 ? "yes" : "no");
	printf("times(NULL) > 0: %s\n", times(NULL) > 0 ? "yes" : "no");
	return 0;
}
