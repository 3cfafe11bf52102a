/* lazy_ticks [MiB=512] [STRIDE=16]: a program whose working set is small.
 *
 * Fills MiB mebibytes with a page-numbered pattern, then every 10 ms reads
 * one byte of every STRIDE-th MiB of it (its working set: MiB / STRIDE
 * pages, each in its own 1 MiB chunk of a statefile) and prints
 *   counter=N sum=HEX
 * So after a restore its first line comes as soon as it runs again and has
 * its working set, not after a pass over all its memory (tests/bench/
 * lazy.sh compares eager, lazy and lazy-with-prefetch restores by it).
 * Runs until killed. */
#include <sys/mman.h>
#include "common.h"
#include <time.h>

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 512;
	long stride = argc > 2 ? atol(argv[2]) : 16;
	CHECK(mib > 0 && mib <= 4096 && stride > 0);
	const size_t pg = 4096, size = (size_t)mib << 20;
	unsigned char *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	for (size_t p = 0; p < size / pg; p++)
		fill_pattern(buf + p * pg, pg, (unsigned)p + 1);
	for (long n = 0;; n++) {
		unsigned long long h = FNV_INIT;
		for (long m = 0; m < mib; m += stride)
			h = fnv1a(h, buf + ((size_t)m << 20), 8);
		printf("counter=%ld sum=%016llx\n", n, h);
		fflush(stdout);
		struct timespec req = { 0, 10 * 1000 * 1000 };
		while (nanosleep(&req, &req) != 0 && errno == EINTR)
			;
	}
}
