/* linkat(2) of O_TMPFILE files, in /tmp and /dev/shm: named through
 * AT_EMPTY_PATH and through /proc/self/fd with AT_SYMLINK_FOLLOW, then
 * named again; refused (ENOENT) with O_EXCL, for a file unlinked while
 * open, and for an empty path without AT_EMPTY_PATH; EEXIST for a name
 * taken. Each name shows the bytes written through the descriptor. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>

static void show(const char *tag, const char *path, int fd)
{
	struct stat st, fst;
	char buf[32] = { 0 };
	int f = open(path, O_RDONLY);
	if (f < 0) {
		printf("%s: open %s\n", tag, errname(errno));
		return;
	}
	CHECK(read(f, buf, sizeof buf - 1) >= 0);
	CHECK(fstat(f, &st) == 0 && fstat(fd, &fst) == 0);
	printf("%s: '%s' nlink=%lu fd nlink=%lu same=%d mode=%o\n", tag, buf, (unsigned long)st.st_nlink,
	       (unsigned long)fst.st_nlink, st.st_ino == fst.st_ino, st.st_mode & 07777);
	close(f);
}

static void in_dir(const char *dir)
{
	char a[256], b[256], c[256], d[256], proc[64];
	snprintf(a, sizeof a, "%s/a", dir);
	snprintf(b, sizeof b, "%s/b", dir);
	snprintf(c, sizeof c, "%s/c", dir);
	snprintf(d, sizeof d, "%s/d", dir);
	printf("== %s\n", strncmp(dir, "/dev/shm", 8) == 0 ? "shm" : "tmp");

	int t = open(dir, O_TMPFILE | O_RDWR, 0640);
	CHECK(t >= 0);
	CHECK(write(t, "tmpfile bytes", 13) == 13);
	EXPECT_ERR("empty path without AT_EMPTY_PATH", linkat(t, "", AT_FDCWD, a, 0));
	printf("linkat AT_EMPTY_PATH: %d\n", linkat(t, "", AT_FDCWD, a, AT_EMPTY_PATH));
	show("a", a, t);
	EXPECT_ERR("name taken", linkat(t, "", AT_FDCWD, a, AT_EMPTY_PATH));
	printf("linked again: %d\n", linkat(t, "", AT_FDCWD, b, AT_EMPTY_PATH));
	show("b", b, t);
	CHECK(write(t, "+", 1) == 1);
	show("a after write", a, t);
	CHECK(unlink(a) == 0 && unlink(b) == 0);
	EXPECT_ERR("after both names went", linkat(t, "", AT_FDCWD, c, AT_EMPTY_PATH));

	int p = open(dir, O_TMPFILE | O_WRONLY, 0600);
	CHECK(p >= 0);
	CHECK(write(p, "via proc", 8) == 8);
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", p);
	printf("linkat /proc/self/fd: %d\n", linkat(AT_FDCWD, proc, AT_FDCWD, c, AT_SYMLINK_FOLLOW));
	show("c", c, p);

	int x = open(dir, O_TMPFILE | O_RDWR | O_EXCL, 0600);
	CHECK(x >= 0);
	EXPECT_ERR("O_EXCL", linkat(x, "", AT_FDCWD, d, AT_EMPTY_PATH));

	int u = open(d, O_CREAT | O_RDWR, 0600);
	CHECK(u >= 0 && unlink(d) == 0);
	EXPECT_ERR("unlinked while open", linkat(u, "", AT_FDCWD, d, AT_EMPTY_PATH));
	CHECK(unlink(c) == 0);
	close(t);
	close(p);
	close(x);
	close(u);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	char dir[128];
	make_tmpdir("tmpfile_link", dir, sizeof dir);
	in_dir(dir);
	CHECK(rmdir(dir) == 0);
	char shm[] = "/dev/shm/cryo-guest-tmpfile-link-XXXXXX";
	CHECK(mkdtemp(shm) != NULL);
	in_dir(shm);
	CHECK(rmdir(shm) == 0);
	printf("done\n");
	return 0;
}
