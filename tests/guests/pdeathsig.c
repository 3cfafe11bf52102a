/* PR_SET_PDEATHSIG: a child that asked for a death signal gets it when its
 * parent process exits (si_code SI_USER, si_pid the parent), a SIGKILL
 * death signal kills it, a fork does not inherit it, and PR_GET_PDEATHSIG
 * reads it back. The guest is a subreaper, so the orphans come to it and
 * it reaps them. */
#define _GNU_SOURCE
#include "common.h"
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static int report = -1;
static volatile sig_atomic_t got_pid, got_code, got;

static void on_usr1(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	got = sig;
	got_pid = si->si_pid;
	got_code = si->si_code;
}

int main(void)
{
	CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
	int ready[2], res[2];
	CHECK(pipe(ready) == 0 && pipe(res) == 0);
	report = res[1];

	pid_t middle = fork();
	CHECK(middle >= 0);
	if (middle == 0) {
		pid_t me = getpid();
		pid_t hearer = fork();
		CHECK(hearer >= 0);
		if (hearer == 0) {
			struct sigaction sa;
			memset(&sa, 0, sizeof sa);
			sa.sa_sigaction = on_usr1;
			sa.sa_flags = SA_SIGINFO;
			sigset_t block, old;
			sigemptyset(&block);
			sigaddset(&block, SIGUSR1);
			CHECK(sigprocmask(SIG_BLOCK, &block, &old) == 0);
			CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
			CHECK(prctl(PR_SET_PDEATHSIG, SIGUSR1) == 0);
			int s = -1;
			CHECK(prctl(PR_GET_PDEATHSIG, &s) == 0);
			pid_t grandchild = fork();
			CHECK(grandchild >= 0);
			if (grandchild == 0) {
				int g = -1;
				CHECK(prctl(PR_GET_PDEATHSIG, &g) == 0);
				_exit(g == 0 ? 0 : 1);
			}
			int gst;
			CHECK(waitpid(grandchild, &gst, 0) == grandchild);
			CHECK(write(ready[1], "h", 1) == 1);
			while (!got)
				sigsuspend(&old);
			char line[160];
			int n = snprintf(line, sizeof line,
					 "hearer: get=%d fork_cleared=%d sig=%d from_parent=%d si_user=%d\n",
					 s == SIGUSR1, WIFEXITED(gst) && WEXITSTATUS(gst) == 0,
					 (int)got, got_pid == me, got_code == SI_USER);
			CHECK(write(report, line, (size_t)n) == n);
			_exit(0);
		}
		pid_t victim = fork();
		CHECK(victim >= 0);
		if (victim == 0) {
			CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL) == 0);
			CHECK(write(ready[1], "v", 1) == 1);
			for (;;)
				pause();
		}
		char c;
		CHECK(read(ready[0], &c, 1) == 1 && read(ready[0], &c, 1) == 1);
		_exit(5);
	}
	int st;
	CHECK(waitpid(middle, &st, 0) == middle);
	printf("middle: exit=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	/* Both orphans came to us: one exits after its report, one is killed. */
	int exited = 0, killed = 0;
	for (int i = 0; i < 2; i++) {
		pid_t w = wait(&st);
		CHECK(w > 0);
		exited += WIFEXITED(st) && WEXITSTATUS(st) == 0;
		killed += WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
	}
	printf("orphans: exited=%d killed=%d\n", exited, killed);
	CHECK(close(res[1]) == 0);
	char buf[256];
	ssize_t n = read(res[0], buf, sizeof buf);
	printf("%.*s", (int)(n > 0 ? n : 0), buf);
	return 0;
}
