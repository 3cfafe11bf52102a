/* rt_sigreturn through a frame no return can come from: Linux kills the
 * process with SIGSEGV (it never returns an error, there is nowhere to
 * return to). argv[1] picks the frame:
 *   segment     a handler changes the saved cs to 0 (a null selector)
 *   unreadable  rt_sigreturn with the stack pointer on unmapped memory
 *   caught      as unreadable, with a SIGSEGV handler on an alternate
 *               stack: the SIGSEGV is an ordinary one, siginfo SI_KERNEL
 * The first two end killed by SIGSEGV (128 + 11); the third exits 0. */
#define _GNU_SOURCE
#include "common.h"
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>

static void on_usr1(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	ucontext_t *uc = ctx;
	/* REG_CSGSFS: cs, gs, fs, ss as four 16-bit fields. */
	uc->uc_mcontext.gregs[REG_CSGSFS] &= ~0xffffLL;
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	printf("caught signal %d code %s addr %s\n", sig,
	       si->si_code == SI_KERNEL ? "SI_KERNEL" : "other",
	       si->si_addr == NULL ? "0" : "nonzero");
	fflush(stdout);
	_exit(0);
}

/* rt_sigreturn with the stack pointer at `sp`; if it ever returns (it
 * must not), the stack is put back and its result returned. */
static long sigreturn_on(void *sp)
{
	long ret;
	__asm__ volatile("mov %%rsp, %%r12\n\t"
			 "mov %1, %%rsp\n\t"
			 "syscall\n\t"
			 "mov %%r12, %%rsp"
			 : "=a"(ret)
			 : "r"(sp), "a"((long)SYS_rt_sigreturn)
			 : "r12", "rcx", "r11", "memory");
	return ret;
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	const char *mode = argv[1];
	void *hole = mmap(NULL, 1 << 16, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(hole != MAP_FAILED);
	CHECK(munmap(hole, 1 << 16) == 0);
	void *unmapped = (char *)hole + (1 << 15);
	if (strcmp(mode, "segment") == 0) {
		struct sigaction sa = { 0 };
		sa.sa_sigaction = on_usr1;
		sa.sa_flags = SA_SIGINFO;
		CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
		printf("returning through a null code segment\n");
		fflush(stdout);
		raise(SIGUSR1);
		printf("survived the bad frame\n");
	} else if (strcmp(mode, "unreadable") == 0) {
		printf("rt_sigreturn on unmapped memory\n");
		fflush(stdout);
		long r = sigreturn_on(unmapped);
		printf("rt_sigreturn returned %s\n", r < 0 ? errname((int)-r) : "a value");
	} else if (strcmp(mode, "caught") == 0) {
		static char alt[1 << 16];
		stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt };
		CHECK(sigaltstack(&ss, NULL) == 0);
		struct sigaction sa = { 0 };
		sa.sa_sigaction = on_segv;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
		CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
		printf("rt_sigreturn on unmapped memory, SIGSEGV handled\n");
		fflush(stdout);
		long r = sigreturn_on(unmapped);
		printf("rt_sigreturn returned %s\n", r < 0 ? errname((int)-r) : "a value");
	}
	printf("not reached\n");
	return 1;
}
