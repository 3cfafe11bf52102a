/* Waiting for signals: signalfd (reading pending signals of its mask,
 * consuming them), rt_sigtimedwait (timeout, EAGAIN, siginfo),
 * sigqueue / rt_sigqueueinfo values, rt_sigsuspend (the handler runs with
 * the temporary mask, the old one comes back), and eventfd. */
#define _GNU_SOURCE
#include "common.h"

#include <signal.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>

static volatile sig_atomic_t handled, usr2_blocked_in_handler;

static void on_usr2(int s)
{
	(void)s;
	sigset_t m;
	sigprocmask(SIG_BLOCK, NULL, &m);
	usr2_blocked_in_handler = sigismember(&m, SIGUSR2);
	handled++;
}

int main(void)
{
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGRTMIN);
	CHECK(sigprocmask(SIG_BLOCK, &mask, NULL) == 0);

	/* signalfd: pending signals of its mask, lowest first. */
	int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	CHECK(sfd >= 0);
	struct signalfd_siginfo ssi[4];
	EXPECT_ERR("signalfd empty", read(sfd, ssi, sizeof ssi));
	union sigval v = {.sival_int = 77};
	CHECK(sigqueue(getpid(), SIGRTMIN, v) == 0);
	CHECK(sigqueue(getpid(), SIGRTMIN, v) == 0);
	raise(SIGUSR1);
	ssize_t n = read(sfd, ssi, sizeof ssi);
	printf("signalfd read: %zd records\n", n / (ssize_t)sizeof ssi[0]);
	for (int i = 0; i < n / (ssize_t)sizeof ssi[0]; i++)
		printf("  signo=%s code=%d int=%d pid_ok=%d\n",
		       ssi[i].ssi_signo == SIGUSR1 ? "SIGUSR1" : "SIGRTMIN",
		       ssi[i].ssi_code, ssi[i].ssi_int, ssi[i].ssi_pid == (uint32_t)getpid());
	sigset_t pend;
	sigpending(&pend);
	printf("consumed: usr1 pending=%d\n", sigismember(&pend, SIGUSR1));
	EXPECT_ERR("signalfd small buffer", read(sfd, ssi, 10));
	/* A new mask through the same fd. */
	sigset_t only_rt;
	sigemptyset(&only_rt);
	sigaddset(&only_rt, SIGRTMIN);
	printf("signalfd remask same fd: %d\n", signalfd(sfd, &only_rt, 0) == sfd);
	raise(SIGUSR1);
	EXPECT_ERR("usr1 not in new mask", read(sfd, ssi, sizeof ssi));
	EXPECT_ERR("signalfd on non-signalfd", signalfd(0, &mask, 0));
	EXPECT_ERR("signalfd bad flags", signalfd(-1, &mask, 0x1234));

	/* rt_sigtimedwait: takes the pending SIGUSR1; then times out. */
	siginfo_t si;
	struct timespec ts = {0, 0};
	int s = sigtimedwait(&mask, &si, &ts);
	printf("sigtimedwait: %s code=%d\n", s == SIGUSR1 ? "SIGUSR1" : "?", si.si_code);
	ts.tv_nsec = 30000000;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	errno = 0;
	s = sigtimedwait(&mask, &si, &ts);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long el = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	printf("sigtimedwait timeout: %d errno=%s waited>=25ms=%d\n", s, errname(errno), el >= 25);
	ts.tv_nsec = -5;
	EXPECT_ERR("sigtimedwait bad timespec", sigtimedwait(&mask, &si, &ts));

	/* rt_sigqueueinfo with our own si_code and value. */
	siginfo_t q = {0};
	q.si_code = SI_QUEUE;
	q.si_pid = getpid();
	q.si_uid = getuid();
	q.si_value.sival_int = 31337;
	CHECK(syscall(SYS_rt_sigqueueinfo, getpid(), SIGRTMIN, &q) == 0);
	s = sigwaitinfo(&mask, &si);
	printf("sigqueueinfo: rt=%d code_is_queue=%d value=%d\n", s == SIGRTMIN,
	       si.si_code == SI_QUEUE, si.si_value.sival_int);
	EXPECT_ERR("sigqueueinfo bad signal", syscall(SYS_rt_sigqueueinfo, getpid(), 0, &q));
	EXPECT_ERR("sigqueueinfo no such process", syscall(SYS_rt_sigqueueinfo, 999999, SIGRTMIN, &q));

	/* rt_sigsuspend: SIGUSR2 blocked, pending; sigsuspend with a mask
	 * that lets it in runs the handler (which sees the temporary mask
	 * plus SIGUSR2 itself), returns EINTR, and the old mask is back. */
	struct sigaction sa = {.sa_handler = on_usr2};
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
	sigset_t b2, wait_mask, after;
	sigemptyset(&b2);
	sigaddset(&b2, SIGUSR2);
	CHECK(sigprocmask(SIG_BLOCK, &b2, NULL) == 0);
	raise(SIGUSR2);
	printf("before sigsuspend: handled=%d\n", (int)handled);
	sigemptyset(&wait_mask);
	errno = 0;
	int r = sigsuspend(&wait_mask);
	CHECK(sigprocmask(SIG_BLOCK, NULL, &after) == 0);
	printf("sigsuspend: r=%d errno=%s handled=%d usr2_blocked_in_handler=%d usr2_blocked_after=%d usr1_blocked_after=%d\n",
	       r, errname(errno), (int)handled, (int)usr2_blocked_in_handler,
	       sigismember(&after, SIGUSR2), sigismember(&after, SIGUSR1));

	/* eventfd: counter and semaphore. */
	int efd = eventfd(5, EFD_NONBLOCK);
	uint64_t x;
	CHECK(read(efd, &x, 8) == 8);
	printf("eventfd: %llu\n", (unsigned long long)x);
	EXPECT_ERR("eventfd empty", read(efd, &x, 8));
	x = UINT64_MAX;
	EXPECT_ERR("eventfd max", write(efd, &x, 8));
	int sem = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
	CHECK(read(sem, &x, 8) == 8);
	printf("semaphore: %llu\n", (unsigned long long)x);
	CHECK(read(sem, &x, 8) == 8);
	EXPECT_ERR("semaphore empty", read(sem, &x, 8));
	EXPECT_ERR("eventfd bad flags", eventfd(0, 0x1234));

	/* The anonymous files: close-on-exec, F_GETFL, what fstat shows. */
	sigset_t none;
	sigemptyset(&none);
	int anon[4] = {eventfd(0, EFD_CLOEXEC), timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK),
		       signalfd(-1, &none, SFD_CLOEXEC), epoll_create1(EPOLL_CLOEXEC)};
	const char *names[4] = {"eventfd", "timerfd", "signalfd", "epoll"};
	for (int i = 0; i < 4; i++) {
		struct stat st;
		CHECK(anon[i] >= 0 && fstat(anon[i], &st) == 0);
		printf("%s: cloexec=%d flags=%#o type=%o perm=%o nlink=%lu size=%ld\n", names[i],
		       !!(fcntl(anon[i], F_GETFD) & FD_CLOEXEC), fcntl(anon[i], F_GETFL),
		       st.st_mode & S_IFMT, st.st_mode & 07777, (unsigned long)st.st_nlink, (long)st.st_size);
	}
	int plain = eventfd(0, 0);
	printf("eventfd without EFD_CLOEXEC: cloexec=%d\n", !!(fcntl(plain, F_GETFD) & FD_CLOEXEC));
	return 0;
}
