/* Checkpoint workload for absolute sleeps (not compared with a native
 * run): abs_sleep monotonic|realtime SECONDS reads the clock, prints
 * "sleeping", sleeps with clock_nanosleep(TIMER_ABSTIME) until the clock
 * reads SECONDS later (again after EINTR), then prints whether the clock
 * has reached the deadline. A checkpoint test freezes it mid-sleep and
 * checks that the restored sleep still ends at that deadline. */
#include "common.h"
#include <time.h>

int main(int argc, char **argv)
{
	CHECK(argc == 3);
	clockid_t clock = strcmp(argv[1], "realtime") == 0 ? CLOCK_REALTIME : CLOCK_MONOTONIC;
	struct timespec deadline;
	CHECK(clock_gettime(clock, &deadline) == 0);
	deadline.tv_sec += atol(argv[2]);
	printf("sleeping\n");
	fflush(stdout);
	int e;
	while ((e = clock_nanosleep(clock, TIMER_ABSTIME, &deadline, NULL)) == EINTR)
		;
	CHECK(e == 0);
	struct timespec now;
	CHECK(clock_gettime(clock, &now) == 0);
	printf("reached=%d\n", now.tv_sec > deadline.tv_sec ||
				       (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec));
	return 0;
}
