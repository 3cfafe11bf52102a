/* fork/exec/wait: a tree three levels deep, exit statuses and signals
 * reported by wait4 and waitid, WNOHANG, ECHILD, SIGCHLD's siginfo,
 * pipes between processes, and a vfork child borrowing its parent's
 * memory. */
#include "common.h"
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

static volatile sig_atomic_t chld_code, chld_status, chld_pid_ok;
static pid_t expected_pid;

static void on_chld(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	chld_code = si->si_code;
	chld_status = si->si_status;
	chld_pid_ok = si->si_pid == expected_pid;
}

/* Level n forks level n+1 and exits with n*10 + (its child's code). */
static int level(int n)
{
	if (n == 3)
		return 3;
	pid_t c = fork();
	if (c == 0)
		_exit(level(n + 1));
	int st = 0;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st))
		return 99;
	return n * 10 + WEXITSTATUS(st) % 10;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "exec-child") == 0) {
		printf("exec'd child argv ok %d\n", argc == 3 && strcmp(argv[2], "x") == 0);
		return 42;
	}
	setvbuf(stdout, NULL, _IONBF, 0);

	int st = 0;
	printf("no child: %s\n", waitpid(-1, &st, WNOHANG) < 0 ? errname(errno) : "?");

	pid_t c = fork();
	if (c == 0)
		_exit(level(1));
	waitpid(c, &st, 0);
	printf("tree: exited %d code %d\n", WIFEXITED(st), WEXITSTATUS(st));

	/* exec in a child, the parent waits with wait4 and rusage */
	c = fork();
	if (c == 0) {
		char *args[] = { argv[0], "exec-child", "x", NULL };
		execv("/proc/self/exe", args);
		_exit(127);
	}
	struct rusage ru;
	printf("wait4 pid matches %d\n", wait4(c, &st, 0, &ru) == c);
	printf("exec child: exited %d code %d\n", WIFEXITED(st), WEXITSTATUS(st));

	/* killed by a signal, seen by waitid */
	int p[2];
	if (pipe(p) != 0)
		return 1;
	c = fork();
	if (c == 0) {
		close(p[0]);
		if (write(p[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	char b;
	printf("child ready %d\n", (int)read(p[0], &b, 1));
	close(p[0]);
	siginfo_t si;
	memset(&si, 0, sizeof si);
	printf("WNOHANG while running: %d\n", waitid(P_PID, c, &si, WEXITED | WNOHANG) == 0 && si.si_pid == 0);
	kill(c, SIGTERM);
	waitid(P_PID, c, &si, WEXITED | WNOWAIT);
	printf("waitid NOWAIT: code %s status %d\n", si.si_code == CLD_KILLED ? "CLD_KILLED" : "?", si.si_status);
	waitpid(c, &st, 0);
	printf("then waitpid: signaled %d sig %d\n", WIFSIGNALED(st), WTERMSIG(st));
	printf("reaped: %s\n", waitpid(c, &st, WNOHANG) < 0 ? errname(errno) : "still there");

	/* SIGCHLD with siginfo */
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_chld;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGCHLD, &sa, NULL);
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);
	c = fork();
	if (c == 0)
		_exit(9);
	expected_pid = c;
	sigsuspend(&old);
	sigprocmask(SIG_SETMASK, &old, NULL);
	printf("SIGCHLD: code %s status %d pid ok %d\n", chld_code == CLD_EXITED ? "CLD_EXITED" : "?",
	       (int)chld_status, (int)chld_pid_ok);
	waitpid(c, &st, 0);
	sa.sa_handler = SIG_DFL;
	sa.sa_flags = 0;
	sigaction(SIGCHLD, &sa, NULL);

	/* many children, reaped in any order */
	int sum = 0;
	for (int i = 1; i <= 5; i++)
		if (fork() == 0)
			_exit(i);
	for (int i = 0; i < 5; i++) {
		if (wait(&st) > 0)
			sum += WEXITSTATUS(st);
	}
	printf("five children: sum %d, then %s\n", sum, wait(&st) < 0 ? errname(errno) : "?");

	/* vfork: the child borrows the parent's memory until it exits */
	volatile int shared = 0;
	c = vfork();
	if (c == 0) {
		shared = 77;
		_exit(0);
	}
	waitpid(c, &st, 0);
	printf("vfork child wrote %d\n", shared);

	/* fork copies: the child's writes stay its own */
	int mine = 1;
	c = fork();
	if (c == 0) {
		mine = 2;
		_exit(mine);
	}
	waitpid(c, &st, 0);
	printf("fork child had %d, parent still %d\n", WEXITSTATUS(st), mine);

	/* SIGCHLD ignored: children are reaped by themselves */
	signal(SIGCHLD, SIG_IGN);
	c = fork();
	if (c == 0)
		_exit(0);
	printf("ignored SIGCHLD wait: %s\n", waitpid(c, &st, 0) < 0 ? errname(errno) : "reaped by wait");
	return 0;
}
