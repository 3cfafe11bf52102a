/* nanosleep and clock_nanosleep interrupted by a handled signal: a relative
 * sleep fails with EINTR and writes the time left to `rem`; an absolute
 * (TIMER_ABSTIME) sleep fails with EINTR and never writes `rem`; an
 * uninterrupted sleep leaves `rem` alone; an unwritable `rem` makes the
 * interrupted call fail with EFAULT; the usual
 * `while (nanosleep(&req, &req))` loop sleeps the whole time in the end.
 *
 * A helper thread sends SIGUSR1 to the main thread 200 ms after each sleep
 * starts. The handler is installed with SA_RESTART, which a sleep ignores
 * (Linux never restarts one after a handler). Times are never printed,
 * only whether `rem` is plausible: shorter than the request by at least
 * 50 ms (the signal came at 200 ms) and more than 0.5 s (2 s asked). */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>

static volatile sig_atomic_t handled;
static atomic_int go;
static pthread_t main_thread;

static void on_usr1(int sig)
{
	(void)sig;
	handled++;
}

/* Waits for each `go`, then interrupts the main thread 200 ms later. */
static void *interrupter(void *arg)
{
	(void)arg;
	for (;;) {
		while (atomic_load(&go) == 0)
			usleep(1000);
		if (atomic_load(&go) < 0)
			return NULL;
		atomic_store(&go, 0);
		struct timespec d = { 0, 200 * 1000 * 1000 };
		while (nanosleep(&d, &d) != 0)
			;
		CHECK(pthread_kill(main_thread, SIGUSR1) == 0);
	}
}

static long long ns_of(const struct timespec *t)
{
	return (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static long long mono(void)
{
	struct timespec t;
	CHECK(clock_gettime(CLOCK_MONOTONIC, &t) == 0);
	return ns_of(&t);
}

static const struct timespec two_s = { 2, 0 };
static const struct timespec sentinel = { 12345, 6789 };

static int plausible(const struct timespec *rem)
{
	long long r = ns_of(rem);
	return rem->tv_nsec >= 0 && rem->tv_nsec < 1000000000L && r > 500000000LL &&
	       r < ns_of(&two_s) - 50000000LL;
}

static int untouched(const struct timespec *rem)
{
	return rem->tv_sec == sentinel.tv_sec && rem->tv_nsec == sentinel.tv_nsec;
}

/* Arms the interrupter and resets the handler count. */
static void arm(void)
{
	handled = 0;
	atomic_store(&go, 1);
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	main_thread = pthread_self();
	pthread_t th;
	CHECK(pthread_create(&th, NULL, interrupter, NULL) == 0);

	/* The raw syscall: glibc's nanosleep() is clock_nanosleep underneath. */
	struct timespec rem = sentinel;
	arm();
	errno = 0;
	long r = syscall(SYS_nanosleep, &two_s, &rem);
	printf("nanosleep: ret=%ld errno=%s handled=%d rem_plausible=%d\n", r, errname(errno),
	       (int)handled, plausible(&rem));

	arm();
	errno = 0;
	r = syscall(SYS_nanosleep, &two_s, NULL);
	printf("nanosleep_null_rem: ret=%ld errno=%s handled=%d\n", r, errname(errno), (int)handled);

	/* An unwritable rem: the interrupted call reports EFAULT instead. */
	arm();
	errno = 0;
	r = syscall(SYS_nanosleep, &two_s, (void *)8);
	printf("nanosleep_bad_rem: ret=%ld errno=%s handled=%d\n", r, errname(errno), (int)handled);

	static const clockid_t clocks[] = { CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_BOOTTIME };
	static const char *const names[] = { "monotonic", "realtime", "boottime" };
	for (int i = 0; i < 3; i++) {
		rem = sentinel;
		arm();
		int e = clock_nanosleep(clocks[i], 0, &two_s, &rem);
		printf("clock_nanosleep_%s: ret=%s handled=%d rem_plausible=%d\n", names[i], errname(e),
		       (int)handled, plausible(&rem));
	}

	/* Absolute: EINTR too, but rem is never written. */
	for (int i = 0; i < 2; i++) {
		struct timespec dl;
		CHECK(clock_gettime(clocks[i], &dl) == 0);
		dl.tv_sec += 2;
		rem = sentinel;
		arm();
		int e = clock_nanosleep(clocks[i], TIMER_ABSTIME, &dl, &rem);
		printf("clock_nanosleep_abs_%s: ret=%s handled=%d rem_untouched=%d\n", names[i],
		       errname(e), (int)handled, untouched(&rem));
	}

	/* Not interrupted: success, rem left alone. */
	rem = sentinel;
	struct timespec short_sleep = { 0, 10 * 1000 * 1000 };
	errno = 0;
	r = syscall(SYS_nanosleep, &short_sleep, &rem);
	printf("nanosleep_complete: ret=%ld errno=%s rem_untouched=%d\n", r, errname(errno),
	       untouched(&rem));

	/* The retry loop: interrupted once, it sleeps what is left and so
	 * the whole second in all. */
	struct timespec req = { 1, 0 };
	long long start = mono();
	int interruptions = 0;
	arm();
	while (syscall(SYS_nanosleep, &req, &req) != 0) {
		CHECK(errno == EINTR);
		interruptions++;
	}
	long long took = mono() - start;
	printf("loop: interruptions=%d total_ge_1s=%d under_1500ms=%d\n", interruptions,
	       took >= 1000000000LL, took < 1500000000LL);

	atomic_store(&go, -1);
	CHECK(pthread_join(th, NULL) == 0);
	return 0;
}
