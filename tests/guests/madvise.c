/* madvise(MADV_DONTNEED) zeroes anonymous private pages; MADV_WILLNEED and
 * MADV_NORMAL succeed; bad advice is EINVAL. msync on a MAP_SHARED file
 * mapping makes the data visible through read(); bad msync flags are EINVAL. */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>

int main(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char *a = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(a != MAP_FAILED);
	memset(a, 0x77, 4 * pg);
	printf("dontneed=%d\n", madvise(a + pg, 2 * pg, MADV_DONTNEED));
	printf("after: p0=%#x p1=%#x p2=%#x p3=%#x\n", a[0], a[pg], a[2 * pg + 7], a[3 * pg]);
	printf("willneed=%d normal=%d\n", madvise(a, 4 * pg, MADV_WILLNEED), madvise(a, 4 * pg, MADV_NORMAL));
	EXPECT_ERR("bad_advice", madvise(a, pg, 12345));
	EXPECT_ERR("unaligned", madvise(a + 1, pg, MADV_NORMAL));
	munmap(a, 4 * pg);

	/* Shared file mapping + msync. */
	char dir[64], path[128];
	make_tmpdir("madvise", dir, sizeof dir);
	snprintf(path, sizeof path, "%s/f", dir);
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, 2 * pg) == 0);
	char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED);
	memcpy(m + 100, "shared-data", 11);
	printf("msync=%d\n", msync(m, 2 * pg, MS_SYNC));
	char buf[12] = { 0 };
	CHECK(pread(fd, buf, 11, 100) == 11);
	printf("file_sees=%s\n", buf);
	/* And the other direction: write() shows up in the mapping. */
	CHECK(pwrite(fd, "via-write", 9, pg) == 9);
	printf("mapping_sees=%.9s\n", m + pg);
	EXPECT_ERR("msync_bad_flags", msync(m, pg, MS_SYNC | MS_ASYNC));
	EXPECT_ERR("msync_unaligned", msync(m + 1, pg, MS_SYNC));
	munmap(m, 2 * pg);
	close(fd);
	unlink(path);
	rmdir(dir);
	return 0;
}
