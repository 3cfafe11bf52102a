/* PIDFD_THREAD pidfds (Linux 6.9) and pidfd_send_signal's scopes: a pidfd
 * of one thread shows O_EXCL in F_GETFL and fdinfo, signals sent through
 * it go to that thread (through a process pidfd to any thread, with
 * PIDFD_SIGNAL_THREAD to the leader, with PIDFD_SIGNAL_PROCESS_GROUP to
 * the group), it polls readable when that thread ends while the process
 * goes on, and then it names nothing (Pid -1, ESRCH). */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#define PIDFD_THREAD_FLAG O_EXCL
#define SIGNAL_THREAD 1
#define SIGNAL_THREAD_GROUP 2
#define SIGNAL_PROCESS_GROUP 4

static volatile pid_t worker_tid;
static volatile int go_exit;
static volatile sig_atomic_t in_worker, in_main;
static __thread int is_worker;

static void on_usr1(int s)
{
	(void)s;
	if (is_worker)
		in_worker++;
	else
		in_main++;
}

static void *worker(void *a)
{
	(void)a;
	is_worker = 1;
	worker_tid = (pid_t)syscall(SYS_gettid);
	while (!go_exit)
		usleep(1000);
	return NULL;
}

static int ready_now(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static long send(int fd, int sig, unsigned flags)
{
	return syscall(SYS_pidfd_send_signal, fd, sig, NULL, flags);
}

/* Sends SIGUSR1 through fd and says which thread's handler ran (the
 * worker takes it on its next pass through the kernel). */
static void send_and_see(const char *what, int fd, unsigned flags)
{
	in_worker = in_main = 0;
	long r = send(fd, SIGUSR1, flags);
	for (int i = 0; i < 5000 && in_worker + in_main == 0; i++)
		usleep(1000);
	printf("%s: %s, worker %d main %d\n", what, r == 0 ? "sent" : errname(errno),
	       (int)in_worker, (int)in_main);
}

/* fdinfo's Pid line, as "the thread's", "the process's", "-1" or "other". */
static const char *fdinfo_pid(int fd, pid_t thread)
{
	char path[64], line[128];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	if (!f)
		return errname(errno);
	long pid = -2;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "Pid: %ld", &pid) == 1)
			break;
	fclose(f);
	return pid == thread ? "the thread's" : pid == getpid() ? "the process's" :
	       pid == -1 ? "-1" : "other";
}

int main(void)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, worker, NULL) == 0);
	while (!worker_tid)
		usleep(100);

	int tf = (int)syscall(SYS_pidfd_open, worker_tid, PIDFD_THREAD_FLAG);
	CHECK(tf >= 0);
	printf("thread pidfd: F_GETFL O_EXCL %d, fdinfo Pid %s\n",
	       (fcntl(tf, F_GETFL) & O_EXCL) != 0, fdinfo_pid(tf, worker_tid));
	int lf = (int)syscall(SYS_pidfd_open, getpid(), PIDFD_THREAD_FLAG);
	int pf = (int)syscall(SYS_pidfd_open, getpid(), 0);
	CHECK(lf >= 0 && pf >= 0);
	printf("pidfd_open(unknown flag): %s\n",
	       syscall(SYS_pidfd_open, getpid(), O_EXCL << 1) < 0 ? errname(errno) : "ok");
	printf("pidfd_open(no such thread, PIDFD_THREAD): %s\n",
	       syscall(SYS_pidfd_open, 999999, PIDFD_THREAD_FLAG) < 0 ? errname(errno) : "ok");

	send_and_see("to the worker's pidfd", tf, 0);
	send_and_see("to the leader's thread pidfd", lf, 0);
	send_and_see("PIDFD_SIGNAL_THREAD to the process pidfd", pf, SIGNAL_THREAD);
	printf("PIDFD_SIGNAL_THREAD_GROUP through the worker's pidfd: %s\n",
	       send(tf, 0, SIGNAL_THREAD_GROUP) == 0 ? "sent" : errname(errno));
	printf("unknown flag: %s\n", send(tf, SIGUSR1, 8) < 0 ? errname(errno) : "sent");
	printf("two scopes: %s\n", send(tf, SIGUSR1, 3) < 0 ? errname(errno) : "sent");
	printf("two scopes on a bad fd: %s\n", send(-1, SIGUSR1, 3) < 0 ? errname(errno) : "sent");

	siginfo_t si;
	printf("waitid on the worker's pidfd: %s\n",
	       waitid(P_PIDFD, tf, &si, WEXITED | WNOHANG) < 0 ? errname(errno) : "ok");
	printf("worker's pidfd readable while it runs: %d\n", ready_now(tf));
	go_exit = 1;
	CHECK(pthread_join(th, NULL) == 0);
	struct pollfd p = { tf, POLLIN, 0 };
	printf("worker's pidfd readable after its end: %d\n", poll(&p, 1, 5000) == 1);
	printf("process pidfd readable: %d, leader's thread pidfd readable: %d\n", ready_now(pf),
	       ready_now(lf));
	const char *gone = fdinfo_pid(tf, worker_tid);
	for (int i = 0; i < 5000 && strcmp(gone, "-1"); i++) {
		usleep(1000);
		gone = fdinfo_pid(tf, worker_tid);
	}
	printf("worker's pidfd after its end: fdinfo Pid %s, send %s\n", gone,
	       send(tf, SIGUSR1, 0) < 0 ? errname(errno) : "sent");
	printf("leader's thread pidfd: fdinfo Pid %s\n", fdinfo_pid(lf, worker_tid));

	pid_t c = fork();
	if (c == 0) {
		setpgid(0, 0);
		for (;;)
			pause();
	}
	while (getpgid(c) != c)
		usleep(1000);
	int cf = (int)syscall(SYS_pidfd_open, c, 0);
	long r = send(cf, SIGTERM, SIGNAL_PROCESS_GROUP);
	int st;
	CHECK(waitpid(c, &st, 0) == c);
	printf("PIDFD_SIGNAL_PROCESS_GROUP: %s, child ended by signal %d\n",
	       r == 0 ? "sent" : errname(errno), WIFSIGNALED(st) ? WTERMSIG(st) : -1);
	return 0;
}
