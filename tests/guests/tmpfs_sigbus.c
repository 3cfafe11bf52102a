/* SIGBUS from faults on shared file mappings: a tmpfs mounted with
 * size=64k (16 pages) holds a 128 KiB sparse file mapped MAP_SHARED;
 * writing a byte at each page's start succeeds until the tmpfs is full,
 * then the fault is SIGBUS (BUS_ADRERR at that page); reads of pages never
 * written are then SIGBUS too, and write(2) is ENOSPC. A page wholly past
 * a file's end is SIGBUS on read and on write, shared or private; the
 * partial last page reads zeros past the end. Natively it runs in a mount
 * namespace of its own (the test's `unshare -m`).
 * Usage: tmpfs_sigbus */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>

#define PAGE 4096

static sigjmp_buf jump;
static volatile sig_atomic_t got_signo, got_code;
static void *volatile got_addr;

static void on_fault(int signo, siginfo_t *si, void *uc)
{
	(void)uc;
	got_signo = signo;
	got_code = si->si_code;
	got_addr = si->si_addr;
	siglongjmp(jump, 1);
}

static const char *code_name(int signo, int code)
{
	if (signo == SIGBUS && code == BUS_ADRERR)
		return "BUS_ADRERR";
	if (signo == SIGSEGV && code == SEGV_MAPERR)
		return "SEGV_MAPERR";
	if (signo == SIGSEGV && code == SEGV_ACCERR)
		return "SEGV_ACCERR";
	return "other";
}

/* Touches the first byte of page `i` of `base` (writing when `write`);
 * 0 when it went through, else prints what the handler saw and returns 1. */
static int touch(const char *what, char *base, int i, int write)
{
	volatile char *p = base + (size_t)i * PAGE;
	if (sigsetjmp(jump, 1) == 0) {
		if (write)
			*p = 'x';
		else
			(void)*p;
		return 0;
	}
	long page = ((char *)got_addr - base) / PAGE;
	long within = ((char *)got_addr - base) % PAGE;
	printf("%s: %s page %d: %s %s at page %ld+%ld\n", what, write ? "write" : "read", i,
	       got_signo == SIGBUS ? "SIGBUS" : got_signo == SIGSEGV ? "SIGSEGV" : "signal",
	       code_name(got_signo, got_code), page, within);
	return 1;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sigaction sa = { 0 };
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	CHECK(sigaction(SIGBUS, &sa, NULL) == 0);
	CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);

	char dir[] = "/tmp/cryo-sigbus-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	CHECK(mount("tmpfs", dir, "tmpfs", 0, "size=64k") == 0);
	char path[64];

	/* Past the tmpfs's limit. */
	snprintf(path, sizeof path, "%s/big", dir);
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, 32 * PAGE) == 0);
	char *m = mmap(NULL, 32 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED);
	int written = 0;
	while (written < 32 && !touch("full", m, written, 1))
		written++;
	printf("pages written before the fault: %d\n", written);
	int later = written + 1 < 32 ? written + 1 : 31;
	if (!touch("full", m, later, 0))
		printf("full: read page %d: OK\n", later);
	if (!touch("full", m, 0, 0))
		printf("full: read page 0: OK %c\n", m[0]);
	EXPECT_ERR("pwrite(2) into a hole when full", pwrite(fd, "y", 1, 30 * PAGE) == 1 ? 0 : -1);
	EXPECT_ERR("pread(2) into a page the tmpfs has no room for", pread(fd, m + 20 * PAGE, 1, 0));
	EXPECT_ERR("pread(2) into a page it has", pread(fd, m + PAGE + 1, 1, 0) == 1 ? 0 : -1);
	CHECK(munmap(m, 32 * PAGE) == 0);
	char c = 0;
	int held = 0;
	for (int i = 0; i < 32; i++)
		held += pread(fd, &c, 1, (off_t)i * PAGE) == 1 && c == 'x';
	printf("pages of the file the mapping wrote: %d\n", held);
	CHECK(close(fd) == 0);
	CHECK(unlink(path) == 0);

	/* With room again: the pages a mapping never touched stay holes. */
	snprintf(path, sizeof path, "%s/sparse", dir);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, 24 * PAGE) == 0);
	m = mmap(NULL, 24 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED);
	int ok = !touch("sparse", m, 3, 1) + !touch("sparse", m, 20, 1);
	CHECK(munmap(m, 24 * PAGE) == 0);
	struct stat st;
	CHECK(fstat(fd, &st) == 0);
	printf("sparse: %d pages written, %ld KiB held after munmap\n", ok, (long)st.st_blocks / 2);
	CHECK(close(fd) == 0);
	CHECK(unlink(path) == 0);

	/* Past the end of a file: one full page and 100 bytes, mapped as four. */
	snprintf(path, sizeof path, "%s/short", dir);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0);
	char buf[PAGE + 100];
	memset(buf, 's', sizeof buf);
	CHECK(write(fd, buf, sizeof buf) == (ssize_t)sizeof buf);
	int flags[2] = { MAP_SHARED, MAP_PRIVATE };
	const char *names[2] = { "shared", "private" };
	for (int k = 0; k < 2; k++) {
		m = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, flags[k], fd, 0);
		CHECK(m != MAP_FAILED);
		for (int i = 0; i < 4; i++)
			if (!touch(names[k], m, i, 0))
				printf("%s: read page %d: OK\n", names[k], i);
		printf("%s: past the end in the last page: %d %d\n", names[k], m[PAGE + 99], m[PAGE + 100]);
		if (!touch(names[k], m, 3, 1))
			printf("%s: write page 3: OK\n", names[k]);
		/* The file grows: the page is the file's again. */
		CHECK(ftruncate(fd, 3 * PAGE) == 0);
		if (!touch(names[k], m, 2, 1))
			printf("%s: write page 2 after growing: OK\n", names[k]);
		CHECK(ftruncate(fd, sizeof buf) == 0);
		CHECK(munmap(m, 4 * PAGE) == 0);
	}
	CHECK(close(fd) == 0);
	CHECK(unlink(path) == 0);
	CHECK(umount(dir) == 0);
	CHECK(rmdir(dir) == 0);
	printf("done\n");
	return 0;
}
