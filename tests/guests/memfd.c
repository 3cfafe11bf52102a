/* memfd_create and file seals, with their errno edge cases: flags, names,
 * /proc/self/fd's "/memfd:NAME (deleted)", fstat, a shared mapping seen
 * through the fd, F_GET_SEALS/F_ADD_SEALS with every seal's effect on
 * write, ftruncate, fallocate and mmap, EBUSY for F_SEAL_WRITE while a
 * shared mapping exists, sealing through a read-only fd, and the seals of
 * files that are not memfds. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

static int mfd(const char *name, unsigned flags)
{
	return (int)syscall(SYS_memfd_create, name, flags);
}

static void show_link(int fd)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, buf, sizeof buf - 1);
	CHECK(n > 0);
	buf[n] = 0;
	printf("link: %s\n", buf);
}

static void show_stat(const char *tag, int fd)
{
	struct stat st;
	CHECK(fstat(fd, &st) == 0);
	printf("%s: mode=%o nlink=%lu size=%ld blocks=%ld uid=%u\n", tag, st.st_mode,
	       (unsigned long)st.st_nlink, (long)st.st_size, (long)st.st_blocks, st.st_uid);
}

static void seals(const char *tag, int fd)
{
	errno = 0;
	int s = fcntl(fd, F_GET_SEALS);
	printf("%s seals: %#x errno=%s\n", tag, s, errname(errno));
}

static void add(const char *tag, int fd, int s)
{
	errno = 0;
	int r = fcntl(fd, F_ADD_SEALS, s);
	printf("add %s: ret=%d errno=%s\n", tag, r, errname(errno));
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Flags and names. */
	EXPECT_ERR("unknown flag", mfd("x", 0x100));
	EXPECT_ERR("exec and noexec", mfd("x", MFD_EXEC | MFD_NOEXEC_SEAL));
	char name[300];
	memset(name, 'n', sizeof name);
	name[249] = 0;
	int longest = mfd(name, 0);
	printf("249-byte name: %s\n", longest >= 0 ? "ok" : errname(errno));
	name[249] = 'n';
	name[250] = 0;
	EXPECT_ERR("250-byte name", mfd(name, 0));
	EXPECT_ERR("bad name pointer", mfd((const char *)8, 0));
	close(longest);

	/* A plain memfd: no sealing allowed. */
	int plain = mfd("plain", MFD_CLOEXEC);
	CHECK(plain >= 0);
	printf("cloexec: %d\n", (fcntl(plain, F_GETFD) & FD_CLOEXEC) != 0);
	printf("flags: %#x\n", fcntl(plain, F_GETFL));
	show_link(plain);
	show_stat("plain", plain);
	seals("plain", plain);
	add("write to plain", plain, F_SEAL_WRITE);

	/* Data through the fd and a shared mapping. */
	int fd = mfd("sealed one", MFD_ALLOW_SEALING);
	CHECK(fd >= 0);
	show_link(fd);
	seals("new", fd);
	CHECK(ftruncate(fd, 8192) == 0);
	char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED);
	memcpy(m + 4096, "through the map", 15);
	char buf[32] = { 0 };
	CHECK(pread(fd, buf, 15, 4096) == 15);
	printf("read back: %s\n", buf);
	CHECK(pwrite(fd, "by write", 8, 0) == 8);
	printf("map sees: %.8s\n", m);
	show_stat("sized", fd);
	add("write while mapped", fd, F_SEAL_WRITE);
	add("unknown seal", fd, 0x100);
	CHECK(munmap(m, 8192) == 0);

	/* A read-only mapping of a writable fd still blocks F_SEAL_WRITE. */
	char *ro = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(ro != MAP_FAILED);
	add("write while ro-mapped", fd, F_SEAL_WRITE);
	CHECK(munmap(ro, 4096) == 0);

	/* Sealing through a read-only descriptor. */
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	int rofd = open(path, O_RDONLY);
	CHECK(rofd >= 0);
	add("through ro fd", rofd, F_SEAL_SHRINK);
	seals("ro fd", rofd);

	/* F_SEAL_SHRINK and F_SEAL_GROW. */
	add("shrink", fd, F_SEAL_SHRINK);
	EXPECT_ERR("ftruncate smaller", ftruncate(fd, 100));
	printf("ftruncate same: %d\n", ftruncate(fd, 8192));
	printf("ftruncate bigger: %d\n", ftruncate(fd, 12288));
	add("grow", fd, F_SEAL_GROW);
	seals("shrink+grow", fd);
	EXPECT_ERR("ftruncate bigger again", ftruncate(fd, 16384));
	printf("write inside: %zd\n", pwrite(fd, "in", 2, 100));
	EXPECT_ERR("write straddling the end", pwrite(fd, "0123456789", 10, 12288 - 5));
	static char big[4200];
	printf("write of whole pages then past: %zd\n", pwrite(fd, big, sizeof big, 12288 - 4096 - 10));
	EXPECT_ERR("write past the end", pwrite(fd, "x", 1, 12288));
	EXPECT_ERR("fallocate past the end", fallocate(fd, 0, 12288, 4096));
	EXPECT_ERR("fallocate keep-size past the end",
		   fallocate(fd, FALLOC_FL_KEEP_SIZE, 12288, 4096));
	printf("fallocate inside: %d\n", fallocate(fd, 0, 0, 4096));
	show_stat("grown", fd);

	/* F_SEAL_WRITE: no write, no writable shared mapping, no hole. */
	add("write", fd, F_SEAL_WRITE);
	EXPECT_ERR("write", write(fd, "x", 1));
	printf("empty write: %zd\n", write(fd, "", 0));
	EXPECT_ERR("punch hole",
		   fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096));
	EXPECT_ERR("shared writable map", mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED ? -1 : 0);
	char *priv = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	printf("private writable map: %s\n", priv != MAP_FAILED ? "ok" : errname(errno));
	if (priv != MAP_FAILED) {
		priv[0] = 'P';
		CHECK(pread(fd, buf, 2, 0) == 2);
		printf("file unchanged by private write: %.2s\n", buf);
		munmap(priv, 4096);
	}
	char *shr = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	printf("shared read-only map: %s\n", shr != MAP_FAILED ? "ok" : errname(errno));
	if (shr != MAP_FAILED) {
		printf("map reads: %.8s\n", shr);
		/* The seal took VM_MAYWRITE away: it may never become writable. */
		EXPECT_ERR("mprotect shared map writable", mprotect(shr, 4096, PROT_READ | PROT_WRITE));
		printf("mprotect shared map read: %d\n", mprotect(shr, 4096, PROT_READ));
		munmap(shr, 4096);
	}
	char *prv = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
	CHECK(prv != MAP_FAILED);
	printf("mprotect private map writable: %d\n", mprotect(prv, 4096, PROT_READ | PROT_WRITE));
	munmap(prv, 4096);
	add("seal", fd, F_SEAL_SEAL);
	add("after seal", fd, F_SEAL_FUTURE_WRITE);
	seals("final", fd);

	/* F_SEAL_FUTURE_WRITE: a mapping made before keeps writing. */
	int fw = mfd("future", MFD_ALLOW_SEALING);
	CHECK(fw >= 0 && ftruncate(fw, 4096) == 0);
	char *before = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fw, 0);
	CHECK(before != MAP_FAILED);
	add("future write while mapped", fw, F_SEAL_FUTURE_WRITE);
	EXPECT_ERR("write after future", pwrite(fw, "x", 1, 0));
	EXPECT_ERR("new shared writable map after future",
		   mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fw, 0) == MAP_FAILED ? -1 : 0);
	char *ro_after = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fw, 0);
	CHECK(ro_after != MAP_FAILED);
	EXPECT_ERR("mprotect writable after future", mprotect(ro_after, 4096, PROT_READ | PROT_WRITE));
	munmap(ro_after, 4096);
	memcpy(before, "old map writes", 14);
	CHECK(pread(fw, buf, 14, 0) == 14);
	printf("future: %.14s\n", buf);
	printf("truncate after future: %d\n", ftruncate(fw, 100));

	/* MFD_NOEXEC_SEAL: not executable, F_SEAL_EXEC, chmod +x refused. */
	int nx = mfd("noexec", MFD_NOEXEC_SEAL);
	if (nx >= 0) {
		show_stat("noexec", nx);
		seals("noexec", nx);
		EXPECT_ERR("chmod +x", fchmod(nx, 0755));
		printf("chmod -w: %d\n", fchmod(nx, 0444));
		show_stat("noexec after chmod", nx);
	} else {
		printf("noexec: %s\n", errname(errno));
	}

	/* Files that are not memfds. */
	int p[2];
	CHECK(pipe(p) == 0);
	seals("pipe", p[0]);
	int shm = open("/dev/shm/cryo-memfd-guest", O_CREAT | O_RDWR | O_EXCL, 0600);
	CHECK(shm >= 0);
	unlink("/dev/shm/cryo-memfd-guest");
	seals("shm file", shm);
	add("shm file", shm, F_SEAL_WRITE);
	int tmp = open("/proc/self/exe", O_RDONLY);
	CHECK(tmp >= 0);
	seals("exe", tmp);
	add("exe (ro)", tmp, F_SEAL_WRITE);
	printf("done\n");
	return 0;
}
