/* A guest that attacks the systrap stub it runs in: hostile_stub MODE [PATH]
 *
 * It finds the stub region (mapped by the host, unknown to the Sentry, so
 * loads from it do not fault) by probing down from the top of a 47-bit
 * address space with a SIGSEGV handler, then, by MODE:
 *   find       prints "stub found" (and nothing else happens)
 *   scribble   overwrites its own thread's shared context (slot 0)
 *   jump       jumps onto every `syscall` instruction of the stub code with
 *              mkdir(PATH) in the registers
 *   sigreturn  jumps into the stub's rt_sigreturn with a forged frame that
 *              blocks every signal and returns to a mkdir(PATH) syscall
 *   remap      asks the Sentry to munmap, mprotect and mmap over the stub
 *              page (ordinary syscalls), then checks the page is unchanged
 * The test (tests/tests/hostile_systrap.rs) expects the sandbox killed (or
 * errno for remap), PATH never created on the host and no Sentry crash.
 * It only means something under systrap (natively it finds the stack). */
#include "common.h"
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define PAGE 4096UL
#define TOP 0x7ffffffff000UL

static sigjmp_buf probe_env;

static void on_fault(int sig)
{
	(void)sig;
	siglongjmp(probe_env, 1);
}

static int readable(uintptr_t a)
{
	if (sigsetjmp(probe_env, 1))
		return 0;
	(void)*(volatile unsigned char *)a;
	return 1;
}

/* The lowest page of the mapped run below the highest mapped page under
 * TOP, probed in 1 MiB steps first. */
static uintptr_t find_stub(void)
{
	struct sigaction sa = { 0 };
	sa.sa_handler = on_fault;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	uintptr_t a = 0;
	for (uintptr_t p = TOP - PAGE; p > TOP - (4UL << 30); p -= 1UL << 20)
		if (readable(p)) {
			a = p;
			break;
		}
	if (!a)
		return 0;
	while (readable(a - PAGE))
		a -= PAGE;
	signal(SIGSEGV, SIG_DFL);
	signal(SIGBUS, SIG_DFL);
	return a;
}

static const char *path = "/nonexistent-cryo-hostile";
static unsigned char stack[65536] __attribute__((aligned(16)));

static void mkdir_from_app(void)
{
	/* An ordinary syscall instruction: with every signal blocked the
	 * trapped SIGSYS cannot be handled and the kernel kills the stub. */
	long r;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "a"((long)SYS_mkdir), "D"(path), "S"(0755L)
			 : "rcx", "r11", "memory");
	printf("mkdir returned %ld\n", r);
	fflush(stdout);
	_exit(3);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "find";
	if (argc > 2)
		path = argv[2];
	uintptr_t stub = find_stub();
	if (!stub) {
		printf("no stub region\n");
		return 2;
	}
	printf("stub found\n");
	fflush(stdout);
	const unsigned char *code = (const unsigned char *)stub;
	if (!strcmp(mode, "find"))
		return 0;
	if (!strcmp(mode, "scribble")) {
		/* Slot 0 (this thread) sits three pages above the code page. */
		memset((void *)(stub + 3 * PAGE), 0x41, 64);
		for (;;)
			;
	}
	if (!strcmp(mode, "jump")) {
		for (unsigned i = 0; i + 1 < PAGE; i++)
			if (code[i] == 0x0f && code[i + 1] == 0x05) {
				__asm__ volatile("jmp *%0"
						 :
						 : "r"(stub + i), "a"((long)SYS_mkdir), "D"(path),
						   "S"(0755L)
						 : "memory");
			}
		printf("no syscall instruction in the stub\n");
		return 4;
	}
	if (!strcmp(mode, "sigreturn")) {
		/* rt_sigreturn reads the frame at rsp - 8: pretcode, then the
		 * ucontext. */
		static uint64_t frame[128] __attribute__((aligned(64)));
		unsigned char *uc = (unsigned char *)&frame[1];
		*(uint64_t *)(uc + 160) = (uint64_t)(stack + sizeof stack - 64);
		*(uint64_t *)(uc + 168) = (uint64_t)mkdir_from_app;
		*(uint64_t *)(uc + 176) = 0x202;
		*(uint16_t *)(uc + 184) = 0x33;
		*(uint16_t *)(uc + 190) = 0x2b;
		*(uint64_t *)(uc + 296) = ~0UL;
		/* The stub page starts with its restorer (mov eax, 15; syscall). */
		__asm__ volatile("mov %0, %%rsp\n\tjmp *%1"
				 :
				 : "r"(uc), "r"(stub)
				 : "memory");
		return 5;
	}
	if (!strcmp(mode, "remap")) {
		unsigned char before[64];
		memcpy(before, code, sizeof before);
		errno = 0;
		int r = munmap((void *)stub, PAGE);
		printf("munmap=%d %s\n", r, errname(r ? errno : 0));
		errno = 0;
		r = mprotect((void *)stub, PAGE, PROT_READ | PROT_WRITE);
		printf("mprotect=%d %s\n", r, errname(r ? errno : 0));
		void *m = mmap((void *)stub, PAGE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		printf("mmap_fixed=%s %s\n", m == MAP_FAILED ? "failed" : (m == (void *)stub ? "at-stub" : "elsewhere"),
		       errname(m == MAP_FAILED ? errno : 0));
		printf("stub %s\n", memcmp(before, code, sizeof before) ? "changed" : "intact");
		return 0;
	}
	printf("unknown mode %s\n", mode);
	return 1;
}
