/* getdents64 on a directory created in /tmp: the names and d_types come
 * back (sorted here, since the kernel's order is unspecified), including
 * "." and "..", and a small buffer forces several getdents64 calls. */
#define _GNU_SOURCE
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

struct entry { char name[256]; int type; };

static int cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

static const char *dtype(int t)
{
	return t == DT_REG ? "reg" : t == DT_DIR ? "dir" : t == DT_LNK ? "lnk" : "other";
}

int main(void)
{
	char dir[64], path[128];
	make_tmpdir("getdents", dir, sizeof dir);
	static const char *files[] = { "zeta", "alpha", "mid", "b.txt", "a-long-file-name-for-getdents" };
	for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		int fd = open(path, O_WRONLY | O_CREAT, 0644);
		CHECK(fd >= 0);
		close(fd);
	}
	snprintf(path, sizeof path, "%s/subdir", dir);
	CHECK(mkdir(path, 0755) == 0);
	snprintf(path, sizeof path, "%s/lnk", dir);
	CHECK(symlink("alpha", path) == 0);

	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(dfd >= 0);
	struct entry ents[32];
	int n = 0, calls = 0;
	char buf[128]; /* small: several calls are needed */
	for (;;) {
		long got = syscall(SYS_getdents64, dfd, buf, sizeof buf);
		CHECK(got >= 0);
		if (got == 0)
			break;
		calls++;
		for (long off = 0; off < got;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			CHECK(n < 32);
			snprintf(ents[n].name, sizeof ents[n].name, "%s", d->d_name);
			ents[n].type = d->d_type;
			n++;
			off += d->d_reclen;
		}
	}
	printf("entries=%d several_calls=%d\n", n, calls > 1);
	qsort(ents, n, sizeof *ents, cmp);
	for (int i = 0; i < n; i++)
		printf("  %s %s\n", ents[i].name, dtype(ents[i].type));

	/* At end of directory getdents64 keeps returning 0; on a file it is ENOTDIR. */
	printf("again_at_end=%ld\n", syscall(SYS_getdents64, dfd, buf, sizeof buf));
	/* Rewind: an 8-byte buffer cannot hold even one entry. */
	CHECK(lseek(dfd, 0, SEEK_SET) == 0);
	EXPECT_ERR("buffer_too_small", syscall(SYS_getdents64, dfd, buf, 8));
	snprintf(path, sizeof path, "%s/alpha", dir);
	int ffd = open(path, O_RDONLY);
	EXPECT_ERR("getdents_on_file", syscall(SYS_getdents64, ffd, buf, sizeof buf));
	close(ffd);
	close(dfd);

	for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		unlink(path);
	}
	snprintf(path, sizeof path, "%s/lnk", dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/subdir", dir);
	rmdir(path);
	EXPECT_ERR("rmdir_done", rmdir(dir));
	return 0;
}
