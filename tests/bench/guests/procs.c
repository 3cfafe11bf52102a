/* Benchmark guest: procs MODE N
 *
 * MODE is one of
 *   fork      fork, the child _exits, the parent waitpids
 *   forkexec  fork, the child execs /bin/true, the parent waitpids
 *   pipe      one byte there and back between two processes over two pipes
 *   futex     a futex wake/wait round trip between two threads
 * and prints the cost per iteration, measured inside the guest with
 * CLOCK_MONOTONIC:
 *   MODE iterations=N total_ns=T ns_per_op=X.Y
 * Build: gcc -O2 -static -pthread. */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void fork_wait(int exec)
{
	pid_t c = fork();
	if (c < 0)
		die("fork");
	if (c == 0) {
		if (exec) {
			char *args[] = { "/bin/true", NULL };
			execv(args[0], args);
		}
		_exit(0);
	}
	int st;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die("waitpid");
}

static atomic_int word;
static long rounds;

static void fwait(int val)
{
	while (atomic_load(&word) == val)
		syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void fwake(int val)
{
	atomic_store(&word, val);
	syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *ponger(void *arg)
{
	(void)arg;
	for (long i = 0; i < rounds; i++) {
		fwait(0);
		fwake(0);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3 || atol(argv[2]) <= 0) {
		fprintf(stderr, "usage: %s fork|forkexec|pipe|futex N\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	long n = atol(argv[2]);
	long long t0 = 0, t1 = 0;
	if (!strcmp(mode, "fork") || !strcmp(mode, "forkexec")) {
		int exec = !strcmp(mode, "forkexec");
		fork_wait(exec); /* warm-up */
		t0 = mono_ns();
		for (long i = 0; i < n; i++)
			fork_wait(exec);
		t1 = mono_ns();
	} else if (!strcmp(mode, "pipe")) {
		int there[2], back[2];
		if (pipe(there) || pipe(back))
			die("pipe");
		pid_t c = fork();
		if (c == 0) {
			char b;
			close(there[1]);
			close(back[0]);
			while (read(there[0], &b, 1) == 1)
				if (write(back[1], &b, 1) != 1)
					_exit(1);
			_exit(0);
		}
		close(there[0]);
		close(back[1]);
		char b = 'x';
		t0 = mono_ns();
		for (long i = 0; i < n; i++)
			if (write(there[1], &b, 1) != 1 || read(back[0], &b, 1) != 1)
				die("pipe round trip");
		t1 = mono_ns();
		close(there[1]);
		waitpid(c, NULL, 0);
	} else if (!strcmp(mode, "futex")) {
		rounds = n;
		pthread_t th;
		if (pthread_create(&th, NULL, ponger, NULL))
			die("pthread_create");
		t0 = mono_ns();
		for (long i = 0; i < n; i++) {
			fwake(1);
			fwait(1);
		}
		t1 = mono_ns();
		pthread_join(th, NULL);
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	printf("%s iterations=%ld total_ns=%lld ns_per_op=%.1f\n", mode, n, t1 - t0,
	       (double)(t1 - t0) / (double)n);
	return 0;
}
