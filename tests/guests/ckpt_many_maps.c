/* Checkpoint workload: ckpt_many_maps N — N one-page private mappings,
 * read-only and read-write in turn (none merges with its neighbours),
 * each holding a byte of its own; then every 100 ms, 12 times,
 *   tick K
 * or, if any is wrong, "tick K bad B", where B counts the mappings whose byte, protection or place is not
 * what was made (the mprotect of a read-only one to PROT_READ again
 * fails if it is gone), then "done". */
#define _GNU_SOURCE
#include "common.h"
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096L

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	long n = atol(argv[1]);
	char *base = mmap(NULL, n * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(base != MAP_FAILED);
	CHECK(munmap(base, n * PAGE) == 0);
	for (long i = 0; i < n; i++) {
		char *p = mmap(base + i * PAGE, PAGE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		CHECK(p == base + i * PAGE);
		*p = (char)(i * 7 + 1);
		if (i % 2)
			CHECK(mprotect(p, PAGE, PROT_READ) == 0);
	}
	struct timespec tick = {0, 100 * 1000 * 1000};
	for (int k = 0; k < 12; k++) {
		long bad = 0;
		for (long i = 0; i < n; i++) {
			char *p = base + i * PAGE;
			bad += *p != (char)(i * 7 + 1);
			if (i % 2)
				bad += mprotect(p, PAGE, PROT_READ) != 0;
		}
		if (bad)
			printf("tick %d bad %ld\n", k, bad);
		else
			printf("tick %d\n", k);
		fflush(stdout);
		nanosleep(&tick, NULL);
	}
	printf("done\n");
	return 0;
}
