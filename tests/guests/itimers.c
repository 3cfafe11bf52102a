/* Interval timers: alarm+pause with a handler, a periodic ITIMER_REAL
 * (20 ms x5), getitimer's remaining time and setitimer's old value within
 * windows, EINVAL for a bad tv_usec or timer, alarm(0) cancelling and
 * returning the rounded remaining seconds, a nanosleep cut short (EINTR) by
 * SIGALRM, ITIMER_VIRTUAL and ITIMER_PROF firing during busy loops, and a
 * last SIGALRM with its default action killing the program (status 128+14,
 * checked by the harness). Times are printed only as booleans for windows. */
#include "common.h"
#include <signal.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t alrm, vtalrm, prof;

static void on_alrm(int sig)
{
	(void)sig;
	alrm++;
}

static void on_vtalrm(int sig)
{
	(void)sig;
	vtalrm++;
}

static void on_prof(int sig)
{
	(void)sig;
	prof++;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long tv_us(struct timeval tv)
{
	return (long long)tv.tv_sec * 1000000 + tv.tv_usec;
}

static int set_real(long sec, long usec, long isec, long iusec, struct itimerval *old)
{
	struct itimerval v = {
		.it_interval = { .tv_sec = isec, .tv_usec = iusec },
		.it_value = { .tv_sec = sec, .tv_usec = usec },
	};
	return setitimer(ITIMER_REAL, &v, old);
}

static void handle(int sig, void (*fn)(int))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}

int main(void)
{
	handle(SIGALRM, on_alrm);
	handle(SIGVTALRM, on_vtalrm);
	handle(SIGPROF, on_prof);

	/* alarm + pause: the handler runs, pause returns EINTR. */
	long long t0 = now_ms();
	unsigned left = alarm(1);
	int r = pause();
	int e = errno;
	long long took = now_ms() - t0;
	printf("alarm: prev=%u pause=%d %s hits=%d window=%d\n", left, r, errname(e), (int)alrm,
	       took >= 900 && took < 3000);

	/* A periodic ITIMER_REAL: 20 ms, five signals. */
	alrm = 0;
	t0 = now_ms();
	set_real(0, 20000, 0, 20000, NULL);
	while (alrm < 5)
		pause();
	took = now_ms() - t0;
	struct itimerval old;
	set_real(0, 0, 0, 0, &old);
	printf("periodic: hits=%d window=%d interval_us=%lld\n", (int)alrm, took >= 90 && took < 2000,
	       tv_us(old.it_interval));

	/* getitimer and setitimer's old value. */
	struct itimerval cur;
	set_real(0, 500000, 0, 0, NULL);
	getitimer(ITIMER_REAL, &cur);
	long long rem = tv_us(cur.it_value);
	printf("getitimer: in_window=%d interval_us=%lld\n", rem > 300000 && rem <= 500000,
	       tv_us(cur.it_interval));
	set_real(0, 0, 0, 0, &old);
	rem = tv_us(old.it_value);
	getitimer(ITIMER_REAL, &cur);
	printf("old value: in_window=%d now_disarmed=%d\n", rem > 300000 && rem <= 500000,
	       tv_us(cur.it_value) == 0);

	/* What Linux refuses. */
	errno = 0;
	r = set_real(0, 1000000, 0, 0, NULL);
	printf("tv_usec 1000000: %d %s\n", r, errname(errno));
	errno = 0;
	r = set_real(0, 0, 0, -1, NULL);
	printf("interval tv_usec -1: %d %s\n", r, errname(errno));
	errno = 0;
	r = getitimer(7, &cur);
	printf("getitimer(7): %d %s\n", r, errname(errno));

	/* alarm(0) cancels and returns the remaining seconds, rounded. */
	alarm(5);
	printf("alarm(0) after alarm(5): %u\n", alarm(0));
	set_real(2, 600000, 0, 0, NULL);
	printf("alarm(0) after 2.6 s: %u\n", alarm(0));
	set_real(0, 300000, 0, 0, NULL);
	printf("alarm(0) after 0.3 s: %u\n", alarm(0));
	printf("alarm(0) with none: %u\n", alarm(0));
	getitimer(ITIMER_REAL, &cur);
	printf("cancelled: %d\n", tv_us(cur.it_value) == 0);

	/* SIGALRM with a handler cuts a nanosleep short. */
	alrm = 0;
	set_real(0, 50000, 0, 0, NULL);
	struct timespec req = { .tv_sec = 2, .tv_nsec = 0 }, left_ts = { 0, 0 };
	r = nanosleep(&req, &left_ts);
	e = errno;
	long long left_ms = (long long)left_ts.tv_sec * 1000 + left_ts.tv_nsec / 1000000;
	printf("nanosleep: %d %s hits=%d rem_window=%d\n", r, errname(e), (int)alrm,
	       left_ms > 1000 && left_ms < 2000);

	/* ITIMER_VIRTUAL counts time in the program: fires during a busy loop. */
	struct itimerval v = { .it_interval = { 0, 0 }, .it_value = { 0, 50000 } };
	setitimer(ITIMER_VIRTUAL, &v, NULL);
	t0 = now_ms();
	volatile unsigned long spin = 0;
	while (!vtalrm && now_ms() - t0 < 10000)
		spin++;
	getitimer(ITIMER_VIRTUAL, &cur);
	printf("virtual: hits=%d disarmed=%d\n", (int)vtalrm, tv_us(cur.it_value) == 0);

	/* ITIMER_PROF, periodic: three signals during a busy loop. */
	struct itimerval p = { .it_interval = { 0, 10000 }, .it_value = { 0, 10000 } };
	setitimer(ITIMER_PROF, &p, NULL);
	t0 = now_ms();
	while (prof < 3 && now_ms() - t0 < 10000)
		spin++;
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_PROF, &off, &old);
	printf("prof: hits>=3 %d interval_us=%lld\n", prof >= 3, tv_us(old.it_interval));

	/* The default action of SIGALRM ends the program. */
	signal(SIGALRM, SIG_DFL);
	printf("default SIGALRM next\n");
	fflush(stdout);
	set_real(0, 50000, 0, 0, NULL);
	for (;;)
		pause();
	return 0;
}
