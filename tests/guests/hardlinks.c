/* link(2)/linkat(2): two names for one file (same inode, st_nlink counts
 * them, a write through one is read through the other, the file lives on
 * while a name is left), links to symlinks with and without
 * AT_SYMLINK_FOLLOW, AT_EMPTY_PATH from an open descriptor, rename between
 * two links of one file doing nothing, and the errors Linux gives: EPERM
 * for a directory, EEXIST, ENOENT, ENOTDIR, EXDEV across mounts, EINVAL
 * for unknown flags. Run in /tmp (tmpfs under cryo) and in /var/tmp (the
 * overlay root under cryo). */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>

static void same_file(const char *label, int dfd, const char *a, const char *b)
{
	struct stat sa, sb;
	CHECK(fstatat(dfd, a, &sa, AT_SYMLINK_NOFOLLOW) == 0);
	CHECK(fstatat(dfd, b, &sb, AT_SYMLINK_NOFOLLOW) == 0);
	printf("%s: same_ino=%d nlink=%lu,%lu\n", label, sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev,
	       (unsigned long)sa.st_nlink, (unsigned long)sb.st_nlink);
}

static void run_in(const char *where)
{
	char dir[96], buf[64];
	snprintf(dir, sizeof dir, "%s/cryo-guest-hardlinks-XXXXXX", where);
	CHECK(mkdtemp(dir) != NULL);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(dfd >= 0);
	printf("-- in %s\n", where);

	int fd = openat(dfd, "f", O_CREAT | O_WRONLY, 0640);
	CHECK(fd >= 0);
	CHECK(write(fd, "abc", 3) == 3);
	CHECK(close(fd) == 0);
	EXPECT_ERR("linkat", linkat(dfd, "f", dfd, "g", 0));
	same_file("f_g", dfd, "f", "g");

	/* A write through one name, read through the other. */
	fd = openat(dfd, "g", O_WRONLY | O_APPEND);
	CHECK(fd >= 0);
	CHECK(write(fd, "def", 3) == 3);
	CHECK(close(fd) == 0);
	fd = openat(dfd, "f", O_RDONLY);
	CHECK(fd >= 0);
	ssize_t n = read(fd, buf, sizeof buf);
	CHECK(close(fd) == 0);
	printf("read_f=%.*s\n", (int)n, buf);

	/* Renaming one link of a file over another does nothing. */
	EXPECT_ERR("rename_same_file", renameat(dfd, "f", dfd, "g"));
	same_file("after_rename", dfd, "f", "g");

	/* The file outlives a name. */
	CHECK(unlinkat(dfd, "f", 0) == 0);
	struct stat st;
	CHECK(fstatat(dfd, "g", &st, 0) == 0);
	printf("after_unlink: nlink=%lu size=%lld\n", (unsigned long)st.st_nlink, (long long)st.st_size);

	/* Symlinks: link() and linkat(0) name the symlink itself,
	 * AT_SYMLINK_FOLLOW its target. */
	CHECK(symlinkat("g", dfd, "sym") == 0);
	EXPECT_ERR("link_symlink", linkat(dfd, "sym", dfd, "sym2", 0));
	CHECK(fstatat(dfd, "sym2", &st, AT_SYMLINK_NOFOLLOW) == 0);
	printf("sym2_is_link=%d\n", S_ISLNK(st.st_mode));
	EXPECT_ERR("link_follow", linkat(dfd, "sym", dfd, "via_sym", AT_SYMLINK_FOLLOW));
	same_file("g_via_sym", dfd, "g", "via_sym");
	CHECK(symlinkat("nowhere", dfd, "dangling") == 0);
	EXPECT_ERR("link_follow_dangling", linkat(dfd, "dangling", dfd, "d2", AT_SYMLINK_FOLLOW));
	EXPECT_ERR("link_dangling_itself", linkat(dfd, "dangling", dfd, "d3", 0));

	/* AT_EMPTY_PATH: the file an open descriptor refers to. */
	fd = openat(dfd, "g", O_RDONLY);
	CHECK(fd >= 0);
	EXPECT_ERR("link_empty_path", linkat(fd, "", dfd, "from_fd", AT_EMPTY_PATH));
	EXPECT_ERR("link_empty_no_flag", linkat(fd, "", dfd, "from_fd2", 0));
	CHECK(close(fd) == 0);
	same_file("g_from_fd", dfd, "g", "from_fd");

	/* Errors. */
	CHECK(mkdirat(dfd, "sub", 0755) == 0);
	EXPECT_ERR("link_dir", linkat(dfd, "sub", dfd, "sub2", 0));
	EXPECT_ERR("link_exists", linkat(dfd, "g", dfd, "from_fd", 0));
	EXPECT_ERR("link_exists_dir", linkat(dfd, "g", dfd, "sub", 0));
	EXPECT_ERR("link_missing", linkat(dfd, "missing", dfd, "x", 0));
	EXPECT_ERR("link_into_missing", linkat(dfd, "g", dfd, "nodir/x", 0));
	EXPECT_ERR("link_through_file", linkat(dfd, "g", dfd, "g/x", 0));
	EXPECT_ERR("link_trailing_slash", linkat(dfd, "g", dfd, "newname/", 0));
	EXPECT_ERR("link_bad_flags", linkat(dfd, "g", dfd, "x", 0x8000));
	EXPECT_ERR("link_empty_new", linkat(dfd, "g", dfd, "", 0));
	EXPECT_ERR("link_proc", linkat(AT_FDCWD, "/proc/self/status", dfd, "x", 0));
	EXPECT_ERR("link_bad_fd", linkat(999, "g", dfd, "x", 0));
	EXPECT_ERR("link_bad_addr", linkat(dfd, (const char *)8, dfd, "x", 0));
	EXPECT_ERR("link_plain", link("/nonexistent-cryo", "/tmp/nonexistent-cryo-2"));

	/* Clean up, so the native run leaves nothing behind. */
	const char *names[] = { "g", "sym", "sym2", "via_sym", "dangling", "d3", "from_fd" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		CHECK(unlinkat(dfd, names[i], 0) == 0);
	CHECK(unlinkat(dfd, "sub", AT_REMOVEDIR) == 0);
	CHECK(close(dfd) == 0);
	CHECK(rmdir(dir) == 0);
}

int main(void)
{
	run_in("/tmp");
	run_in("/var/tmp");
	return 0;
}
