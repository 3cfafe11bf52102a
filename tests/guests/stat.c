/* openat/close/fstat/newfstatat/statx/lseek on a file written in /tmp.
 * Prints sizes, file types, link counts and modes — never inode numbers,
 * devices or times (they differ between the host and the sandbox). */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>

static const char *ftype(mode_t m)
{
	return S_ISREG(m) ? "reg" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "lnk" :
	       S_ISCHR(m) ? "chr" : S_ISFIFO(m) ? "fifo" : "other";
}

int main(void)
{
	char dir[64];
	make_tmpdir("stat", dir, sizeof dir);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(dfd >= 0);

	umask(022);
	int fd = openat(dfd, "data", O_RDWR | O_CREAT | O_EXCL, 0640);
	CHECK(fd >= 0);
	char block[1000];
	memset(block, 'x', sizeof block);
	for (int i = 0; i < 5; i++)
		CHECK(write(fd, block, sizeof block) == (ssize_t)sizeof block);

	struct stat st;
	CHECK(fstat(fd, &st) == 0);
	printf("fstat: type=%s size=%ld nlink=%ld mode=%o uid_is_me=%d\n", ftype(st.st_mode),
	       (long)st.st_size, (long)st.st_nlink, st.st_mode & 07777, st.st_uid == geteuid());

	/* lseek in all three modes, and past the end then a write (a hole). */
	printf("seek_set=%ld\n", (long)lseek(fd, 100, SEEK_SET));
	printf("seek_cur=%ld\n", (long)lseek(fd, -40, SEEK_CUR));
	printf("seek_end=%ld\n", (long)lseek(fd, -1, SEEK_END));
	printf("seek_past_end=%ld\n", (long)lseek(fd, 10000, SEEK_SET));
	CHECK(write(fd, "!", 1) == 1);
	EXPECT_ERR("seek_negative", lseek(fd, -1, SEEK_SET));
	char c = 0;
	CHECK(pread(fd, &c, 1, 7000) == 1);
	printf("hole_byte=%d\n", c);

	/* newfstatat, relative to a dirfd, with and without AT_SYMLINK_NOFOLLOW. */
	CHECK(symlinkat("data", dfd, "link") == 0);
	CHECK(fstatat(dfd, "data", &st, 0) == 0);
	printf("fstatat: type=%s size=%ld\n", ftype(st.st_mode), (long)st.st_size);
	CHECK(fstatat(dfd, "link", &st, AT_SYMLINK_NOFOLLOW) == 0);
	printf("fstatat_nofollow: type=%s size=%ld\n", ftype(st.st_mode), (long)st.st_size);
	CHECK(fstatat(dfd, "link", &st, 0) == 0);
	printf("fstatat_follow: type=%s size=%ld\n", ftype(st.st_mode), (long)st.st_size);
	CHECK(fstatat(dfd, "", &st, AT_EMPTY_PATH) == 0);
	printf("fstatat_empty_path: type=%s\n", ftype(st.st_mode));
	EXPECT_ERR("fstatat_missing", fstatat(dfd, "nope", &st, 0));

	/* statx: the basic fields must be filled in and agree with fstat. */
	struct statx sx;
	CHECK(statx(dfd, "data", 0, STATX_BASIC_STATS, &sx) == 0);
	printf("statx: basic=%d type=%s size=%llu nlink=%u mode=%o\n",
	       (sx.stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS, ftype(sx.stx_mode),
	       (unsigned long long)sx.stx_size, sx.stx_nlink, sx.stx_mode & 07777);
	CHECK(fstat(fd, &st) == 0);
	printf("statx_matches_fstat=%d\n", sx.stx_ino == st.st_ino && sx.stx_size == (unsigned long long)st.st_size);

	/* A well-known host file, seen through the sandbox's read-only root. */
	CHECK(stat("/etc/passwd", &st) == 0);
	printf("etc_passwd: type=%s nonempty=%d\n", ftype(st.st_mode), st.st_size > 0);
	CHECK(stat("/", &st) == 0);
	printf("root: type=%s\n", ftype(st.st_mode));

	close(fd);
	EXPECT_ERR("close_twice", close(fd));
	unlinkat(dfd, "link", 0);
	unlinkat(dfd, "data", 0);
	close(dfd);
	rmdir(dir);
	return 0;
}
