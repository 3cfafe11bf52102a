/* Threads: pthread_create/join, a mutex and condition variable shared by
 * several threads, thread-local storage, gettid differing per thread while
 * getpid stays, a detached thread, pthread_exit with a value, signals sent
 * to a specific thread with pthread_kill, and exit_group from a thread that
 * is not the main one (the process ends with its status). */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define N 6
#define ROUNDS 2000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long counter;
static int turn;
static __thread int tls_value;
static atomic_int distinct_tids;
static pid_t main_tid;
static volatile sig_atomic_t got_usr1_tid;

static void *adder(void *arg)
{
	long id = (long)arg;
	tls_value = (int)id * 100;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	if (tid != main_tid && getpid() == main_tid)
		atomic_fetch_add(&distinct_tids, 1);
	for (int i = 0; i < ROUNDS; i++) {
		pthread_mutex_lock(&lock);
		counter++;
		pthread_mutex_unlock(&lock);
	}
	/* Take turns in id order through the condition variable. */
	pthread_mutex_lock(&lock);
	while (turn != id)
		pthread_cond_wait(&cond, &lock);
	printf("turn %ld tls=%d\n", id, tls_value);
	turn++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	return (void *)(id * 2);
}

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1_tid = (sig_atomic_t)syscall(SYS_gettid);
}

static void *waiter(void *arg)
{
	(void)arg;
	/* Wait until the signal handler has run on this very thread. */
	pid_t me = (pid_t)syscall(SYS_gettid);
	while (got_usr1_tid != me)
		usleep(1000);
	return NULL;
}

static void *exiter(void *arg)
{
	(void)arg;
	pthread_exit((void *)42);
}

/* Threads share the working directory and umask (CLONE_FS). */
static void *chdirer(void *arg)
{
	(void)arg;
	CHECK(chdir("/tmp") == 0);
	umask(027);
	return NULL;
}

static void *ender(void *arg)
{
	(void)arg;
	fflush(stdout);
	/* exit() runs exit_group: the whole process ends with 5. */
	exit(5);
}

int main(void)
{
	main_tid = (pid_t)syscall(SYS_gettid);
	printf("main: tid_is_pid=%d\n", main_tid == getpid());
	tls_value = -1;
	pthread_t th[N];
	for (long i = 0; i < N; i++)
		CHECK(pthread_create(&th[i], NULL, adder, (void *)i) == 0);
	long sum = 0;
	for (int i = 0; i < N; i++) {
		void *ret;
		CHECK(pthread_join(th[i], &ret) == 0);
		sum += (long)ret;
	}
	printf("counter=%ld expected=%d joined_sum=%ld distinct_tids=%d main_tls=%d\n", counter, N * ROUNDS, sum,
	       atomic_load(&distinct_tids), tls_value);

	pthread_t e;
	void *ev;
	CHECK(pthread_create(&e, NULL, exiter, NULL) == 0);
	CHECK(pthread_join(e, &ev) == 0);
	printf("pthread_exit value=%ld\n", (long)ev);

	signal(SIGUSR1, on_usr1);
	pthread_t w;
	CHECK(pthread_create(&w, NULL, waiter, NULL) == 0);
	usleep(20000);
	CHECK(pthread_kill(w, SIGUSR1) == 0);
	CHECK(pthread_join(w, NULL) == 0);
	printf("pthread_kill: handled_on_other_thread=%d\n", got_usr1_tid != main_tid && got_usr1_tid != 0);

	CHECK(chdir("/") == 0);
	umask(022);
	pthread_t c;
	CHECK(pthread_create(&c, NULL, chdirer, NULL) == 0);
	CHECK(pthread_join(c, NULL) == 0);
	char cwd[64];
	CHECK(getcwd(cwd, sizeof cwd) != NULL);
	mode_t old = umask(022);
	printf("clone_fs: cwd=%s umask=%03o\n", cwd, (unsigned)old);

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t d;
	CHECK(pthread_create(&d, &attr, ender, NULL) == 0);
	for (;;)
		pause();
}
