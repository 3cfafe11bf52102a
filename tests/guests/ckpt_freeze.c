/* Freeze workload: ckpt_freeze [MiB=64] [passes=inf] [threads=1]
 *
 * Keeps writing all of its memory while a `cryo checkpoint --leave-running`
 * saves it, so that a statefile holding any page as it was after the
 * freeze instead of at it is caught.
 *
 * The buffer (MiB mebibytes) is rewritten pass after pass: pass P stores
 * H(P, j) into word j, chunk (page) by chunk in order, so the buffer's
 * whole contents follow from (P, c), the pass and the next chunk, which
 * the program keeps in registers — saved at the freeze with everything
 * else. One 64 KiB group of chunks in four is not stored by the program
 * but read(2) from a pipe it has just written the words into, a page at a
 * time (the Sentry writes that memory); every 32nd chunk also writes one
 * page of a 2 MiB file in /dev/shm (tmpfs, whose pages live in the
 * sandbox's memory file too): with pwrite(2) in even 64 KiB groups of the
 * file, through a MAP_SHARED mapping in odd ones. Both areas are 64 KiB
 * aligned, so that no group the Sentry writes shares a 64 KiB block (what
 * cryo thaws at once when the program writes a frozen page) with one the
 * program stores into: a Sentry write that skipped the freeze's check
 * cannot hide behind a neighbour's fault.
 *
 * At the end of each pass it checks the buffer and the file against what
 * they must hold and prints
 *   pass=P mem=HEX file=HEX
 * (or "BAD ..." and exits 1). Every 16 chunks it compares CLOCK_REALTIME
 * with CLOCK_MONOTONIC: a restored copy's monotonic clock goes on from the
 * freeze while the real-time one has moved on by however long the copy
 * was frozen (the test waits over a second before restoring), so a jump
 * of over 700 ms means "restored": it then checks its whole memory and
 * file against (P, c) at once — what the statefile held, rewritten at
 * most by the 16 chunks since the freeze — and prints
 *   restored pass=P chunk=C mem=HEX expect=HEX file=HEX fexpect=HEX
 * before going on. The original never prints that line.
 *
 * With threads > 1, each further thread rewrites an 8 MiB buffer of its
 * own the same way (its own salt in H, no pipe, no file), checks it at
 * the end of each of its passes (printing nothing, or "BAD thread=T ..."
 * and exiting 1), and when it sees the clock jump prints
 *   restored thread=T pass=P chunk=C mem=HEX expect=HEX
 * so that every thread of a frozen process is checked against where it
 * was frozen. */
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096
#define WORDS (PAGE / 8)
#define FILE_PAGES 512 /* 2 MiB */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ULL;
	x ^= x >> 27;
	x *= 0x81dadef4bc2dd44dULL;
	x ^= x >> 33;
	return x;
}

/* Word j of a buffer salted `salt` after pass P. */
static uint64_t H(uint64_t salt, uint64_t pass, uint64_t j)
{
	return mix((pass * 0x9E3779B97F4A7C15ULL ^ j) + salt * 0xA24BAED4963EE407ULL);
}

/* Word k of file page f after pass P. */
static uint64_t G(uint64_t pass, uint64_t f, uint64_t k)
{
	return mix((pass + 0x5eed) * 0xD6E8FEB86659FD93ULL ^ (f * WORDS + k));
}

static uint64_t step(uint64_t h, uint64_t w)
{
	h = (h ^ w) * 1099511628211ULL;
	return h ^ (h >> 29);
}

static long long ns(clockid_t c)
{
	struct timespec t;
	CHECK(clock_gettime(c, &t) == 0);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* CLOCK_REALTIME - CLOCK_MONOTONIC, read between two monotonic reads at
 * most 10 ms apart: a thread descheduled between two reads on a loaded
 * machine would otherwise see a "jump" that is only its own delay. */
static long long clock_offset(void)
{
	for (;;) {
		long long m1 = ns(CLOCK_MONOTONIC);
		long long r = ns(CLOCK_REALTIME);
		long long m2 = ns(CLOCK_MONOTONIC);
		if (m2 - m1 <= 10000000LL)
			return r - m1 - (m2 - m1) / 2;
	}
}

/* One buffer rewritten pass after pass by one thread. */
struct area {
	uint64_t *buf;
	long chunks;
	uint64_t salt;
	int io; /* the main one: pipe and file too */
};

static uint64_t *map;
static int fd, pipefd[2];

/* The pass whose values chunk c holds before chunk `next` of pass P is
 * written. */
static uint64_t pass_of_chunk(uint64_t P, long next, long c)
{
	return c < next ? P : P - 1;
}

/* The pass file page f holds at that point (it is written at chunk 32f+1). */
static uint64_t pass_of_page(uint64_t P, long next, long f)
{
	return 32 * f + 1 < next ? P : P - 1;
}

static uint64_t mem_sum(const struct area *a)
{
	uint64_t h = FNV_INIT;
	for (long i = 0; i < a->chunks * WORDS; i++)
		h = step(h, a->buf[i]);
	return h;
}

static uint64_t mem_expect(const struct area *a, uint64_t P, long next)
{
	uint64_t h = FNV_INIT;
	for (long c = 0; c < a->chunks; c++) {
		uint64_t p = pass_of_chunk(P, next, c);
		for (long k = 0; k < WORDS; k++)
			h = step(h, H(a->salt, p, (uint64_t)(c * WORDS + k)));
	}
	return h;
}

static uint64_t file_sum(void)
{
	static uint64_t page[WORDS];
	uint64_t h = FNV_INIT;
	for (long f = 0; f < FILE_PAGES; f++) {
		CHECK(pread(fd, page, PAGE, f * PAGE) == PAGE);
		for (long k = 0; k < WORDS; k++)
			h = step(h, page[k]);
	}
	return h;
}

static uint64_t file_expect(uint64_t P, long next)
{
	uint64_t h = FNV_INIT;
	for (long f = 0; f < FILE_PAGES; f++) {
		uint64_t p = pass_of_page(P, next, f);
		for (long k = 0; k < WORDS; k++)
			h = step(h, G(p, (uint64_t)f, (uint64_t)k));
	}
	return h;
}

static void write_chunk(const struct area *a, uint64_t P, long c)
{
	uint64_t *dst = a->buf + c * WORDS;
	if (a->io && (c / 16) % 4 == 0) {
		static uint64_t tmp[WORDS];
		for (long k = 0; k < WORDS; k++)
			tmp[k] = H(a->salt, P, (uint64_t)(c * WORDS + k));
		CHECK(write(pipefd[1], tmp, PAGE) == PAGE);
		long got = 0;
		while (got < PAGE) {
			ssize_t n = read(pipefd[0], (char *)dst + got, PAGE - got);
			CHECK(n > 0);
			got += n;
		}
	} else {
		for (long k = 0; k < WORDS; k++)
			dst[k] = H(a->salt, P, (uint64_t)(c * WORDS + k));
	}
	if (a->io && c % 32 == 1 && (c - 1) / 32 < FILE_PAGES) {
		long f = (c - 1) / 32;
		if ((f / 16) % 2 == 0) {
			static uint64_t page[WORDS];
			for (long k = 0; k < WORDS; k++)
				page[k] = G(P, (uint64_t)f, (uint64_t)k);
			CHECK(pwrite(fd, page, PAGE, f * PAGE) == PAGE);
		} else {
			for (long k = 0; k < WORDS; k++)
				map[f * WORDS + k] = G(P, (uint64_t)f, (uint64_t)k);
		}
	}
}

/* A 64 KiB-aligned mapping of len bytes (of fd, shared, or anonymous). */
static void *map_aligned(size_t len, int fd)
{
	const size_t align = 64 * 1024;
	char *r = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(r != MAP_FAILED);
	char *at = (char *)(((uintptr_t)r + align - 1) & ~(uintptr_t)(align - 1));
	int flags = MAP_FIXED | (fd >= 0 ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS);
	void *m = mmap(at, len, PROT_READ | PROT_WRITE, flags, fd, 0);
	CHECK(m == at);
	return m;
}

/* Whether CLOCK_REALTIME jumped against CLOCK_MONOTONIC since `*offset`
 * (which is then reset): the process was frozen and restored. */
static int restored(long long *offset)
{
	long long now = clock_offset();
	if (now - *offset > 700000000LL || *offset - now > 700000000LL) {
		*offset = now;
		return 1;
	}
	return 0;
}

/* A further thread's passes over its own area (see the top). */
static void *rewriter(void *arg)
{
	const struct area *a = arg;
	long long offset = clock_offset();
	for (uint64_t P = 1;; P++) {
		for (long c = 0; c < a->chunks; c++) {
			if (c % 16 == 0 && restored(&offset)) {
				uint64_t m = mem_sum(a), me = mem_expect(a, P, c);
				printf("restored thread=%llu pass=%llu chunk=%ld mem=%016llx expect=%016llx\n",
				       (unsigned long long)a->salt, (unsigned long long)P, c,
				       (unsigned long long)m, (unsigned long long)me);
				fflush(stdout);
				offset = clock_offset();
			}
			write_chunk(a, P, c);
		}
		uint64_t m = mem_sum(a), me = mem_expect(a, P, a->chunks);
		if (m != me) {
			printf("BAD thread=%llu pass=%llu mem=%016llx expect=%016llx\n",
			       (unsigned long long)a->salt, (unsigned long long)P,
			       (unsigned long long)m, (unsigned long long)me);
			fflush(stdout);
			exit(1);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 64;
	long passes = argc > 2 ? atol(argv[2]) : -1;
	long threads = argc > 3 ? atol(argv[3]) : 1;
	struct area main_area = { NULL, mib * 256, 0, 1 };
	const struct area *a = &main_area;
	/* Every file page is written once a pass. */
	CHECK(main_area.chunks >= 32 * FILE_PAGES);
	CHECK(threads >= 1 && threads <= 16);
	main_area.buf = map_aligned((size_t)main_area.chunks * PAGE, -1);
	CHECK(pipe(pipefd) == 0);
	fd = open("/dev/shm/ckpt_freeze", O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, FILE_PAGES * PAGE) == 0);
	map = map_aligned(FILE_PAGES * PAGE, fd);

	/* Pass 0 fills everything. */
	for (long c = 0; c < a->chunks; c++)
		write_chunk(a, 0, c);
	static struct area others[16];
	for (long t = 1; t < threads; t++) {
		others[t] = (struct area){ map_aligned(8 << 20, -1), 2048, (uint64_t)t, 0 };
		for (long c = 0; c < others[t].chunks; c++)
			write_chunk(&others[t], 0, c);
		pthread_t th;
		CHECK(pthread_create(&th, NULL, rewriter, &others[t]) == 0);
	}
	long long offset = clock_offset();
	for (uint64_t P = 1; passes < 0 || (long)P <= passes; P++) {
		for (long c = 0; c < a->chunks; c++) {
			if (c % 16 == 0 && restored(&offset)) {
				uint64_t m = mem_sum(a), me = mem_expect(a, P, c);
				uint64_t f = file_sum(), fe = file_expect(P, c);
				printf("restored pass=%llu chunk=%ld mem=%016llx expect=%016llx file=%016llx fexpect=%016llx\n",
				       (unsigned long long)P, c, (unsigned long long)m,
				       (unsigned long long)me, (unsigned long long)f,
				       (unsigned long long)fe);
				fflush(stdout);
				offset = clock_offset();
			}
			write_chunk(a, P, c);
		}
		uint64_t m = mem_sum(a), me = mem_expect(a, P, a->chunks);
		uint64_t f = file_sum(), fe = file_expect(P, a->chunks);
		if (m != me || f != fe) {
			printf("BAD pass=%llu mem=%016llx expect=%016llx file=%016llx fexpect=%016llx\n",
			       (unsigned long long)P, (unsigned long long)m,
			       (unsigned long long)me, (unsigned long long)f,
			       (unsigned long long)fe);
			fflush(stdout);
			return 1;
		}
		printf("pass=%llu mem=%016llx file=%016llx\n", (unsigned long long)P,
		       (unsigned long long)m, (unsigned long long)f);
		fflush(stdout);
	}
	return 0;
}
