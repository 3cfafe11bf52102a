/* getcwd/chdir/fchdir: starts in "/" (the harness sets it), moves into a
 * fresh /tmp dir and back, relative paths resolve against the cwd, ERANGE
 * for a small buffer, ENOTDIR/ENOENT for bad targets. */
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

int main(void)
{
	char buf[4096], dir[64];
	CHECK(getcwd(buf, sizeof buf) != NULL);
	printf("start=%s\n", buf);

	make_tmpdir("cwd", dir, sizeof dir);
	CHECK(chdir(dir) == 0);
	CHECK(getcwd(buf, sizeof buf) != NULL);
	printf("in_tmpdir=%d\n", strcmp(buf, dir) == 0);

	/* Relative creation lands in the cwd. */
	CHECK(mkdir("sub", 0755) == 0);
	CHECK(chdir("sub") == 0);
	CHECK(getcwd(buf, sizeof buf) != NULL);
	const char *base = strrchr(buf, '/');
	printf("sub_base=%s\n", base ? base + 1 : "?");
	CHECK(chdir("..") == 0);
	CHECK(getcwd(buf, sizeof buf) != NULL);
	printf("back_in_tmpdir=%d\n", strcmp(buf, dir) == 0);

	/* The raw syscall returns the length including the NUL. */
	long len = syscall(SYS_getcwd, buf, sizeof buf);
	printf("raw_len_ok=%d\n", len == (long)strlen(dir) + 1);
	EXPECT_ERR("small_buffer", syscall(SYS_getcwd, buf, 4));

	EXPECT_ERR("chdir_file", chdir("/etc/passwd"));
	EXPECT_ERR("chdir_missing", chdir("no-such-dir"));

	/* fchdir to "/" through a directory fd. */
	int root = open("/", O_RDONLY | O_DIRECTORY);
	CHECK(root >= 0);
	CHECK(fchdir(root) == 0);
	CHECK(getcwd(buf, sizeof buf) != NULL);
	printf("after_fchdir=%s\n", buf);
	close(root);
	int f = open("/etc/passwd", O_RDONLY);
	EXPECT_ERR("fchdir_file", fchdir(f));
	close(f);

	CHECK(chdir("/tmp") == 0);
	char sub[128];
	snprintf(sub, sizeof sub, "%s/sub", dir);
	rmdir(sub);
	printf("rmdir_relative=%d\n", rmdir(strrchr(dir, '/') + 1));
	return 0;
}
