/* madvise advice that acts at fork: MADV_DONTFORK leaves a range out of the
 * child (touching it there is SIGSEGV, seen through the parent's wait
 * status), MADV_DOFORK undoes it, MADV_WIPEONFORK gives the child zeroes
 * while the parent keeps its data, MADV_KEEPONFORK undoes that; and the
 * EINVAL cases (WIPEONFORK on a shared or file mapping, an unaligned
 * address, ...) as Linux has them. */
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#define MADV_KEEPONFORK 19
#endif

static long pg;

/* Forks a child that reads byte `off` of `p` and exits with it (or dies
 * trying); the child's status as text. */
static const char *child_reads(volatile unsigned char *p, long off, char *buf, size_t len)
{
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0)
		_exit(p[off]);
	int st;
	CHECK(waitpid(c, &st, 0) == c);
	if (WIFEXITED(st))
		snprintf(buf, len, "exit %#x", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by %s", WTERMSIG(st) == SIGSEGV ? "SIGSEGV" : "another signal");
	else
		snprintf(buf, len, "other");
	return buf;
}

int main(void)
{
	pg = sysconf(_SC_PAGESIZE);
	char buf[64];
	unsigned char *a = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(a != MAP_FAILED);
	memset(a, 0x5a, 4 * pg);

	/* DONTFORK on the middle two pages: the child has no mapping there. */
	printf("dontfork=%d\n", madvise(a + pg, 2 * pg, MADV_DONTFORK));
	printf("child page 0: %s\n", child_reads(a, 0, buf, sizeof buf));
	printf("child page 1: %s\n", child_reads(a, pg, buf, sizeof buf));
	printf("child page 2: %s\n", child_reads(a, 2 * pg + 9, buf, sizeof buf));
	printf("child page 3: %s\n", child_reads(a, 3 * pg, buf, sizeof buf));
	/* A mapping made by the child over the hole works: the range is free. */
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		void *m = mmap(a + pg, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		_exit(m == a + pg ? 0 : 1);
	}
	int st;
	CHECK(waitpid(c, &st, 0) == c);
	printf("child maps over the hole: %s\n", WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "ok" : "failed");
	printf("parent still has page 1: %#x\n", a[pg]);
	/* DOFORK on one of the two: that page comes back in children. */
	printf("dofork=%d\n", madvise(a + 2 * pg, pg, MADV_DOFORK));
	printf("after dofork child page 1: %s\n", child_reads(a, pg, buf, sizeof buf));
	printf("after dofork child page 2: %s\n", child_reads(a, 2 * pg, buf, sizeof buf));
	printf("dofork all=%d\n", madvise(a, 4 * pg, MADV_DOFORK));
	printf("after dofork all child page 1: %s\n", child_reads(a, pg, buf, sizeof buf));

	/* WIPEONFORK: zeroes in the child, the data stays in the parent. */
	unsigned char *w = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(w != MAP_FAILED);
	memset(w, 0x33, 2 * pg);
	printf("wipeonfork=%d\n", madvise(w, pg, MADV_WIPEONFORK));
	printf("wiped child page 0: %s\n", child_reads(w, 5, buf, sizeof buf));
	printf("kept child page 1: %s\n", child_reads(w, pg + 5, buf, sizeof buf));
	printf("parent keeps: %#x %#x\n", w[5], w[pg + 5]);
	/* The wipe is inherited: a grandchild of a child sees zeroes too,
	 * even after the child writes (the child's range is wipe-on-fork). */
	c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		w[5] = 0x44;
		pid_t g = fork();
		if (g < 0)
			_exit(90);
		if (g == 0)
			_exit(w[5]);
		int gs;
		if (waitpid(g, &gs, 0) != g || !WIFEXITED(gs))
			_exit(91);
		_exit(WEXITSTATUS(gs));
	}
	CHECK(waitpid(c, &st, 0) == c);
	printf("grandchild reads: %s\n", WIFEXITED(st) ? (WEXITSTATUS(st) == 0 ? "zero" : "data") : "died");
	printf("keeponfork=%d\n", madvise(w, pg, MADV_KEEPONFORK));
	printf("after keeponfork child page 0: %s\n", child_reads(w, 5, buf, sizeof buf));

	/* The EINVAL cases. */
	unsigned char *s = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(s != MAP_FAILED);
	EXPECT_ERR("wipeonfork_shared_anon", madvise(s, pg, MADV_WIPEONFORK));
	char dir[64], path[128];
	make_tmpdir("madvise_fork", dir, sizeof dir);
	snprintf(path, sizeof path, "%s/f", dir);
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, pg) == 0);
	unsigned char *fp = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(fp != MAP_FAILED);
	EXPECT_ERR("wipeonfork_private_file", madvise(fp, pg, MADV_WIPEONFORK));
	unsigned char *fs = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(fs != MAP_FAILED);
	EXPECT_ERR("wipeonfork_shared_file", madvise(fs, pg, MADV_WIPEONFORK));
	/* DONTFORK is fine on a shared file mapping: the child lacks it. */
	printf("dontfork_shared_file=%d\n", madvise(fs, pg, MADV_DONTFORK));
	printf("child reads dontfork shared file: %s\n", child_reads(fs, 0, buf, sizeof buf));
	EXPECT_ERR("wipeonfork_unaligned", madvise(w + 1, pg, MADV_WIPEONFORK));
	EXPECT_ERR("dontfork_unaligned", madvise(a + 1, pg, MADV_DONTFORK));
	EXPECT_ERR("dofork_unaligned", madvise(a + 1, pg, MADV_DOFORK));
	EXPECT_ERR("keeponfork_unaligned", madvise(w + 1, pg, MADV_KEEPONFORK));
	/* Unmapped ranges: ENOMEM, as for any advice. */
	CHECK(munmap(a + pg, pg) == 0);
	EXPECT_ERR("dontfork_hole", madvise(a, 4 * pg, MADV_DONTFORK));
	EXPECT_ERR("wipeonfork_hole", madvise(a, 4 * pg, MADV_WIPEONFORK));
	/* A zero length is fine. */
	printf("wipeonfork_zero_len=%d\n", madvise(w, 0, MADV_WIPEONFORK));
	munmap(fp, pg);
	munmap(fs, pg);
	close(fd);
	unlink(path);
	rmdir(dir);
	return 0;
}
