/* fallocate(2): allocation growing the size (mode 0) or not
 * (FALLOC_FL_KEEP_SIZE), FALLOC_FL_PUNCH_HOLE leaving zeros where bytes
 * were (within a page, across pages, past the end) and the size alone,
 * and the errors Linux gives: EINVAL for a bad range, EOPNOTSUPP for a
 * punch without KEEP_SIZE and unknown modes, EBADF without write access,
 * ESPIPE on a pipe. Run in /tmp (tmpfs under cryo) and in /var/tmp (the
 * overlay root; natively a disk file system: only what both support is
 * printed, sizes and bytes, not blocks). */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>

static void show(const char *label, int fd)
{
	struct stat st;
	CHECK(fstat(fd, &st) == 0);
	static unsigned char buf[3 * 4096 + 100];
	ssize_t n = pread(fd, buf, sizeof buf, 0);
	unsigned long long h = fnv1a(FNV_INIT, buf, n > 0 ? (size_t)n : 0);
	long zeros = 0;
	for (ssize_t i = 0; i < n; i++)
		zeros += buf[i] == 0;
	printf("%s: size=%ld read=%zd zeros=%ld fnv=%016llx\n", label, (long)st.st_size, n, zeros, h);
}

static void run_in(const char *where)
{
	char path[128];
	snprintf(path, sizeof path, "%s/cryo-guest-fallocate-XXXXXX", where);
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	printf("-- in %s\n", where);
	CHECK(write(fd, "0123456789", 10) == 10);
	EXPECT_ERR("grow", fallocate(fd, 0, 100, 5000));
	show("after_grow", fd);
	EXPECT_ERR("keep_size", fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 9000));
	show("after_keep_size", fd);
	static unsigned char pattern[3 * 4096 + 100];
	fill_pattern(pattern, sizeof pattern, 7);
	for (size_t i = 0; i < sizeof pattern; i++)
		pattern[i] |= 1; /* no zero bytes, so holes count */
	CHECK(pwrite(fd, pattern, sizeof pattern, 0) == (ssize_t)sizeof pattern);
	show("written", fd);
	EXPECT_ERR("punch_in_page", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 10, 20));
	show("after_punch_in_page", fd);
	EXPECT_ERR("punch_across", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4000, 5000));
	show("after_punch_across", fd);
	EXPECT_ERR("punch_past_end",
		   fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 3 * 4096, 100000));
	show("after_punch_past_end", fd);

	EXPECT_ERR("zero_len", fallocate(fd, 0, 0, 0));
	EXPECT_ERR("negative_offset", fallocate(fd, 0, -1, 10));
	EXPECT_ERR("punch_without_keep", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10));
	EXPECT_ERR("unknown_mode", fallocate(fd, 0x100, 0, 10));
	EXPECT_ERR("overflow", fallocate(fd, 0, 0x7fffffffffffff00LL, 0x1000));
	int ro = open(path, O_RDONLY);
	CHECK(ro >= 0);
	EXPECT_ERR("read_only_fd", fallocate(ro, 0, 0, 10));
	int p[2];
	CHECK(pipe(p) == 0);
	EXPECT_ERR("pipe", fallocate(p[1], 0, 0, 10));
	close(p[0]);
	close(p[1]);
	close(ro);
	close(fd);
	CHECK(unlink(path) == 0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	run_in("/tmp");
	run_in("/var/tmp");
	return 0;
}
