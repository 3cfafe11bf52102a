/* mremap: growing in place or by moving (MREMAP_MAYMOVE) keeps the data
 * and zero-fills the new tail; shrinking; MREMAP_FIXED moves to a chosen
 * address; growing without MAYMOVE when the next page is taken is ENOMEM. */
#define _GNU_SOURCE
#include "common.h"
#include <sys/mman.h>

int main(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char *a = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(a != MAP_FAILED);
	fill_pattern(a, 2 * pg, 3);
	unsigned long long h = fnv1a(FNV_INIT, a, 2 * pg);

	/* Grow to 64 pages, allowed to move. */
	unsigned char *b = mremap(a, 2 * pg, 64 * pg, MREMAP_MAYMOVE);
	CHECK(b != MAP_FAILED);
	int tail_zero = 1;
	for (long i = 2 * pg; i < 64 * pg; i++)
		tail_zero &= b[i] == 0;
	printf("grow: data_kept=%d tail_zero=%d\n", fnv1a(FNV_INIT, b, 2 * pg) == h, tail_zero);
	b[64 * pg - 1] = 9;

	/* Shrink in place. */
	unsigned char *c = mremap(b, 64 * pg, 2 * pg, 0);
	printf("shrink_in_place=%d data_kept=%d\n", c == b, fnv1a(FNV_INIT, c, 2 * pg) == h);

	/* Block the page after c, then growing without MAYMOVE must fail. */
	unsigned char *blk = mmap(c + 2 * pg, pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	CHECK(blk == c + 2 * pg);
	EXPECT_ERR("grow_blocked", mremap(c, 2 * pg, 3 * pg, 0) == MAP_FAILED ? -1 : 0);

	/* Move to a fixed destination: reserve it first, then MREMAP_FIXED. */
	unsigned char *dst = mmap(NULL, 8 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(dst != MAP_FAILED);
	unsigned char *d = mremap(c, 2 * pg, 4 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, dst + 4 * pg);
	printf("fixed_move_at_dest=%d data_kept=%d tail_zero=%d\n", d == dst + 4 * pg,
	       fnv1a(FNV_INIT, d, 2 * pg) == h, d[3 * pg] == 0);
	/* The old range is gone: mprotect on it reports ENOMEM. */
	EXPECT_ERR("old_range_unmapped", mprotect(c, pg, PROT_READ));

	EXPECT_ERR("fixed_without_maymove", mremap(d, pg, pg, MREMAP_FIXED, dst) == MAP_FAILED ? -1 : 0);
	EXPECT_ERR("unaligned", mremap(d + 1, pg, 2 * pg, MREMAP_MAYMOVE) == MAP_FAILED ? -1 : 0);
	EXPECT_ERR("zero_new_size", mremap(d, pg, 0, MREMAP_MAYMOVE) == MAP_FAILED ? -1 : 0);
	munmap(dst, 8 * pg);
	munmap(blk, pg);
	return 0;
}
