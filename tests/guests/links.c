/* readlinkat/symlinkat and faccessat/access: a symlink created in /tmp reads
 * back exactly (no NUL added, truncation to the buffer size), readlink on a
 * non-link is EINVAL, and access checks modes on files we create plus a few
 * stable host paths. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>

int main(void)
{
	char dir[64], buf[256];
	make_tmpdir("links", dir, sizeof dir);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(dfd >= 0);

	CHECK(symlinkat("target/with/../parts", dfd, "l1") == 0);
	memset(buf, '#', sizeof buf);
	ssize_t n = readlinkat(dfd, "l1", buf, sizeof buf);
	printf("readlinkat=%zd no_nul=%d text=%.*s\n", n, buf[n] == '#', (int)n, buf);
	n = readlinkat(dfd, "l1", buf, 6);
	printf("truncated=%zd text=%.*s\n", n, (int)n, buf);
	EXPECT_ERR("readlink_not_link", readlinkat(dfd, ".", buf, sizeof buf));
	EXPECT_ERR("readlink_missing", readlinkat(dfd, "missing", buf, sizeof buf));
	EXPECT_ERR("symlink_exists", symlinkat("x", dfd, "l1"));

	/* A dangling link: lstat-level operations work, following fails. */
	CHECK(symlinkat("nowhere", dfd, "dangling") == 0);
	EXPECT_ERR("open_dangling", openat(dfd, "dangling", O_RDONLY));
	EXPECT_ERR("faccessat_dangling", faccessat(dfd, "dangling", F_OK, 0));
	EXPECT_ERR("faccessat_dangling_nofollow", faccessat(dfd, "dangling", F_OK, AT_SYMLINK_NOFOLLOW));

	/* A link loop. */
	CHECK(symlinkat("loop2", dfd, "loop1") == 0);
	CHECK(symlinkat("loop1", dfd, "loop2") == 0);
	EXPECT_ERR("open_loop", openat(dfd, "loop1", O_RDONLY));

	/* access modes on a file we own with mode 0600. */
	int fd = openat(dfd, "f", O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	close(fd);
	CHECK(fchmodat(dfd, "f", 0600, 0) == 0);
	printf("faccessat_f_ok=%d\n", faccessat(dfd, "f", F_OK, 0));
	printf("faccessat_rw=%d\n", faccessat(dfd, "f", R_OK | W_OK, 0));
	/* Only root may bypass the missing exec bit, and not for regular
	 * files without any x bit: X_OK fails for everyone. */
	EXPECT_ERR("faccessat_x", faccessat(dfd, "f", X_OK, 0));
	printf("access_etc_passwd_r=%d\n", access("/etc/passwd", R_OK));
	printf("access_root_dir_x=%d\n", access("/", X_OK));
	EXPECT_ERR("access_missing", access("/no/such/path/cryo", F_OK));
	EXPECT_ERR("access_notdir", access("/etc/passwd/x", F_OK));

	/* readlink of a host symlink that is stable enough: /proc/self/exe is
	 * not (paths may differ), so just check /proc/self/exe resolves to a
	 * path ending in this program's name. */
	n = readlink("/proc/self/exe", buf, sizeof buf - 1);
	if (n > 0) {
		buf[n] = 0;
		const char *base = strrchr(buf, '/');
		printf("proc_self_exe_base=%s\n", base ? base + 1 : buf);
	} else {
		printf("proc_self_exe_base=<%s>\n", errname(errno));
	}

	static const char *names[] = { "l1", "dangling", "loop1", "loop2", "f" };
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		unlinkat(dfd, names[i], 0);
	close(dfd);
	rmdir(dir);
	return 0;
}
