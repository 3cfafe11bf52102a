/* Condition variables under contention: worker threads wait in turn on one
 * condition variable and a mutex, and each broadcast hands the waiters from
 * the condition variable to the mutex (musl requeues them with
 * FUTEX_REQUEUE, glibc wakes them), thousands of times. A wake-up lost in
 * the hand-over hangs the program; a wrong count shows in its output. */
#include <pthread.h>
#include <stdio.h>

#include "common.h"

#define THREADS 4
#define ROUNDS 2000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long turn;
static long passes[THREADS];

static void *worker(void *arg)
{
	long id = (long)arg;
	for (long r = 0; r < ROUNDS; r++) {
		pthread_mutex_lock(&lock);
		/* Each thread takes every THREADS-th turn, in order. */
		while (turn % THREADS != id)
			pthread_cond_wait(&cond, &lock);
		turn++;
		passes[id]++;
		pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

int main(void)
{
	pthread_t th[THREADS];
	for (long i = 0; i < THREADS; i++)
		CHECK(pthread_create(&th[i], NULL, worker, (void *)i) == 0);
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(th[i], NULL) == 0);
	printf("turns=%ld", turn);
	for (int i = 0; i < THREADS; i++)
		printf(" passes[%d]=%ld", i, passes[i]);
	printf("\n");
	return 0;
}
