/* RLIMIT_STACK bounds the main thread's stack growth. The guest re-execs
 * itself with a small limit set between fork and exec (the new image's
 * stack grows under it): recursion within the limit returns, recursion past
 * it dies of SIGSEGV (the status the parent sees), or is caught by a
 * SIGSEGV handler on an alternate stack; getrlimit after exec shows the
 * limit. A limit lowered while running applies to growth from then on.
 *
 * Usage: stack_limit                 the driver (runs every case)
 *        stack_limit deep KIB [alt]  recurse through KIB KiB of stack
 *        stack_limit lower KIB KIB2  lower the soft limit to KIB2, recurse KIB */
#include "common.h"
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

static char self[4096];

/* About 1 KiB of stack a level; the sum keeps the frames live so no level
 * is folded into a loop. */
static __attribute__((noinline)) long recurse(long levels)
{
	volatile char frame[1000];
	frame[0] = (char)levels;
	frame[sizeof frame - 1] = (char)(levels >> 8);
	if (levels == 0)
		return frame[0];
	return recurse(levels - 1) + frame[0] + frame[sizeof frame - 1];
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	static const char msg[] = "caught SIGSEGV on the alternate stack\n";
	ssize_t r = write(1, msg, sizeof msg - 1);
	(void)r;
	_exit(si->si_code == SEGV_MAPERR || si->si_code == SEGV_ACCERR ? 42 : 43);
}

static int deep(long kib, int alt)
{
	struct rlimit r;
	CHECK(getrlimit(RLIMIT_STACK, &r) == 0);
	printf("after exec: soft %ld KiB, hard %s\n", (long)(r.rlim_cur / 1024),
	       r.rlim_max == RLIM_INFINITY ? "unlimited" : "limited");
	fflush(stdout);
	if (alt) {
		static char altstack[64 * 1024];
		stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack };
		CHECK(sigaltstack(&ss, NULL) == 0);
		struct sigaction sa = { 0 };
		sa.sa_sigaction = on_segv;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
		CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
	}
	long v = recurse(kib);
	printf("recursed through %ld KiB\n", kib);
	return v == -1 ? 1 : 0;
}

/* Forks, sets RLIMIT_STACK's soft limit to `limit_kib` in the child and
 * re-execs this program with `args`; prints how the child ended. */
static void run_case(const char *label, long limit_kib, char *const args[])
{
	fflush(stdout);
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		struct rlimit r;
		CHECK(getrlimit(RLIMIT_STACK, &r) == 0);
		r.rlim_cur = (rlim_t)limit_kib * 1024;
		CHECK(setrlimit(RLIMIT_STACK, &r) == 0);
		execv(self, args);
		_exit(127);
	}
	int st;
	CHECK(waitpid(c, &st, 0) == c);
	if (WIFEXITED(st))
		printf("%s: exit %d\n", label, WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		printf("%s: killed by %s\n", label, WTERMSIG(st) == SIGSEGV ? "SIGSEGV" : strsignal(WTERMSIG(st)));
	else
		printf("%s: other\n", label);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 3 && strcmp(argv[1], "deep") == 0)
		return deep(atol(argv[2]), argc >= 4);
	if (argc == 4 && strcmp(argv[1], "lower") == 0) {
		struct rlimit r;
		CHECK(getrlimit(RLIMIT_STACK, &r) == 0);
		r.rlim_cur = (rlim_t)atol(argv[3]) * 1024;
		CHECK(setrlimit(RLIMIT_STACK, &r) == 0);
		return deep(atol(argv[2]), 0);
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	CHECK(n > 0);
	self[n] = '\0';
	run_case("1 MiB limit, 256 KiB deep", 1024, (char *[]){ argv[0], "deep", "256", NULL });
	run_case("1 MiB limit, 768 KiB deep", 1024, (char *[]){ argv[0], "deep", "768", NULL });
	run_case("1 MiB limit, 4 MiB deep", 1024, (char *[]){ argv[0], "deep", "4096", NULL });
	run_case("1 MiB limit, 4 MiB deep, handler on an alternate stack", 1024,
		 (char *[]){ argv[0], "deep", "4096", "alt", NULL });
	run_case("4 MiB limit, 2 MiB deep", 4096, (char *[]){ argv[0], "deep", "2048", NULL });
	run_case("4 MiB limit, 8 MiB deep", 4096, (char *[]){ argv[0], "deep", "8192", NULL });
	run_case("8 MiB limit lowered to 512 KiB, 2 MiB deep", 8192,
		 (char *[]){ argv[0], "lower", "2048", "512", NULL });
	return 0;
}
