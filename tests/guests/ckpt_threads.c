/* Two-thread checkpoint workload: ckpt_threads [count=inf]
 *
 * The main thread starts one worker and waits for it in pthread_join; the
 * worker prints
 *   tick=N tid_differs=1
 * every 100 ms (tid_differs says the worker's gettid is not the process's
 * pid) and stops after `count` lines (forever if absent). A checkpoint
 * therefore holds two tasks: the leader blocked in a futex wait, the
 * worker in nanosleep. Before that it leaves five bytes unread in a pipe
 * (both ends open) and a small file open in /tmp, so the statefile holds
 * a pipe, its two open ends and a tmpfs file too. Small on purpose: its
 * statefiles are fuzz seeds. */
#include "common.h"
#include <pthread.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <time.h>

static long count = -1;

static void *worker(void *arg)
{
	(void)arg;
	int differs = (pid_t)syscall(SYS_gettid) != getpid();
	for (long n = 0; count < 0 || n < count; n++) {
		printf("tick=%ld tid_differs=%d\n", n, differs);
		fflush(stdout);
		struct timespec req = { 0, 100 * 1000 * 1000 };
		while (nanosleep(&req, &req) != 0 && errno == EINTR)
			;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		count = atol(argv[1]);
	int p[2];
	CHECK(pipe(p) == 0);
	CHECK(write(p[1], "hello", 5) == 5);
	int fd = open("/tmp/ckpt_threads.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(write(fd, "kept open\n", 10) == 10);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	return 0;
}
