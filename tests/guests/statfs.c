/* statfs(2)/fstatfs(2): the file-system type of the places a program
 * probes (/dev/shm is tmpfs, /proc is proc, a pipe is pipefs), statfs of a
 * path agreeing with fstatfs of a descriptor for it, sizes that hold
 * together, and the errors: ENOENT, ENOTDIR, EFAULT, EBADF. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>

#define TMPFS_MAGIC 0x01021994
#define PROC_SUPER_MAGIC 0x9fa0
#define PIPEFS_MAGIC 0x50495045

static void show(const char *label, const struct statfs *s)
{
	printf("%s: tmpfs=%d proc=%d pipefs=%d bsize=%ld namelen=%ld frsize_eq_bsize=%d "
	       "avail_le_free=%d free_le_blocks=%d rdonly=%d\n",
	       label, s->f_type == TMPFS_MAGIC, s->f_type == PROC_SUPER_MAGIC,
	       s->f_type == PIPEFS_MAGIC, (long)s->f_bsize, (long)s->f_namelen,
	       s->f_frsize == s->f_bsize, s->f_bavail <= s->f_bfree, s->f_bfree <= s->f_blocks,
	       (int)(s->f_flags & ST_RDONLY));
}

int main(void)
{
	struct statfs a, b;
	const char *paths[] = { "/dev/shm", "/proc", "/proc/self/status" };
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		CHECK(statfs(paths[i], &a) == 0);
		show(paths[i], &a);
		int fd = open(paths[i], O_RDONLY);
		CHECK(fd >= 0);
		CHECK(fstatfs(fd, &b) == 0);
		printf("%s: fstatfs_same=%d\n", paths[i],
		       a.f_type == b.f_type && a.f_bsize == b.f_bsize &&
			       memcmp(&a.f_fsid, &b.f_fsid, sizeof a.f_fsid) == 0);
		CHECK(close(fd) == 0);
	}
	/* An O_PATH descriptor is enough. */
	int pfd = open("/dev/shm", O_PATH);
	CHECK(pfd >= 0);
	EXPECT_ERR("fstatfs_opath", fstatfs(pfd, &b));
	CHECK(close(pfd) == 0);

	int p[2];
	CHECK(pipe(p) == 0);
	CHECK(fstatfs(p[0], &a) == 0);
	show("pipe", &a);

	EXPECT_ERR("statfs_missing", statfs("/nonexistent-cryo", &a));
	EXPECT_ERR("statfs_notdir", statfs("/proc/self/status/x", &a));
	EXPECT_ERR("statfs_empty", statfs("", &a));
	EXPECT_ERR("statfs_bad_buf", syscall(SYS_statfs, "/proc", (void *)8));
	EXPECT_ERR("statfs_bad_path", syscall(SYS_statfs, (void *)8, &a));
	EXPECT_ERR("fstatfs_bad_fd", fstatfs(999, &a));
	EXPECT_ERR("fstatfs_bad_buf", syscall(SYS_fstatfs, p[0], (void *)8));
	return 0;
}
