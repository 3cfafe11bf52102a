/* A signal that ends a blocking call must not cut short the next one. Each
 * round, a helper thread sends a handled signal that the main thread
 * blocks except inside a long ppoll, which it ends with EINTR; the main
 * thread then at once sleeps briefly, with the signal blocked again, and
 * that sleep must complete with `rem` untouched, as on Linux, where a
 * sleep ends early only for a signal that is pending and unblocked. */
#define _GNU_SOURCE
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <poll.h>
#include <time.h>

#define ROUNDS 300

static atomic_int sleeping;
static atomic_int quit;
static pthread_t main_thread;

static void on_usr1(int sig) { (void)sig; }

static void *interrupter(void *arg)
{
	(void)arg;
	while (!atomic_load(&quit)) {
		if (atomic_exchange(&sleeping, 0)) {
			usleep(200);
			CHECK(pthread_kill(main_thread, SIGUSR1) == 0);
		}
	}
	return NULL;
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	sigset_t usr1, during_poll;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	CHECK(sigprocmask(SIG_BLOCK, &usr1, &during_poll) == 0);
	main_thread = pthread_self();
	pthread_t th;
	CHECK(pthread_create(&th, NULL, interrupter, NULL) == 0);
	int eintr = 0, complete = 0, untouched = 0;
	for (int i = 0; i < ROUNDS; i++) {
		struct timespec long_wait = { 5, 0 };
		atomic_store(&sleeping, 1);
		if (ppoll(NULL, 0, &long_wait, &during_poll) == -1 && errno == EINTR)
			eintr++;
		struct timespec short_sleep = { 0, 20000 };
		struct timespec rem = { 12345, 6789 };
		if (syscall(SYS_nanosleep, &short_sleep, &rem) == 0)
			complete++;
		if (rem.tv_sec == 12345 && rem.tv_nsec == 6789)
			untouched++;
	}
	atomic_store(&quit, 1);
	CHECK(pthread_join(th, NULL) == 0);
	printf("rounds=%d eintr=%d complete=%d untouched=%d\n", ROUNDS, eintr, complete, untouched);
	return 0;
}
