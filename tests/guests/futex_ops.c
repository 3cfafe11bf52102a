/* The futex operations glibc and older programs use beyond WAIT/WAKE,
 * compared with Linux: PI mutexes (FUTEX_LOCK_PI, UNLOCK_PI, TRYLOCK_PI)
 * under contention and their errors, robust mutexes whose owner thread
 * exits holding them (the kernel walks its robust list: EOWNERDEAD, and
 * a waiter blocked at the time is woken), FUTEX_WAKE_OP, the bitset waits
 * and FUTEX_CLOCK_REALTIME. */
#define _GNU_SOURCE
#include "common.h"
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

static long futex(uint32_t *uaddr, int op, uint32_t val, uintptr_t timeout, uint32_t *uaddr2,
		  uint32_t val3)
{
	long r = syscall(SYS_futex, uaddr, op, val, timeout, uaddr2, val3);
	return r < 0 ? -errno : r;
}

/* errname with the futex errors common.h leaves out. */
static const char *ename(int e)
{
	switch (e) {
	case EDEADLK: return "EDEADLK";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EOWNERDEAD: return "EOWNERDEAD";
	case EBUSY: return "EBUSY";
	default: return errname(e);
	}
}

static const char *res(long r)
{
	static char buf[32];
	if (r < 0)
		return ename((int)-r);
	snprintf(buf, sizeof buf, "%ld", r);
	return buf;
}

#define THREADS 8
#define ROUNDS 2000
static pthread_mutex_t pi_mutex;
static long counter;

static void *pi_worker(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		CHECK(pthread_mutex_lock(&pi_mutex) == 0);
		counter++;
		CHECK(pthread_mutex_unlock(&pi_mutex) == 0);
	}
	return NULL;
}

static pthread_mutex_t robust;
static atomic_int robust_state;

/* Takes the robust mutex and exits holding it. */
static void *robust_owner(void *arg)
{
	int linger = arg != NULL;
	CHECK(pthread_mutex_lock(&robust) == 0);
	atomic_store(&robust_state, 1);
	if (linger) {
		/* Exit only once the main thread is (most likely) blocked. */
		struct timespec d = { 0, 200 * 1000 * 1000 };
		nanosleep(&d, NULL);
	}
	return NULL;
}

static void robust_round(const char *what, int pi, int linger)
{
	pthread_mutexattr_t ma;
	CHECK(pthread_mutexattr_init(&ma) == 0);
	CHECK(pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST) == 0);
	if (pi)
		CHECK(pthread_mutexattr_setprotocol(&ma, PTHREAD_PRIO_INHERIT) == 0);
	CHECK(pthread_mutex_init(&robust, &ma) == 0);
	atomic_store(&robust_state, 0);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, robust_owner, linger ? (void *)1 : NULL) == 0);
	if (!linger)
		CHECK(pthread_join(th, NULL) == 0);
	else
		while (atomic_load(&robust_state) == 0)
			sched_yield();
	struct timespec deadline;
	CHECK(clock_gettime(CLOCK_REALTIME, &deadline) == 0);
	deadline.tv_sec += 5;
	int r = pthread_mutex_timedlock(&robust, &deadline);
	printf("%s: lock after the owner died: %s\n", what, ename(r));
	if (r == EOWNERDEAD) {
		CHECK(pthread_mutex_consistent(&robust) == 0);
		CHECK(pthread_mutex_unlock(&robust) == 0);
		printf("%s: relock: %s\n", what, ename(pthread_mutex_lock(&robust)));
		CHECK(pthread_mutex_unlock(&robust) == 0);
	}
	if (linger)
		CHECK(pthread_join(th, NULL) == 0);
	CHECK(pthread_mutex_destroy(&robust) == 0);
}

static uint32_t wait_word;
static atomic_int waiting;

static void *bitset_waiter(void *arg)
{
	uint32_t bits = (uint32_t)(uintptr_t)arg;
	atomic_fetch_add(&waiting, 1);
	long r = futex(&wait_word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, 0, 0, NULL, bits);
	CHECK(r == 0 || r == -EAGAIN);
	return NULL;
}

static void wait_until_queued(void)
{
	/* Time for the waiters to reach the kernel after saying they will. */
	struct timespec d = { 0, 100 * 1000 * 1000 };
	nanosleep(&d, NULL);
}

int main(void)
{
	/* PI mutexes under contention. */
	pthread_mutexattr_t ma;
	CHECK(pthread_mutexattr_init(&ma) == 0);
	CHECK(pthread_mutexattr_setprotocol(&ma, PTHREAD_PRIO_INHERIT) == 0);
	CHECK(pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK) == 0);
	CHECK(pthread_mutex_init(&pi_mutex, &ma) == 0);
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_create(&th[i], NULL, pi_worker, NULL) == 0);
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(th[i], NULL) == 0);
	printf("PI mutex counter: %ld (expected %d)\n", counter, THREADS * ROUNDS);
	CHECK(pthread_mutex_lock(&pi_mutex) == 0);
	printf("PI relock by owner: %s\n", ename(pthread_mutex_lock(&pi_mutex)));
	printf("PI trylock by owner: %s\n", ename(pthread_mutex_trylock(&pi_mutex)));
	CHECK(pthread_mutex_unlock(&pi_mutex) == 0);

	/* The raw PI operations and their errors. */
	uint32_t w = 0;
	int tid = (int)syscall(SYS_gettid);
	long r = futex(&w, FUTEX_LOCK_PI, 0, 0, NULL, 0);
	printf("LOCK_PI free: %s, word is tid: %s\n", res(r), w == (uint32_t)tid ? "yes" : "no");
	printf("TRYLOCK_PI own: %s\n", res(futex(&w, FUTEX_TRYLOCK_PI, 0, 0, NULL, 0)));
	printf("LOCK_PI own: %s\n", res(futex(&w, FUTEX_LOCK_PI, 0, 0, NULL, 0)));
	r = futex(&w, FUTEX_UNLOCK_PI, 0, 0, NULL, 0);
	printf("UNLOCK_PI: %s, word: %u\n", res(r), w);
	printf("UNLOCK_PI not owner: %s\n", res(futex(&w, FUTEX_UNLOCK_PI, 0, 0, NULL, 0)));
	w = 0x3ffffff0; /* a tid no thread has */
	printf("LOCK_PI dead owner: %s\n", res(futex(&w, FUTEX_LOCK_PI, 0, 0, NULL, 0)));
	printf("TRYLOCK_PI dead owner: %s\n", res(futex(&w, FUTEX_TRYLOCK_PI, 0, 0, NULL, 0)));
	w = FUTEX_OWNER_DIED;
	r = futex(&w, FUTEX_LOCK_PI, 0, 0, NULL, 0);
	printf("LOCK_PI owner died: %s, died bit kept: %s, tid set: %s\n", res(r),
	       (w & FUTEX_OWNER_DIED) ? "yes" : "no",
	       (w & FUTEX_TID_MASK) == (uint32_t)tid ? "yes" : "no");
	printf("misaligned LOCK_PI: %s\n",
	       res(futex((uint32_t *)((char *)&w + 1), FUTEX_LOCK_PI, 0, 0, NULL, 0)));

	/* Robust mutexes whose owner exits: plain and PI; owner gone before
	 * the lock, and a waiter blocked while the owner exits. */
	robust_round("robust", 0, 0);
	robust_round("robust PI", 1, 0);
	robust_round("robust, waiter blocked", 0, 1);
	robust_round("robust PI, waiter blocked", 1, 1);

	/* FUTEX_WAKE_OP: no waiters, then one waiter on each word. */
	uint32_t w1 = 0, w2 = 5;
	uint32_t add3_if_eq5 = FUTEX_OP(FUTEX_OP_ADD, 3, FUTEX_OP_CMP_EQ, 5);
	r = futex(&w1, FUTEX_WAKE_OP, 1, 1, &w2, add3_if_eq5);
	printf("WAKE_OP: %s, word2 %u\n", res(r), w2);
	uint32_t shift = FUTEX_OP(FUTEX_OP_OR, 4, FUTEX_OP_CMP_GT, 100) | (FUTEX_OP_OPARG_SHIFT << 28);
	r = futex(&w1, FUTEX_WAKE_OP, 1, 1, &w2, shift);
	printf("WAKE_OP or 1<<4: %s, word2 %u\n", res(r), w2);
	uint32_t neg = FUTEX_OP(FUTEX_OP_SET, 0xfff, FUTEX_OP_CMP_LT, 0);
	r = futex(&w1, FUTEX_WAKE_OP, 1, 1, &w2, neg);
	printf("WAKE_OP set -1: %s, word2 %d\n", res(r), (int)w2);
	printf("WAKE_OP bad op: %s\n", res(futex(&w1, FUTEX_WAKE_OP, 1, 1, &w2, 7u << 28)));
	printf("WAKE_OP bad cmp: %s\n", res(futex(&w1, FUTEX_WAKE_OP, 1, 1, &w2, 9u << 24)));
	printf("WAKE_OP bad addr2: %s\n",
	       res(futex(&w1, FUTEX_WAKE_OP, 1, 1, (uint32_t *)8, add3_if_eq5)));

	/* Bitsets: a wake of other bits wakes nobody. */
	wait_word = 0;
	atomic_store(&waiting, 0);
	pthread_t a, b;
	CHECK(pthread_create(&a, NULL, bitset_waiter, (void *)(uintptr_t)0x1) == 0);
	CHECK(pthread_create(&b, NULL, bitset_waiter, (void *)(uintptr_t)0x6) == 0);
	while (atomic_load(&waiting) < 2)
		sched_yield();
	wait_until_queued();
	printf("WAKE_BITSET 0x8: %s\n", res(futex(&wait_word, FUTEX_WAKE_BITSET | FUTEX_PRIVATE_FLAG, INT_MAX, 0, NULL, 0x8)));
	printf("WAKE_BITSET 0x2: %s\n", res(futex(&wait_word, FUTEX_WAKE_BITSET | FUTEX_PRIVATE_FLAG, INT_MAX, 0, NULL, 0x2)));
	printf("WAKE_BITSET any: %s\n", res(futex(&wait_word, FUTEX_WAKE_BITSET | FUTEX_PRIVATE_FLAG, INT_MAX, 0, NULL, FUTEX_BITSET_MATCH_ANY)));
	CHECK(pthread_join(a, NULL) == 0 && pthread_join(b, NULL) == 0);
	/* FUTEX_WAKE_OP waking a waiter on the second word. */
	atomic_store(&waiting, 0);
	CHECK(pthread_create(&a, NULL, bitset_waiter, (void *)(uintptr_t)FUTEX_BITSET_MATCH_ANY) == 0);
	while (atomic_load(&waiting) < 1)
		sched_yield();
	wait_until_queued();
	uint32_t set0_if_eq0 = FUTEX_OP(FUTEX_OP_SET, 0, FUTEX_OP_CMP_EQ, 0);
	printf("WAKE_OP with a waiter on word2: %s\n",
	       res(futex(&w1, FUTEX_WAKE_OP | FUTEX_PRIVATE_FLAG, 1, 1, &wait_word, set0_if_eq0)));
	CHECK(pthread_join(a, NULL) == 0);
	printf("WAIT_BITSET bitset 0: %s\n", res(futex(&wait_word, FUTEX_WAIT_BITSET, 0, 0, NULL, 0)));
	printf("WAKE_BITSET bitset 0: %s\n", res(futex(&wait_word, FUTEX_WAKE_BITSET, 1, 0, NULL, 0)));

	/* FUTEX_CLOCK_REALTIME: for the absolute waits only. */
	struct timespec past;
	CHECK(clock_gettime(CLOCK_REALTIME, &past) == 0);
	past.tv_sec -= 1;
	printf("WAIT_BITSET realtime past: %s\n",
	       res(futex(&wait_word, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, 0, (uintptr_t)&past, NULL, FUTEX_BITSET_MATCH_ANY)));
	struct timespec rel = { 0, 1000 };
	printf("WAIT realtime: %s\n",
	       res(futex(&wait_word, FUTEX_WAIT | FUTEX_CLOCK_REALTIME, 0, (uintptr_t)&rel, NULL, 0)));
	printf("WAKE realtime: %s\n", res(futex(&wait_word, FUTEX_WAKE | FUTEX_CLOCK_REALTIME, 1, 0, NULL, 0)));
	return 0;
}
