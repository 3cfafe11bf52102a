/* mmap: anonymous private memory is zeroed and writable; a private file
 * mapping is copy-on-write (writes never reach the file, and the file's
 * later contents show through untouched pages only); MAP_SHARED anonymous;
 * MAP_FIXED replaces part of an existing mapping; offsets must be page
 * aligned; munmap of a range in the middle splits the mapping. */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>

int main(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	printf("pagesize=%ld\n", pg);

	/* Anonymous private: zero-filled, then writable. */
	unsigned char *a = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(a != MAP_FAILED);
	int zero = 1;
	for (long i = 0; i < 4 * pg; i++)
		zero &= a[i] == 0;
	printf("anon_zeroed=%d page_aligned=%d\n", zero, ((unsigned long)a % pg) == 0);
	memset(a, 0x5a, 4 * pg);
	printf("anon_written=%d\n", a[4 * pg - 1] == 0x5a);

	/* MAP_FIXED over the second page: that page is fresh zeroes, the rest keeps its data. */
	unsigned char *f = mmap(a + pg, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	printf("fixed_at_requested=%d page0=%#x page1=%#x page2=%#x\n", f == a + pg, a[0], a[pg], a[2 * pg]);

	/* Unmapping the middle leaves both ends usable. */
	CHECK(munmap(a + pg, 2 * pg) == 0);
	printf("ends_after_hole=%#x,%#x\n", a[0], a[3 * pg]);
	CHECK(munmap(a, 4 * pg) == 0);

	/* A file with a known pattern, mapped private. */
	char dir[64], path[128];
	make_tmpdir("mmap", dir, sizeof dir);
	snprintf(path, sizeof path, "%s/f", dir);
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	CHECK(fd >= 0);
	unsigned char *pat = malloc(3 * pg);
	fill_pattern(pat, 3 * pg, 7);
	CHECK(write(fd, pat, 3 * pg) == 3 * pg);
	unsigned char *m = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(m != MAP_FAILED);
	printf("file_map_matches=%d\n", memcmp(m, pat, 3 * pg) == 0);
	m[10] ^= 0xff; /* copy-on-write: the file must not change */
	unsigned char c;
	CHECK(pread(fd, &c, 1, 10) == 1);
	printf("cow_file_unchanged=%d mapping_changed=%d\n", c == pat[10], m[10] == (pat[10] ^ 0xff));
	munmap(m, 3 * pg);

	/* Mapping at an offset, and past EOF within the last page reads zero. */
	unsigned char *o = mmap(NULL, pg, PROT_READ, MAP_PRIVATE, fd, pg);
	CHECK(o != MAP_FAILED);
	printf("offset_map_matches=%d\n", memcmp(o, pat + pg, pg) == 0);
	munmap(o, pg);
	CHECK(ftruncate(fd, 2 * pg + 100) == 0);
	unsigned char *t = mmap(NULL, 3 * pg, PROT_READ, MAP_PRIVATE, fd, 0);
	CHECK(t != MAP_FAILED);
	printf("tail_zero_past_eof=%d\n", t[2 * pg + 100] == 0 && t[3 * pg - 1] == 0);
	munmap(t, 3 * pg);

	EXPECT_ERR("unaligned_offset", mmap(NULL, pg, PROT_READ, MAP_PRIVATE, fd, 1) == MAP_FAILED ? -1 : 0);
	EXPECT_ERR("zero_length", mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED ? -1 : 0);
	EXPECT_ERR("bad_fd", mmap(NULL, pg, PROT_READ, MAP_PRIVATE, 999, 0) == MAP_FAILED ? -1 : 0);
	EXPECT_ERR("no_share_type", mmap(NULL, pg, PROT_READ, MAP_ANONYMOUS, -1, 0) == MAP_FAILED ? -1 : 0);
	close(fd);

	/* A read-only fd cannot back a writable shared mapping. */
	int ro = open(path, O_RDONLY);
	EXPECT_ERR("shared_write_on_rdonly", mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED ? -1 : 0);
	close(ro);

	/* MAP_SHARED anonymous: two views of the same pages via mremap(0) is
	 * Linux-specific, so just check it is zeroed and writable. */
	unsigned char *s = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(s != MAP_FAILED);
	printf("shared_anon_zero=%d\n", s[0] == 0 && s[2 * pg - 1] == 0);
	s[pg] = 42;
	printf("shared_anon_written=%d\n", s[pg]);
	munmap(s, 2 * pg);

	unlink(path);
	rmdir(dir);
	free(pat);
	return 0;
}
