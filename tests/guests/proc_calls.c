/* Process calls issue 9 lists that no other guest reaches directly:
 * waiting on a process group (wait4(-pgid), wait4(0), waitid(P_PGID)),
 * execveat(AT_EMPTY_PATH) of an open file (ignored signals stay ignored,
 * caught ones reset), `#!` scripts, clone3 (CLONE_PIDFD, its
 * exit signal, a short struct), epoll_pwait2's timespec timeout and mask,
 * a process-directed SIGALRM taken by the thread that does not block it,
 * and sleeps that a default-ignored signal (SIGCONT, SIGCHLD) must not cut
 * short. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

static pid_t child_exiting(int code, pid_t pgid)
{
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		if (pgid >= 0)
			CHECK(setpgid(0, pgid) == 0);
		usleep(20000);
		_exit(code);
	}
	if (pgid >= 0)
		(void)setpgid(c, pgid); /* races the child's own call: either wins */
	return c;
}

static void wait_groups(void)
{
	/* Two children in a group of their own (the first leads it), one in
	 * ours: wait4(-group) reaps only the two, wait4(0) only ours. */
	pid_t a = child_exiting(11, 0);
	pid_t b = child_exiting(12, a);
	pid_t c = child_exiting(13, -1);
	int st, sum = 0;
	for (int i = 0; i < 2; i++) {
		pid_t r = wait4(-a, &st, 0, NULL);
		CHECK(r == a || r == b);
		sum += WEXITSTATUS(st);
	}
	printf("wait4(-pgid) reaped the group: %d\n", sum == 23);
	EXPECT_ERR("wait4(-pgid) emptied", wait4(-a, &st, WNOHANG, NULL));
	printf("wait4(0) reaped ours: %d\n", wait4(0, &st, 0, NULL) == c && WEXITSTATUS(st) == 13);

	pid_t d = child_exiting(14, 0);
	siginfo_t si;
	memset(&si, 0, sizeof si);
	CHECK(waitid(P_PGID, (id_t)d, &si, WEXITED) == 0);
	printf("waitid(P_PGID): pid=%d code=%s status=%d\n", si.si_pid == d,
	       si.si_code == CLD_EXITED ? "CLD_EXITED" : "?", si.si_status);
	EXPECT_ERR("waitid(P_PGID) emptied", waitid(P_PGID, (id_t)d, &si, WEXITED | WNOHANG));
}

static void on_usr1(int s) { (void)s; }

static void exec_at(const char *self)
{
	int fd = open(self, O_PATH | O_CLOEXEC);
	CHECK(fd >= 0);
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		/* An ignored signal stays ignored across execve, a caught one
		 * goes back to its default. */
		signal(SIGINT, SIG_IGN);
		signal(SIGUSR2, on_usr1);
		char *argv[] = {"proc_calls", "exec-child", NULL};
		char *envp[] = {"FROM_EXECVEAT=yes", NULL};
		syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
		_exit(100 + errno);
	}
	int st;
	CHECK(waitpid(c, &st, 0) == c);
	printf("execveat(AT_EMPTY_PATH): exit %d\n", WEXITSTATUS(st));
	char *argv[] = {"proc_calls", NULL};
	EXPECT_ERR("execveat(empty path, no flag)", syscall(SYS_execveat, fd, "", argv, argv, 0));
	EXPECT_ERR("execveat(bad flag)", syscall(SYS_execveat, fd, "", argv, argv, AT_EMPTY_PATH | 0x4));
	close(fd);
}

/* A `#!` script run by execve: the interpreter, its one optional argument,
 * then the script's path and the caller's arguments; a missing
 * interpreter is ENOENT. */
static void shebang(void)
{
	char dir[64], path[128], bad[128];
	make_tmpdir("proc_calls", dir, sizeof dir);
	snprintf(path, sizeof path, "%s/script", dir);
	snprintf(bad, sizeof bad, "%s/bad", dir);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	fputs("#!/bin/sh -e\necho \"script got $# args: $1 $2\"\nexit 6\n", f);
	CHECK(fclose(f) == 0);
	f = fopen(bad, "w");
	CHECK(f != NULL);
	fputs("#!/nonexistent/interpreter\n", f);
	CHECK(fclose(f) == 0);
	CHECK(chmod(path, 0755) == 0 && chmod(bad, 0755) == 0);
	fflush(stdout);
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		char *argv[] = {path, "one", "two", NULL};
		execv(path, argv);
		_exit(100);
	}
	int st;
	CHECK(waitpid(c, &st, 0) == c);
	printf("#! script: exit %d\n", WEXITSTATUS(st));
	char *argv[] = {bad, NULL};
	EXPECT_ERR("#! missing interpreter", execv(bad, argv));
	unlink(path);
	unlink(bad);
	rmdir(dir);
}

static void clone3_calls(void)
{
	int pidfd = -1;
	struct clone_args ca;
	memset(&ca, 0, sizeof ca);
	ca.flags = CLONE_PIDFD;
	ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
	ca.exit_signal = SIGCHLD;
	long c = syscall(SYS_clone3, &ca, sizeof ca);
	CHECK(c >= 0);
	if (c == 0)
		syscall(SYS_exit_group, 3);
	siginfo_t si;
	memset(&si, 0, sizeof si);
	CHECK(pidfd >= 0);
	CHECK(syscall(SYS_waitid, P_PIDFD, pidfd, &si, WEXITED, NULL) == 0);
	printf("clone3(CLONE_PIDFD): pid=%d status=%d\n", si.si_pid == c, si.si_status);
	close(pidfd);

	/* With exit_signal 0 the parent gets no SIGCHLD and must wait with
	 * __WCLONE. */
	memset(&ca, 0, sizeof ca);
	c = syscall(SYS_clone3, &ca, sizeof ca);
	CHECK(c >= 0);
	if (c == 0)
		syscall(SYS_exit_group, 4);
	int st;
	EXPECT_ERR("waitpid of a no-signal child without __WCLONE", waitpid((pid_t)c, &st, 0));
	pid_t r = waitpid((pid_t)c, &st, __WCLONE);
	printf("waitpid(__WCLONE): %d status=%d\n", r == c, WEXITSTATUS(st));

	EXPECT_ERR("clone3(short struct)", syscall(SYS_clone3, &ca, 32));
	memset(&ca, 0, sizeof ca);
	ca.exit_signal = 1000;
	EXPECT_ERR("clone3(bad exit signal)", syscall(SYS_clone3, &ca, sizeof ca));
	memset(&ca, 0, sizeof ca);
	ca.flags = CLONE_SIGHAND;
	EXPECT_ERR("clone3(CLONE_SIGHAND without CLONE_VM)", syscall(SYS_clone3, &ca, sizeof ca));
}

static void epoll_pwait2_calls(void)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0);
	int p[2];
	CHECK(pipe(p) == 0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7}, out[2];
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);
	struct timespec ts = {0, 20 * 1000 * 1000};
	printf("epoll_pwait2 timeout: %ld\n", syscall(SYS_epoll_pwait2, ep, out, 2, &ts, NULL, 8));
	CHECK(write(p[1], "x", 1) == 1);
	long n = syscall(SYS_epoll_pwait2, ep, out, 2, &ts, NULL, 8);
	printf("epoll_pwait2 ready: %ld data=%u\n", n, out[0].data.u32);
	struct timespec bad = {0, 1000 * 1000 * 1000};
	EXPECT_ERR("epoll_pwait2 bad timespec", syscall(SYS_epoll_pwait2, ep, out, 2, &bad, NULL, 8));
	char c;
	CHECK(read(p[0], &c, 1) == 1);

	/* A blocked, pending SIGUSR1 that the call's mask unblocks ends it. */
	struct sigaction sa = {.sa_handler = on_usr1};
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	sigset_t blk, none;
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR1);
	sigemptyset(&none);
	CHECK(sigprocmask(SIG_BLOCK, &blk, NULL) == 0);
	CHECK(raise(SIGUSR1) == 0);
	struct timespec longer = {5, 0};
	EXPECT_ERR("epoll_pwait2 unblocking a pending signal",
		   syscall(SYS_epoll_pwait2, ep, out, 2, &longer, &none, 8));
	CHECK(sigprocmask(SIG_UNBLOCK, &blk, NULL) == 0);
	close(ep);
	close(p[0]);
	close(p[1]);
}

static atomic_int alarm_tid;
static atomic_int worker_tid;
static atomic_int worker_ready;

static void on_alarm(int s)
{
	(void)s;
	atomic_store(&alarm_tid, (int)gettid());
}

static void *alarm_worker(void *arg)
{
	(void)arg;
	atomic_store(&worker_tid, (int)gettid());
	atomic_store(&worker_ready, 1);
	while (!atomic_load(&alarm_tid))
		pause();
	return NULL;
}

static void alarm_to_unblocking_thread(void)
{
	struct sigaction sa = {.sa_handler = on_alarm};
	CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
	sigset_t blk;
	sigemptyset(&blk);
	sigaddset(&blk, SIGALRM);
	CHECK(sigprocmask(SIG_BLOCK, &blk, NULL) == 0);
	sigset_t open_mask;
	sigemptyset(&open_mask);
	pthread_attr_t at;
	CHECK(pthread_attr_init(&at) == 0);
	CHECK(pthread_attr_setsigmask_np(&at, &open_mask) == 0);
	pthread_t t;
	CHECK(pthread_create(&t, &at, alarm_worker, NULL) == 0);
	while (!atomic_load(&worker_ready))
		usleep(1000);
	alarm(1);
	CHECK(pthread_join(t, NULL) == 0);
	printf("SIGALRM taken by the thread that does not block it: %d\n",
	       atomic_load(&alarm_tid) == atomic_load(&worker_tid));
	sigset_t pending;
	CHECK(sigpending(&pending) == 0);
	printf("SIGALRM left pending: %d\n", sigismember(&pending, SIGALRM));
	CHECK(sigprocmask(SIG_UNBLOCK, &blk, NULL) == 0);
}

static pid_t sleeper_tid;

static void *send_cont(void *arg)
{
	(void)arg;
	usleep(30000);
	CHECK(syscall(SYS_tgkill, getpid(), sleeper_tid, SIGCONT) == 0);
	return NULL;
}

static void sleeps_not_cut_short(void)
{
	/* SIGCONT and SIGCHLD without handlers are ignored by default: they
	 * wake the sleeper, which Linux puts straight back to sleep. */
	sleeper_tid = gettid();
	pthread_t t;
	CHECK(pthread_create(&t, NULL, send_cont, NULL) == 0);
	struct timespec d = {0, 150 * 1000 * 1000}, rem = {9, 9};
	int r = nanosleep(&d, &rem);
	printf("nanosleep across SIGCONT: %s rem untouched=%d\n", r == 0 ? "completed" : errname(errno),
	       rem.tv_sec == 9 && rem.tv_nsec == 9);
	CHECK(pthread_join(t, NULL) == 0);

	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0)
		_exit(0);
	d.tv_nsec = 150 * 1000 * 1000;
	r = clock_nanosleep(CLOCK_MONOTONIC, 0, &d, &rem);
	printf("clock_nanosleep across SIGCHLD: %s\n", r == 0 ? "completed" : errname(r));
	int st;
	CHECK(waitpid(c, &st, 0) == c);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "exec-child") == 0) {
		const char *v = getenv("FROM_EXECVEAT");
		struct sigaction sint, susr2;
		CHECK(sigaction(SIGINT, NULL, &sint) == 0);
		CHECK(sigaction(SIGUSR2, NULL, &susr2) == 0);
		printf("after execveat: SIGINT ignored=%d SIGUSR2 default=%d\n",
		       sint.sa_handler == SIG_IGN, susr2.sa_handler == SIG_DFL);
		return v && strcmp(v, "yes") == 0 ? 5 : 6;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	wait_groups();
	exec_at("/proc/self/exe");
	shebang();
	clone3_calls();
	epoll_pwait2_calls();
	alarm_to_unblocking_thread();
	sleeps_not_cut_short();
	return 0;
}
