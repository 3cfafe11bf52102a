/* rt_sigreturn through forged frames: a SIGUSR1 handler rewrites the
 * ucontext the kernel gave it (segment selectors, rip, eflags, the FP
 * state and its pointer) and returns through it. Each case runs in a
 * child; the line says how it ended, and where it returned, which eflags
 * bits survived (read with pushf). Linux's restore_sigcontext takes only
 * the FIX_EFLAGS bits, forces user privilege onto cs (and ss), and an
 * iret to a bad cs or rip, or a bad FP state, ends in SIGSEGV. */
#define _GNU_SOURCE
#include "common.h"
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>

#define TF 0x100UL
#define IOPL 0x3000UL
#define NT 0x4000UL
#define VM 0x20000UL
#define AC 0x40000UL
#define KERNEL_ADDR 0xffffffff81000000UL
#define NONCANONICAL 0x8000000000000000UL

static int which;
unsigned long seen_flags;
void after_return(void);
void report(void);
/* Where a forged frame returns: eflags as they came back, then a clean
 * eflags (AC would make libc's unaligned loads fault) for the report. */
__asm__(".globl after_return\n"
	"after_return:\n"
	"pushfq\n"
	"popq seen_flags(%rip)\n"
	"pushq $0x202\n"
	"popfq\n"
	"andq $-16, %rsp\n"
	"call report\n"
	"ud2\n");

void report(void)
{
	unsigned long f = seen_flags;
	printf("  returned: TF %s IOPL %s NT %s VM %s AC %s\n", f & TF ? "set" : "clear",
	       f & IOPL ? "set" : "clear", f & NT ? "set" : "clear", f & VM ? "set" : "clear",
	       f & AC ? "set" : "clear");
	fflush(stdout);
	_exit(0);
}

enum {
	CS_KERNEL, CS_NULL, CS_32BIT, SS_NULL_STRICT, SS_NULL, RIP_NONCANONICAL, RIP_KERNEL,
	FLAGS_TF, FLAGS_IOPL, FLAGS_NT, FLAGS_VM, FLAGS_AC, FLAGS_ALL_PRIVILEGED,
	FP_NULL, FP_UNMAPPED, FP_KERNEL, FP_MXCSR, FP_XSTATE_BV, FS_GS_FIELDS, CASES
};
static const char *names[CASES] = {
	"cs kernel 0x10", "cs null", "cs 32-bit 0x23", "ss null strict", "ss null",
	"rip non-canonical", "rip kernel", "eflags TF", "eflags IOPL=3", "eflags NT",
	"eflags VM", "eflags AC", "eflags IOPL NT VM", "fpstate NULL", "fpstate unmapped",
	"fpstate kernel", "fpstate MXCSR reserved", "fpstate xstate_bv reserved",
	"fs gs selectors",
};

/* uc_flags bit asking for ss to be restored as saved. */
#define UC_STRICT_RESTORE_SS 0x4

static void handler(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	ucontext_t *uc = ctx;
	greg_t *g = uc->uc_mcontext.gregs;
	/* cs, gs, fs, ss are four u16s in one greg. */
	uint16_t *sel = (uint16_t *)&g[REG_CSGSFS];
	g[REG_RIP] = (greg_t)after_return;
	switch (which) {
	case CS_KERNEL: sel[0] = 0x10; break;
	case CS_NULL: sel[0] = 0; break;
	case CS_32BIT: sel[0] = 0x23; break;
	case SS_NULL_STRICT: sel[3] = 0; uc->uc_flags |= UC_STRICT_RESTORE_SS; break;
	case SS_NULL: sel[3] = 0; uc->uc_flags &= ~UC_STRICT_RESTORE_SS; break;
	case RIP_NONCANONICAL: g[REG_RIP] = (greg_t)NONCANONICAL; break;
	case RIP_KERNEL: g[REG_RIP] = (greg_t)KERNEL_ADDR; break;
	case FLAGS_TF: g[REG_EFL] |= TF; break;
	case FLAGS_IOPL: g[REG_EFL] |= IOPL; break;
	case FLAGS_NT: g[REG_EFL] |= NT; break;
	case FLAGS_VM: g[REG_EFL] |= VM; break;
	case FLAGS_AC: g[REG_EFL] |= AC; break;
	case FLAGS_ALL_PRIVILEGED: g[REG_EFL] |= IOPL | NT | VM; break;
	case FP_NULL: uc->uc_mcontext.fpregs = NULL; break;
	case FP_UNMAPPED: uc->uc_mcontext.fpregs = (void *)0x1000; break;
	case FP_KERNEL: uc->uc_mcontext.fpregs = (void *)KERNEL_ADDR; break;
	case FP_MXCSR: uc->uc_mcontext.fpregs->mxcsr |= 0xffff0000u; break;
	case FP_XSTATE_BV:
		/* The XSAVE header follows the 512-byte legacy area. */
		*(uint64_t *)((char *)uc->uc_mcontext.fpregs + 512) |= 1UL << 62;
		break;
	case FS_GS_FIELDS: sel[1] = 0xffff; sel[2] = 0xffff; break;
	}
}

static void run(int c)
{
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		which = c;
		struct sigaction sa = {0};
		sa.sa_sigaction = handler;
		sa.sa_flags = SA_SIGINFO;
		CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
		printf("%s:\n", names[c]);
		fflush(stdout);
		raise(SIGUSR1);
		printf("  fell through\n");
		fflush(stdout);
		_exit(1);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	if (c == CS_32BIT) {
		/* Linux runs the code as 32-bit code (what happens then is the
		 * code's business); cryo runs none: only that it ended. */
		printf("  ended\n");
		return;
	}
	if (WIFSIGNALED(status))
		printf("  killed %s\n", strsignal(WTERMSIG(status)));
	else if (WEXITSTATUS(status) != 0)
		printf("  exit %d\n", WEXITSTATUS(status));
}

int main(void)
{
	for (int c = 0; c < CASES; c++)
		run(c);
	/* fs and gs bases come from arch_prctl, not the frame: a kernel or
	 * non-canonical base is refused. */
	unsigned long bases[] = {KERNEL_ADDR, NONCANONICAL};
	for (int i = 0; i < 2; i++) {
		long fs = syscall(SYS_arch_prctl, ARCH_SET_FS, bases[i]);
		printf("arch_prctl SET_FS %s: %s\n", i ? "non-canonical" : "kernel",
		       fs < 0 ? errname(errno) : "OK");
		long gs = syscall(SYS_arch_prctl, ARCH_SET_GS, bases[i]);
		printf("arch_prctl SET_GS %s: %s\n", i ? "non-canonical" : "kernel",
		       gs < 0 ? errname(errno) : "OK");
	}
	printf("done\n");
	return 0;
}
