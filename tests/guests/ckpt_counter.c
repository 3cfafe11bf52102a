/* Checkpoint workload: ckpt_counter [MiB=64] [file=/etc/passwd] [count=inf]
 *
 * Fills MiB mebibytes with a known pattern in which every fourth page is
 * left zero (so a statefile can skip them), opens `file` and reads part of
 * it so the fd sits at a non-zero offset, then every 100 ms prints
 *   counter=N checksum=HEX clock_back=0|1 fileoff=K
 * where checksum is recomputed over the whole buffer each time (memory
 * must survive a checkpoint/restore intact), clock_back says whether
 * CLOCK_MONOTONIC ever went backwards (it must not, across restore), and
 * fileoff is the fd's offset (fds must survive too). Stops after `count`
 * lines (forever if absent). The buffer is also mutated deterministically
 * each iteration so a restore from a stale image is detected. */
#include <sys/mman.h>
#include "common.h"
#include <fcntl.h>
#include <time.h>

/* FNV-1a-style hash over 64-bit words: fast enough to redo over 64 MiB
 * every iteration. */
static unsigned long long checksum(const unsigned char *buf, size_t size)
{
	unsigned long long h = FNV_INIT, w;
	for (size_t i = 0; i < size; i += sizeof w) {
		memcpy(&w, buf + i, sizeof w);
		h = (h ^ w) * 1099511628211ULL;
		h ^= h >> 29; /* the multiply alone never mixes high bits into low ones */
	}
	return h;
}

static long long mono_ns(void)
{
	struct timespec t;
	CHECK(clock_gettime(CLOCK_MONOTONIC, &t) == 0);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 64;
	const char *file = argc > 2 ? argv[2] : "/etc/passwd";
	long count = argc > 3 ? atol(argv[3]) : -1;
	CHECK(mib > 0 && mib <= 4096);

	const size_t pg = 4096, size = (size_t)mib << 20;
	/* Page-aligned (malloc's header would shift every "zero page" across a
	 * page boundary), so the zero pages really are whole zero pages. */
	unsigned char *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	for (size_t p = 0; p < size / pg; p++) {
		if (p % 4 == 3)
			memset(buf + p * pg, 0, pg); /* a quarter of the pages are zero */
		else
			fill_pattern(buf + p * pg, pg, (unsigned)p + 1);
	}

	int fd = open(file, O_RDONLY);
	CHECK(fd >= 0);
	char tmp[17];
	ssize_t got = read(fd, tmp, sizeof tmp);
	CHECK(got > 0);

	long long last = mono_ns();
	int clock_back = 0;
	for (long n = 0; count < 0 || n < count; n++) {
		/* Deterministic mutation: bump one byte in a non-zero page. */
		size_t page = ((size_t)n * 7919) % (size / pg);
		if (page % 4 == 3)
			page--;
		buf[page * pg + (size_t)n % pg]++;

		unsigned long long h = checksum(buf, size);
		long long now = mono_ns();
		clock_back |= now < last;
		last = now;
		printf("counter=%ld checksum=%016llx clock_back=%d fileoff=%ld\n", n, h, clock_back,
		       (long)lseek(fd, 0, SEEK_CUR));
		fflush(stdout);

		struct timespec req = { 0, 100 * 1000 * 1000 };
		while (nanosleep(&req, &req) != 0 && errno == EINTR)
			;
		long long after = mono_ns();
		clock_back |= after < now;
		last = after;
	}
	return 0;
}
