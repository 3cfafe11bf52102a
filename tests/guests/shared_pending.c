/* Process-directed signals are pending on the process (Linux's
 * shared_pending): main and THREADS threads all block SIGUSR1; another
 * process kill()s it; rt_sigpending in every thread shows it; one thread
 * takes it with rt_sigtimedwait (the others then show nothing). Again: one
 * thread unblocks it and runs the handler, once. With "ticks", the second
 * signal stays pending across TICKS lines "tick N" 100 ms apart (where a
 * checkpoint comes) before every thread looks at it. */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#define THREADS 4
#define TICKS 20

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
/* Whose turn it is (1..THREADS), and what that turn is to do. */
static int turn, action;
static int done_turns;
static volatile sig_atomic_t hits, hit_by;
static __thread int me;

enum { LOOK = 1, TAKE_WAIT, TAKE_UNBLOCK };

static void on_usr1(int s)
{
	(void)s;
	hits++;
	hit_by = me;
}

static int pending_usr1(void)
{
	sigset_t p;
	CHECK(sigpending(&p) == 0);
	return sigismember(&p, SIGUSR1);
}

static void act(int what)
{
	if (what == LOOK) {
		printf("thread %d: pending %d\n", me, pending_usr1());
	} else if (what == TAKE_WAIT) {
		sigset_t s;
		sigemptyset(&s);
		sigaddset(&s, SIGUSR1);
		struct timespec zero = {0, 0};
		siginfo_t si;
		int r = sigtimedwait(&s, &si, &zero);
		printf("thread %d: sigtimedwait %s from sender %d\n", me,
		       r == SIGUSR1 ? "SIGUSR1" : errname(errno), r == SIGUSR1 && si.si_code == SI_USER);
	} else {
		sigset_t s;
		sigemptyset(&s);
		sigaddset(&s, SIGUSR1);
		CHECK(pthread_sigmask(SIG_UNBLOCK, &s, NULL) == 0);
		CHECK(pthread_sigmask(SIG_BLOCK, &s, NULL) == 0);
		printf("thread %d: unblocked, handler ran %d times, in thread %d\n", me, (int)hits,
		       (int)hit_by);
	}
}

static void *thread_main(void *arg)
{
	me = (int)(long)arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (turn != me && turn >= 0)
			pthread_cond_wait(&cv, &mu);
		if (turn < 0)
			break;
		act(action);
		turn = 0;
		done_turns++;
		pthread_cond_broadcast(&cv);
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

/* Has thread `who` (0: main) do `what`, then waits until it has. */
static void in_thread(int who, int what)
{
	if (who == 0) {
		act(what);
		return;
	}
	pthread_mutex_lock(&mu);
	int before = done_turns;
	turn = who;
	action = what;
	pthread_cond_broadcast(&cv);
	while (done_turns == before)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
}

static void everyone_looks(void)
{
	for (int i = 0; i <= THREADS; i++)
		in_thread(i, LOOK);
}

static void kill_from_another_process(void)
{
	pid_t parent = getpid();
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0)
		_exit(kill(parent, SIGUSR1) == 0 ? 0 : 1);
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	int ticks = argc > 1 && strcmp(argv[1], "ticks") == 0;
	struct sigaction sa = {.sa_handler = on_usr1};
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	CHECK(sigprocmask(SIG_BLOCK, &usr1, NULL) == 0);
	pthread_t th[THREADS];
	for (long i = 0; i < THREADS; i++)
		CHECK(pthread_create(&th[i], NULL, thread_main, (void *)(i + 1)) == 0);

	kill_from_another_process();
	printf("round 1\n");
	everyone_looks();
	in_thread(2, TAKE_WAIT);
	in_thread(4, TAKE_WAIT);
	everyone_looks();

	kill_from_another_process();
	printf("round 2\n");
	if (ticks) {
		for (int i = 1; i <= TICKS; i++) {
			struct timespec ts = {0, 100000000};
			while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
				;
			printf("tick %d\n", i);
		}
	}
	everyone_looks();
	in_thread(3, TAKE_UNBLOCK);
	in_thread(1, TAKE_UNBLOCK);
	everyone_looks();
	printf("handler ran %d times\n", (int)hits);

	pthread_mutex_lock(&mu);
	turn = -1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	printf("done\n");
	return 0;
}
