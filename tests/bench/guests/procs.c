/* Benchmark guest: procs MODE N
 *
 * MODE is one of
 *   fork      fork, the child _exits, the parent waitpids
 *   forkexec  fork, the child execs /bin/true, the parent waitpids
 *   pipe      one byte there and back between two processes over two pipes
 *   futex     a futex wake/wait round trip between two threads
 *   bomb      a fork bomb (in its own process group, under this process
 *             as subreaper): every process forks until N exist, each then
 *             waits; the time until the last one runs, per process; then
 *             the group is killed and reaped
 * and prints the cost per iteration, measured inside the guest with
 * CLOCK_MONOTONIC:
 *   MODE iterations=N total_ns=T ns_per_op=X.Y
 * Build: gcc -O2 -static -pthread. */
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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
		fprintf(stderr, "usage: %s fork|forkexec|pipe|futex|bomb N\n", argv[0]);
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
	} else if (!strcmp(mode, "bomb")) {
		/* The bomb runs in a process group of its own under a child, so
		 * that it can be killed as a group: kill(-1) would also kill
		 * every other process of the host when run natively as root.
		 * This process is the subreaper that reaps them all. */
		atomic_long *made = mmap(NULL, 2 * sizeof *made, PROT_READ | PROT_WRITE,
					 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (made == MAP_FAILED)
			die("mmap");
		atomic_long *alive = made + 1;
		atomic_store(made, 1);
		atomic_store(alive, 1);
		if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
			die("PR_SET_CHILD_SUBREAPER");
		t0 = mono_ns();
		pid_t root = fork();
		if (root < 0)
			die("fork");
		if (root == 0) {
			if (setpgid(0, 0) != 0)
				_exit(1);
			/* Every process forks while the reservation count allows. */
			for (;;) {
				if (atomic_fetch_add(made, 1) >= n) {
					atomic_fetch_sub(made, 1);
					break;
				}
				pid_t c = fork();
				if (c < 0)
					_exit(1);
				if (c == 0)
					atomic_fetch_add(alive, 1);
			}
			for (;;)
				pause();
		}
		/* n processes in the bomb, the bomb's root included. */
		while (atomic_load(alive) < n) {
			if (waitpid(-1, NULL, WNOHANG) > 0)
				die("a bomb process ended early");
			usleep(100);
		}
		t1 = mono_ns();
		if (kill(-root, SIGKILL) != 0)
			die("kill");
		long reaped = 0;
		while (waitpid(-1, NULL, 0) > 0)
			reaped++;
		if (reaped != n)
			fprintf(stderr, "bomb: reaped %ld of %ld\n", reaped, n);
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	printf("%s iterations=%ld total_ns=%lld ns_per_op=%.1f\n", mode, n, t1 - t0,
	       (double)(t1 - t0) / (double)n);
	return 0;
}
