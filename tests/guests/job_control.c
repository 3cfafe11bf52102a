#define _GNU_SOURCE
/* Job control and sessions: SIGSTOP/SIGTSTP/SIGCONT reported by
 * WUNTRACED/WCONTINUED, a stopped child killed, setsid/setpgid/getpgid/
 * getsid rules, kill() to a process group, execve from a multi-threaded
 * process keeping its pid. */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

static volatile sig_atomic_t got_usr1;
static void on_usr1(int s)
{
	(void)s;
	got_usr1++;
}

static void *exec_thread(void *arg)
{
	char **argv = arg;
	char *args[] = { argv[0], "after-exec", NULL };
	execv("/proc/self/exe", args);
	return NULL;
}

static void *spin(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "after-exec") == 0) {
		char want[32];
		snprintf(want, sizeof want, "%d", (int)getpid());
		printf("after exec: pid kept %d, tid is pid %d\n", argc == 2 || strcmp(argv[2], want) == 0,
		       (int)getpid() == (int)gettid());
		return 0;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	int st;

	pid_t c = fork();
	if (c == 0) {
		for (;;)
			pause();
	}
	kill(c, SIGSTOP);
	printf("stopped: pid %d", waitpid(c, &st, WUNTRACED) == c);
	printf(" WIFSTOPPED %d sig %d\n", WIFSTOPPED(st), WSTOPSIG(st));
	printf("stop reported once: %d\n", waitpid(c, &st, WUNTRACED | WNOHANG));
	kill(c, SIGCONT);
	printf("continued: pid %d", waitpid(c, &st, WCONTINUED) == c);
	printf(" WIFCONTINUED %d\n", WIFCONTINUED(st));
	kill(c, SIGTSTP);
	waitpid(c, &st, WUNTRACED);
	printf("SIGTSTP: stopped %d sig %d\n", WIFSTOPPED(st), WSTOPSIG(st));
	kill(c, SIGKILL);
	waitpid(c, &st, 0);
	printf("killed while stopped: signaled %d sig %d\n", WIFSIGNALED(st), WTERMSIG(st));

	/* A default-fatal signal waits for SIGCONT (only SIGKILL wakes a
	 * stopped process). */
	c = fork();
	if (c == 0) {
		raise(SIGSTOP);
		_exit(3);
	}
	waitpid(c, &st, WUNTRACED);
	printf("raise(SIGSTOP): stopped %d\n", WIFSTOPPED(st));
	kill(c, SIGTERM);
	usleep(100000);
	printf("SIGTERM while stopped: still there %d\n", waitpid(c, &st, WNOHANG) == 0);
	kill(c, SIGCONT);
	waitpid(c, &st, 0);
	printf("then SIGCONT: signaled %d sig %d\n", WIFSIGNALED(st), WTERMSIG(st));

	/* The stop is whole once the parent sees it: a signal sent at once
	 * after that wait still waits for SIGCONT, however soon it comes. */
	int alive = 0, termed = 0;
	for (int i = 0; i < 20; i++) {
		c = fork();
		if (c == 0) {
			raise(SIGSTOP);
			_exit(3);
		}
		waitpid(c, &st, WUNTRACED);
		kill(c, SIGTERM);
		usleep(5000);
		alive += waitpid(c, &st, WNOHANG) == 0;
		kill(c, SIGCONT);
		waitpid(c, &st, 0);
		termed += WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM;
	}
	printf("SIGTERM at once after the stop, 20 times: still there %d, then SIGTERM %d\n",
	       alive, termed);

	/* Sessions and groups. */
	int p[2];
	if (pipe(p) != 0)
		return 1;
	c = fork();
	if (c == 0) {
		pid_t me = getpid();
		pid_t sid = setsid();
		char r[4] = {
			sid == me, getsid(0) == me, getpgid(0) == me,
			setpgid(0, 0) < 0 && errno == EPERM,
		};
		if (write(p[1], r, 4) != 4)
			_exit(1);
		_exit(0);
	}
	char r[4] = { 0 };
	if (read(p[0], r, 4) != 4)
		return 1;
	waitpid(c, &st, 0);
	printf("setsid: new sid %d, getsid %d, getpgid %d, leader setpgid EPERM %d\n", r[0], r[1], r[2], r[3]);
	c = fork();
	if (c == 0) {
		setpgid(0, 0);
		_exit(setsid() < 0 && errno == EPERM ? 0 : 1);
	}
	waitpid(c, &st, 0);
	printf("setsid as group leader: EPERM %d\n", WEXITSTATUS(st) == 0);
	printf("getpgid(no such): %s\n", getpgid(999999) < 0 ? errname(errno) : "?");

	/* A child in its own group gets a group signal; the parent does not. */
	signal(SIGUSR1, on_usr1);
	c = fork();
	if (c == 0) {
		setpgid(0, 0);
		while (!got_usr1)
			usleep(1000);
		_exit(got_usr1 == 1 ? 0 : 1);
	}
	setpgid(c, c);
	printf("setpgid child: %d\n", getpgid(c) == c);
	kill(-c, SIGUSR1);
	waitpid(c, &st, 0);
	printf("group signal: child got it %d, parent did not %d\n", WEXITSTATUS(st) == 0, got_usr1 == 0);
	printf("kill(-nogroup): %s\n", kill(-999999, SIGUSR1) < 0 ? errname(errno) : "?");

	/* A child that exec'd may not be moved. */
	c = fork();
	if (c == 0) {
		char *args[] = { "/bin/sleep", "1", NULL };
		execv(args[0], args);
		_exit(127);
	}
	usleep(200000);
	printf("setpgid after exec: %s\n", setpgid(c, c) < 0 ? errname(errno) : "allowed");
	kill(c, SIGKILL);
	waitpid(c, &st, 0);

	/* execve from a thread while another thread runs: the process keeps
	 * its pid, the exec'ing thread becomes the only one. */
	c = fork();
	if (c == 0) {
		pthread_t a, b;
		pthread_create(&a, NULL, spin, NULL);
		pthread_create(&b, NULL, exec_thread, argv);
		pthread_join(b, NULL);
		_exit(5);
	}
	waitpid(c, &st, 0);
	printf("exec from a thread: exited %d code %d\n", WIFEXITED(st), WEXITSTATUS(st));
	return 0;
}
