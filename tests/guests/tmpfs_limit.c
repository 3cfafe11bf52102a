/* A tmpfs mounted with size=1m,nr_inodes=64 at argv[1] (a fresh one: the
 * test mounts it natively inside `unshare -m`, and as an OCI bundle's tmpfs
 * mount under cryo): statfs's totals and what is free as each limit is
 * reached, the errno of every call past a limit, and the space deleting
 * gives back. With argv[2] = "fill" it only fills the file system and
 * prints the same first lines, sleeps (a test checkpoints it then), and
 * after the sleep tries to write more, deletes and fills again. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "common.h"

static const char *dir;

static char *at(const char *name)
{
	static char buf[4][4096];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
	return buf[i];
}

static void report(const char *when)
{
	struct statfs s;
	CHECK(statfs(dir, &s) == 0);
	printf("%s: type=%lx bsize=%ld blocks=%llu bfree=%llu bavail=%llu files=%llu ffree=%llu\n",
	       when, (unsigned long)s.f_type, (long)s.f_bsize,
	       (unsigned long long)s.f_blocks, (unsigned long long)s.f_bfree,
	       (unsigned long long)s.f_bavail, (unsigned long long)s.f_files,
	       (unsigned long long)s.f_ffree);
}

/* Writes 64 KiB chunks to `name` until a write fails; prints the total. */
static void fill(const char *name)
{
	static char chunk[65536];
	memset(chunk, 'x', sizeof chunk);
	int fd = open(at(name), O_CREAT | O_WRONLY | O_TRUNC, 0644);
	CHECK(fd >= 0);
	long total = 0;
	ssize_t n;
	errno = 0;
	while ((n = write(fd, chunk, sizeof chunk)) > 0)
		total += n;
	printf("fill %s: total=%ld last=%zd errno=%s\n", name, total, n, errname(errno));
	close(fd);
}

int main(int argc, char **argv)
{
	CHECK(argc >= 2);
	dir = argv[1];
	report("fresh");
	fill("big");
	report("full");
	if (argc > 2 && strcmp(argv[2], "fill") == 0) {
		fflush(stdout);
		/* The test checkpoints the sandbox during this sleep; the
		 * restored guest goes on from here. */
		sleep(5);
		report("restored");
		int fd = open(at("big"), O_WRONLY | O_APPEND);
		CHECK(fd >= 0);
		EXPECT_ERR("append after restore", write(fd, "y", 1));
		close(fd);
		CHECK(unlink(at("big")) == 0);
		report("deleted");
		fill("again");
		return 0;
	}
	int fd = open(at("other"), O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	EXPECT_ERR("fallocate when full", fallocate(fd, 0, 0, 4096));
	EXPECT_ERR("write when full", write(fd, "z", 1));
	/* Extending by truncate takes no block, on Linux as here. */
	EXPECT_ERR("ftruncate 10m when full", ftruncate(fd, 10 << 20));
	close(fd);
	fd = open(at("big"), O_WRONLY);
	CHECK(fd >= 0);
	EXPECT_ERR("rewrite held bytes", pwrite(fd, "hello", 5, 100));
	close(fd);
	CHECK(unlink(at("big")) == 0);
	CHECK(unlink(at("other")) == 0);
	report("emptied");
	/* A failed fallocate larger than the whole file system takes nothing. */
	fd = open(at("f0"), O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	EXPECT_ERR("fallocate 2m", fallocate(fd, 0, 0, 2 << 20));
	EXPECT_ERR("fallocate 512k", fallocate(fd, 0, 0, 512 << 10));
	close(fd);
	report("fallocated");
	/* A hard link takes an inode as Linux's shmem_link does. */
	CHECK(link(at("f0"), at("f0-link")) == 0);
	report("linked");
	int made = 1;
	char name[32];
	for (;;) {
		snprintf(name, sizeof name, "f%d", made);
		fd = open(at(name), O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0)
			break;
		close(fd);
		made++;
	}
	printf("files until full: %d errno=%s\n", made, errname(errno));
	report("no inodes");
	EXPECT_ERR("mkdir", mkdir(at("d"), 0755));
	EXPECT_ERR("symlink", symlink("f0", at("s")));
	EXPECT_ERR("mkfifo", mkfifo(at("p"), 0644));
	EXPECT_ERR("link", link(at("f0"), at("f0-link2")));
	EXPECT_ERR("O_TMPFILE", open(dir, O_TMPFILE | O_RDWR, 0600));
	CHECK(unlink(at("f0-link")) == 0);
	report("link removed");
	EXPECT_ERR("mkdir after unlink", mkdir(at("d"), 0755));
	EXPECT_ERR("mkdir again", mkdir(at("d2"), 0755));
	/* The last name of an open file goes: its inode stays taken until the
	 * last close. */
	fd = open(at("f1"), O_RDONLY);
	CHECK(fd >= 0);
	CHECK(unlink(at("f1")) == 0);
	report("unlinked, open");
	close(fd);
	report("closed");
	return 0;
}
