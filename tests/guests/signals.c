/* Signal delivery: handlers with and without SA_SIGINFO, the frame's
 * siginfo and ucontext, the mask during a handler, pending signals released
 * by sigprocmask, SA_RESETHAND, sigaltstack, a fault handled by longjmp,
 * FP/SSE state preserved across a handler, SIGPIPE's EPIPE when ignored,
 * and a last raise whose default action kills the program (status 128+10
 * is checked by the harness as a signal death: SIGUSR1). */
#include "common.h"
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>

static volatile sig_atomic_t hits, last_sig, last_code, nested_blocked;
static volatile uintptr_t fault_addr;
static sigjmp_buf jump;
static char altstack[64 * 1024];
static volatile int on_alt;

static void plain(int sig)
{
	hits++;
	last_sig = sig;
	sigset_t cur;
	sigprocmask(SIG_BLOCK, NULL, &cur);
	/* The signal being handled is blocked during its handler. */
	nested_blocked = sigismember(&cur, sig);
}

static void with_info(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	hits++;
	last_sig = sig;
	last_code = si->si_code;
	/* Clobber SSE registers: the interrupted code's must come back. */
	volatile double x = 1.0;
	for (int i = 0; i < 10; i++)
		x = x * 3.0 + 0.5;
	(void)x;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	fault_addr = (uintptr_t)si->si_addr;
	siglongjmp(jump, 1);
}

static void check_stack(int sig)
{
	(void)sig;
	char here;
	on_alt = &here >= altstack && &here < altstack + sizeof altstack;
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = plain;
	CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
	CHECK(raise(SIGUSR2) == 0);
	printf("plain: hits=%d sig=%s blocked_inside=%d\n", hits, last_sig == SIGUSR2 ? "SIGUSR2" : "?", nested_blocked);

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = with_info;
	sa.sa_flags = SA_SIGINFO;
	CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
	volatile double keep = 2.5;
	CHECK(kill(getpid(), SIGUSR2) == 0);
	printf("siginfo: hits=%d code=%s sse_kept=%d\n", hits, last_code == SI_USER ? "SI_USER" : "?", keep == 2.5);

	/* Blocked: stays pending until unblocked, then runs once. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	CHECK(sigprocmask(SIG_BLOCK, &set, &old) == 0);
	raise(SIGUSR2);
	raise(SIGUSR2);
	sigset_t pend;
	CHECK(sigpending(&pend) == 0);
	printf("pending_while_blocked=%d hits_before=%d\n", sigismember(&pend, SIGUSR2), hits);
	CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
	printf("after_unblock hits=%d\n", hits);

	/* SA_RESETHAND: the second raise finds the default (ignored SIGCHLD). */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = plain;
	sa.sa_flags = SA_RESETHAND;
	CHECK(sigaction(SIGCHLD, &sa, NULL) == 0);
	raise(SIGCHLD);
	raise(SIGCHLD);
	struct sigaction now;
	CHECK(sigaction(SIGCHLD, NULL, &now) == 0);
	printf("resethand: hits=%d reset=%d\n", hits, now.sa_handler == SIG_DFL);

	/* sigaltstack + SA_ONSTACK. */
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
	CHECK(sigaltstack(&ss, NULL) == 0);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = check_stack;
	sa.sa_flags = SA_ONSTACK;
	CHECK(sigaction(SIGURG, &sa, NULL) == 0);
	raise(SIGURG);
	printf("altstack: handler_on_alt=%d\n", on_alt);

	/* A fault, handled: the handler sees the faulting address. */
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
	volatile int *bad = (int *)0x1000;
	if (sigsetjmp(jump, 1) == 0) {
		*bad = 1;
		printf("no fault?\n");
	} else {
		printf("segv: addr_ok=%d\n", fault_addr == 0x1000);
	}

	/* SIGPIPE ignored: the write fails with EPIPE instead. */
	signal(SIGPIPE, SIG_IGN);
	int p[2];
	CHECK(pipe(p) == 0);
	close(p[0]);
	errno = 0;
	ssize_t wrote = write(p[1], "x", 1);
	printf("epipe: ret=%zd errno=%s\n", wrote, errname(errno));

	/* Last: the default action of SIGUSR1 terminates. */
	fflush(stdout);
	signal(SIGUSR1, SIG_DFL);
	raise(SIGUSR1);
	printf("still alive?\n");
	return 0;
}
