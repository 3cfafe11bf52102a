/* Checkpoint workload for ITIMER_REAL (not compared with a native run, so
 * like mono_ticker it prints raw times): arms a 2 s ITIMER_REAL, prints
 *   armed mono=NS
 * then waits for SIGALRM, in pause() (`pause`) or in a busy loop of
 * application code (`spin`), and prints
 *   fired mono=NS hits=N
 * with CLOCK_MONOTONIC in nanoseconds, and exits. A checkpoint test freezes
 * it while the timer runs and checks that, restored after a pause, it fires
 * 2 s of sandbox time after it was armed. */
#include "common.h"
#include <signal.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t hits;

static void on_alrm(int sig)
{
	(void)sig;
	hits++;
}

static long long mono(void)
{
	struct timespec t;
	CHECK(clock_gettime(CLOCK_MONOTONIC, &t) == 0);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	int spin = argc > 1 && strcmp(argv[1], "spin") == 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alrm;
	CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
	struct itimerval v = { .it_interval = { 0, 0 }, .it_value = { 2, 0 } };
	long long armed = mono();
	CHECK(setitimer(ITIMER_REAL, &v, NULL) == 0);
	printf("armed mono=%lld\n", armed);
	fflush(stdout);
	volatile unsigned long n = 0;
	while (!hits) {
		if (spin)
			n++;
		else
			pause();
	}
	printf("fired mono=%lld hits=%d\n", mono(), (int)hits);
	fflush(stdout);
	return 0;
}
