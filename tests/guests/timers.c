/* POSIX timers of each notification kind and timerfd: SIGEV_SIGNAL with a
 * handler and siginfo, SIGEV_THREAD_ID to one thread, SIGEV_NONE read by
 * timer_gettime, overruns while the signal is blocked, timer_delete;
 * timerfd one-shot, periodic, absolute, gettime, and the errors. */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>

/* The thread of a SIGEV_THREAD_ID sigevent (named differently by glibc
 * and musl). */
#ifdef sigev_notify_thread_id
#define SET_TID(ev, tid) ((ev).sigev_notify_thread_id = (tid))
#else
#define SET_TID(ev, tid) ((ev)._sigev_un._tid = (tid))
#endif

static volatile sig_atomic_t fired;
static volatile int last_code, last_value, last_tid_ok;

static void on_timer(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	fired++;
	last_code = si->si_code;
	last_value = si->si_value.sival_int;
}

static pid_t target_tid;
static volatile sig_atomic_t thread_fired;
static void on_thread_timer(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	if (syscall(SYS_gettid) == target_tid)
		last_tid_ok = 1;
	thread_fired++;
}

static volatile int thread_ready, thread_done;
static void *sleeper(void *arg)
{
	(void)arg;
	target_tid = syscall(SYS_gettid);
	thread_ready = 1;
	while (!thread_fired)
		usleep(1000);
	thread_done = 1;
	return NULL;
}

static void ms(long n)
{
	struct timespec ts = {n / 1000, (n % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int main(void)
{
	struct sigaction sa = {.sa_sigaction = on_timer, .sa_flags = SA_SIGINFO};
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

	/* SIGEV_SIGNAL, periodic: three expiries, each a handler call with
	 * si_code SI_TIMER and our value. */
	struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
	sev.sigev_value.sival_int = 4242;
	timer_t t1;
	CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t1) == 0);
	struct itimerspec its = {.it_value = {0, 20000000}, .it_interval = {0, 20000000}};
	CHECK(timer_settime(t1, 0, &its, NULL) == 0);
	while (fired < 3)
		pause();
	struct itimerspec cur;
	CHECK(timer_gettime(t1, &cur) == 0);
	printf("signal timer: fired>=3 code_is_timer=%d value=%d interval_ms=%ld armed=%d\n",
	       last_code == SI_TIMER, last_value, cur.it_interval.tv_nsec / 1000000,
	       cur.it_value.tv_sec > 0 || cur.it_value.tv_nsec > 0);
	/* Disarm: the old setting comes back. */
	struct itimerspec zero = {0}, old;
	CHECK(timer_settime(t1, 0, &zero, &old) == 0);
	printf("old interval_ms=%ld\n", old.it_interval.tv_nsec / 1000000);
	CHECK(timer_gettime(t1, &cur) == 0);
	printf("disarmed: %d\n", cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);

	/* Overruns: blocked while it fires several times, one signal queued,
	 * the rest counted. */
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0);
	int before = fired;
	its.it_value.tv_nsec = 10000000;
	its.it_interval.tv_nsec = 10000000;
	CHECK(timer_settime(t1, 0, &its, NULL) == 0);
	ms(75);
	siginfo_t si;
	struct timespec nowait = {0, 0};
	int s = sigtimedwait(&block, &si, &nowait);
	int overrun_now = timer_getoverrun(t1);
	printf("overrun: one signal=%d code_is_timer=%d overrun>=3=%d getoverrun_same=%d not_handled=%d\n",
	       s == SIGUSR1, si.si_code == SI_TIMER, si.si_overrun >= 3,
	       overrun_now == si.si_overrun, fired == before);
	CHECK(timer_settime(t1, 0, &zero, NULL) == 0);
	/* Whatever the timer queued meanwhile goes (Linux drops the signal
	 * of a re-armed timer; cryo delivers it): consume it blocked. */
	while (sigtimedwait(&block, &si, &nowait) > 0)
		;
	CHECK(sigprocmask(SIG_UNBLOCK, &block, NULL) == 0);

	/* Absolute one-shot on CLOCK_REALTIME. */
	before = fired;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct itimerspec abs = {.it_value = now};
	abs.it_value.tv_nsec += 20000000;
	if (abs.it_value.tv_nsec >= 1000000000) {
		abs.it_value.tv_sec++;
		abs.it_value.tv_nsec -= 1000000000;
	}
	timer_t t2;
	CHECK(timer_create(CLOCK_REALTIME, &sev, &t2) == 0);
	CHECK(timer_settime(t2, TIMER_ABSTIME, &abs, NULL) == 0);
	while (fired == before)
		pause();
	printf("absolute realtime fired: %d\n", fired == before + 1);
	CHECK(timer_delete(t2) == 0);
	EXPECT_ERR("deleted gettime", timer_gettime(t2, &cur));
	CHECK(timer_delete(t1) == 0);

	/* SIGEV_NONE: nothing is sent; gettime counts down. */
	struct sigevent none = {.sigev_notify = SIGEV_NONE};
	timer_t t3;
	CHECK(timer_create(CLOCK_MONOTONIC, &none, &t3) == 0);
	its.it_value.tv_sec = 5;
	its.it_value.tv_nsec = 0;
	its.it_interval.tv_nsec = 0;
	CHECK(timer_settime(t3, 0, &its, NULL) == 0);
	ms(20);
	CHECK(timer_gettime(t3, &cur) == 0);
	printf("none: counting down=%d\n", cur.it_value.tv_sec == 4);
	CHECK(timer_delete(t3) == 0);

	/* SIGEV_THREAD_ID: to one chosen thread. */
	struct sigaction st = {.sa_sigaction = on_thread_timer, .sa_flags = SA_SIGINFO};
	sigemptyset(&st.sa_mask);
	CHECK(sigaction(SIGUSR2, &st, NULL) == 0);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, sleeper, NULL) == 0);
	while (!thread_ready)
		usleep(1000);
	struct sigevent tev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR2};
	SET_TID(tev, target_tid);
	timer_t t4;
	CHECK(timer_create(CLOCK_MONOTONIC, &tev, &t4) == 0);
	its.it_value.tv_sec = 0;
	its.it_value.tv_nsec = 10000000;
	CHECK(timer_settime(t4, 0, &its, NULL) == 0);
	pthread_join(th, NULL);
	printf("thread timer: fired_in_target=%d\n", last_tid_ok);
	CHECK(timer_delete(t4) == 0);

	/* A process CPU-time timer: fires once the process has run 30 ms. */
	before = fired;
	timer_t t5;
	CHECK(timer_create(CLOCK_PROCESS_CPUTIME_ID, &sev, &t5) == 0);
	its.it_value.tv_sec = 0;
	its.it_value.tv_nsec = 30000000;
	its.it_interval.tv_nsec = 0;
	CHECK(timer_settime(t5, 0, &its, NULL) == 0);
	CHECK(timer_gettime(t5, &cur) == 0);
	printf("cpu timer armed: %d\n", cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 30000000);
	volatile unsigned long spin = 0;
	struct timespec c0, c1;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
	while (fired == before)
		spin++;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	long used = (c1.tv_sec - c0.tv_sec) * 1000 + (c1.tv_nsec - c0.tv_nsec) / 1000000;
	printf("cpu timer fired after cpu>=25ms: %d code_is_timer=%d\n", used >= 25, last_code == SI_TIMER);
	CHECK(timer_gettime(t5, &cur) == 0);
	printf("cpu timer disarmed: %d\n", cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);
	CHECK(timer_delete(t5) == 0);
	clockid_t own;
	CHECK(clock_getcpuclockid(getpid(), &own) == 0);
	struct timespec via;
	printf("own cpu clock readable: %d\n", clock_gettime(own, &via) == 0 && (via.tv_sec > 0 || via.tv_nsec > 0));
	CHECK(pthread_getcpuclockid(pthread_self(), &own) == 0);
	printf("thread cpu clock readable: %d\n", clock_gettime(own, &via) == 0);

	/* Errors. */
	timer_t bad;
	EXPECT_ERR("bad clock", timer_create(12345, &sev, &bad));
	struct sigevent badsig = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = 99};
	EXPECT_ERR("bad signal", timer_create(CLOCK_MONOTONIC, &badsig, &bad));
	struct sigevent badtid = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR2};
	SET_TID(badtid, 999999);
	EXPECT_ERR("bad tid", timer_create(CLOCK_MONOTONIC, &badtid, &bad));
	EXPECT_ERR("bad id", syscall(SYS_timer_settime, 12345, 0, &its, NULL));
	EXPECT_ERR("bad id overrun", syscall(SYS_timer_getoverrun, 12345));

	/* timerfd: one-shot blocking read, periodic counts, absolute, gettime. */
	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	CHECK(tfd >= 0);
	its.it_value.tv_nsec = 20000000;
	its.it_interval.tv_nsec = 0;
	CHECK(timerfd_settime(tfd, 0, &its, NULL) == 0);
	uint64_t n;
	CHECK(read(tfd, &n, 8) == 8);
	printf("timerfd oneshot: %llu\n", (unsigned long long)n);
	its.it_value.tv_nsec = 10000000;
	its.it_interval.tv_nsec = 10000000;
	CHECK(timerfd_settime(tfd, 0, &its, NULL) == 0);
	ms(55);
	CHECK(read(tfd, &n, 8) == 8);
	/* At least the periods that passed (more if the host was slow). */
	printf("timerfd periodic: >=4=%d\n", n >= 4);
	CHECK(timerfd_gettime(tfd, &cur) == 0);
	printf("timerfd gettime: interval_ms=%ld armed=%d\n", cur.it_interval.tv_nsec / 1000000,
	       cur.it_value.tv_nsec > 0);
	CHECK(timerfd_settime(tfd, 0, &zero, &old) == 0);
	printf("timerfd old interval_ms=%ld\n", old.it_interval.tv_nsec / 1000000);
	int nb = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
	CHECK(nb >= 0);
	EXPECT_ERR("timerfd unarmed read", read(nb, &n, 8));
	clock_gettime(CLOCK_REALTIME, &now);
	abs.it_value = now;
	abs.it_value.tv_sec -= 1; /* in the past: expired at once */
	abs.it_interval.tv_sec = 0;
	abs.it_interval.tv_nsec = 0;
	CHECK(timerfd_settime(nb, TFD_TIMER_ABSTIME, &abs, NULL) == 0);
	printf("timerfd past absolute: %zd\n", read(nb, &n, 8));
	EXPECT_ERR("timerfd short read", read(nb, &n, 4));
	EXPECT_ERR("timerfd bad clock", timerfd_create(CLOCK_PROCESS_CPUTIME_ID, 0));
	EXPECT_ERR("timerfd bad flags", timerfd_create(CLOCK_MONOTONIC, 0x1234));
	EXPECT_ERR("timerfd settime not a timerfd", timerfd_settime(0, 0, &its, NULL));
	its.it_value.tv_nsec = 1000000000;
	EXPECT_ERR("timerfd bad timespec", timerfd_settime(tfd, 0, &its, NULL));
	return 0;
}
