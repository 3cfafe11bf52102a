/* Big-memory checkpoint workload: ckpt_big [MiB=256]
 *
 * Fills MiB mebibytes, every page of it, with a non-zero incompressible
 * pattern (so a statefile must store all of it and takes a measurable time
 * to write), prints
 *   ready mib=N checksum=HEX
 * and then every 50 ms
 *   tick=N
 * forever. Before each tick it re-checks one page (a different one each
 * time) against the pattern, so memory damaged by a checkpoint or a restore
 * stops the program with a CHECK failure instead of ticking on. */
#include <sys/mman.h>
#include "common.h"
#include <time.h>

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 256;
	CHECK(mib > 0 && mib <= 4096);

	const size_t pg = 4096, size = (size_t)mib << 20, pages = size / pg;
	unsigned char *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	unsigned long long h = FNV_INIT;
	for (size_t p = 0; p < pages; p++) {
		fill_pattern(buf + p * pg, pg, (unsigned)p + 1);
		h = fnv1a(h, buf + p * pg, 64);
	}
	printf("ready mib=%ld checksum=%016llx\n", mib, h);
	fflush(stdout);

	unsigned char want[4096];
	for (long n = 0;; n++) {
		size_t p = ((size_t)n * 7919) % pages;
		fill_pattern(want, pg, (unsigned)p + 1);
		CHECK(memcmp(want, buf + p * pg, pg) == 0);
		printf("tick=%ld\n", n);
		fflush(stdout);
		struct timespec req = { 0, 50 * 1000 * 1000 };
		while (nanosleep(&req, &req) != 0 && errno == EINTR)
			;
	}
}
