/* clock_gettime for MONOTONIC/REALTIME/BOOTTIME/PROCESS_CPUTIME_ID/
 * THREAD_CPUTIME_ID, clock_getres, nanosleep and clock_nanosleep, and
 * gettimeofday vs CLOCK_REALTIME. Times are never printed, only relations:
 * monotonic never goes backwards over 1000 calls, a 20 ms sleep measures
 * at least 20 ms, realtime is after 2020, cpu time advances while spinning. */
#include "common.h"
#include <sys/time.h>
#include <time.h>

static long long ns(clockid_t c)
{
	struct timespec t;
	CHECK(clock_gettime(c, &t) == 0);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(void)
{
	long long prev = ns(CLOCK_MONOTONIC);
	int backwards = 0;
	for (int i = 0; i < 1000; i++) {
		long long now = ns(CLOCK_MONOTONIC);
		backwards |= now < prev;
		prev = now;
	}
	printf("monotonic_backwards=%d\n", backwards);

	long long before = ns(CLOCK_MONOTONIC);
	struct timespec req = { 0, 20 * 1000 * 1000 };
	CHECK(nanosleep(&req, NULL) == 0);
	long long slept = ns(CLOCK_MONOTONIC) - before;
	printf("nanosleep_20ms_elapsed_ge_20ms=%d under_5s=%d\n", slept >= 20000000LL, slept < 5000000000LL);

	before = ns(CLOCK_BOOTTIME);
	CHECK(clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL) == 0);
	printf("clock_nanosleep_boottime_ge_20ms=%d\n", ns(CLOCK_BOOTTIME) - before >= 20000000LL);

	/* Absolute sleep to a deadline 10 ms ahead. */
	struct timespec dl;
	CHECK(clock_gettime(CLOCK_MONOTONIC, &dl) == 0);
	dl.tv_nsec += 10 * 1000 * 1000;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	CHECK(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, NULL) == 0);
	printf("abs_deadline_reached=%d\n", ns(CLOCK_MONOTONIC) >= (long long)dl.tv_sec * 1000000000LL + dl.tv_nsec);

	/* Read MONOTONIC first: BOOTTIME includes suspend time, so it can only be later. */
	long long mono = ns(CLOCK_MONOTONIC);
	printf("boottime_ge_monotonic=%d\n", ns(CLOCK_BOOTTIME) >= mono);
	long long rt = ns(CLOCK_REALTIME);
	printf("realtime_after_2020=%d\n", rt / 1000000000LL > 1577836800LL);

	struct timeval tv;
	CHECK(gettimeofday(&tv, NULL) == 0);
	long long tod = (long long)tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL;
	long long diff = tod - ns(CLOCK_REALTIME);
	printf("gettimeofday_within_1s=%d\n", diff > -1000000000LL && diff < 1000000000LL);
	time_t t = time(NULL);
	printf("time_within_1s=%d\n", t - rt / 1000000000LL <= 1 && rt / 1000000000LL - t <= 1);

	/* CPU time advances while spinning for ~20 ms of wall time. */
	long long cpu0 = ns(CLOCK_PROCESS_CPUTIME_ID), th0 = ns(CLOCK_THREAD_CPUTIME_ID);
	long long w0 = ns(CLOCK_MONOTONIC);
	volatile unsigned long spin = 0;
	while (ns(CLOCK_MONOTONIC) - w0 < 20000000LL)
		spin++;
	printf("process_cputime_advanced=%d thread_cputime_advanced=%d\n",
	       ns(CLOCK_PROCESS_CPUTIME_ID) > cpu0, ns(CLOCK_THREAD_CPUTIME_ID) > th0);

	struct timespec res;
	CHECK(clock_getres(CLOCK_MONOTONIC, &res) == 0);
	printf("res_monotonic_sane=%d\n", res.tv_sec == 0 && res.tv_nsec > 0 && res.tv_nsec <= 1000000);
	EXPECT_ERR("bad_clock", clock_gettime((clockid_t)1234, &res));
	struct timespec bad = { 0, 1000000000L };
	EXPECT_ERR("nanosleep_bad_nsec", nanosleep(&bad, NULL));
	return 0;
}
