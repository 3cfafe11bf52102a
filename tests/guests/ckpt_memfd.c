/* memfds across a checkpoint: one sealed against writes, shrinking and
 * growing, and against more seals; one open to sealing with a shared
 * mapping whose bytes the fd sees; one made without MFD_ALLOW_SEALING,
 * and a second descriptor opened through /proc/self/fd. Each tick prints
 * a line that depends on the tick alone; at the end every memfd's seals,
 * name, contents and the seals' effects are printed, a new mapping and
 * the fd are checked to share pages, and F_SEAL_WRITE is refused while
 * the mapping lasts (EBUSY) and taken once it is gone. (The first mapping
 * goes before the checkpoint; ckpt_unnamed_map.c checkpoints mappings of
 * memfds.)
 * Usage: ckpt_memfd TICKS */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int mfd(const char *name, unsigned flags)
{
	int fd = (int)syscall(SYS_memfd_create, name, flags);
	CHECK(fd >= 0);
	return fd;
}

static void show(const char *tag, int fd)
{
	char path[64], name[256], buf[64] = { 0 };
	struct stat st;
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	ssize_t k = readlink(path, name, sizeof name - 1);
	CHECK(k > 0);
	name[k] = 0;
	CHECK(fstat(fd, &st) == 0);
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	printf("%s: %s seals=%#x size=%ld offset=%ld data=%.*s\n", tag, name, fcntl(fd, F_GET_SEALS),
	       (long)st.st_size, (long)lseek(fd, 0, SEEK_CUR), (int)(n > 0 ? n : 0), buf);
}

int main(int argc, char **argv)
{
	int ticks = argc > 1 ? atoi(argv[1]) : 10;
	setvbuf(stdout, NULL, _IOLBF, 0);
	int sealed = mfd("sealed", MFD_ALLOW_SEALING);
	CHECK(write(sealed, "frozen bytes", 12) == 12);
	CHECK(fcntl(sealed, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) == 0);
	CHECK(fcntl(sealed, F_ADD_SEALS, F_SEAL_SEAL) == 0);
	CHECK(lseek(sealed, 3, SEEK_SET) == 3);

	int mapped = mfd("mapped", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	CHECK(ftruncate(mapped, 8192) == 0);
	char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, mapped, 0);
	CHECK(m != MAP_FAILED);
	memcpy(m, "mapped before", 13);
	CHECK(fcntl(mapped, F_ADD_SEALS, F_SEAL_GROW) == 0);
	CHECK(munmap(m, 8192) == 0);

	int plain = mfd("plain", 0);
	CHECK(write(plain, "plain data", 10) == 10);
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", plain);
	int again = open(path, O_RDONLY);
	CHECK(again >= 0);

	for (int i = 1; i <= ticks; i++) {
		printf("tick %d\n", i);
		sleep_ms(100);
	}
	show("sealed", sealed);
	EXPECT_ERR("sealed write", write(sealed, "x", 1));
	EXPECT_ERR("sealed truncate", ftruncate(sealed, 1));
	EXPECT_ERR("sealed add", fcntl(sealed, F_ADD_SEALS, F_SEAL_FUTURE_WRITE));
	EXPECT_ERR("sealed shared writable map",
		   mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sealed, 0) == MAP_FAILED ? -1 : 0);

	show("mapped", mapped);
	m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, mapped, 0);
	CHECK(m != MAP_FAILED);
	printf("new map reads: %.13s\n", m);
	memcpy(m + 4096, "after", 5);
	char buf[8] = { 0 };
	CHECK(pread(mapped, buf, 5, 4096) == 5);
	printf("fd sees the map: %.5s\n", buf);
	CHECK(pwrite(mapped, "FD", 2, 0) == 2);
	printf("map sees the fd: %.4s\n", m);
	EXPECT_ERR("mapped grow", ftruncate(mapped, 16384));
	EXPECT_ERR("seal write while mapped", fcntl(mapped, F_ADD_SEALS, F_SEAL_WRITE));
	CHECK(munmap(m, 8192) == 0);
	printf("seal write unmapped: %d\n", fcntl(mapped, F_ADD_SEALS, F_SEAL_WRITE));
	printf("cloexec kept: %d\n", (fcntl(mapped, F_GETFD) & FD_CLOEXEC) != 0);

	show("plain", plain);
	show("again", again);
	EXPECT_ERR("plain add", fcntl(plain, F_ADD_SEALS, F_SEAL_WRITE));
	CHECK(write(plain, "+more", 5) == 5);
	CHECK(read(again, buf, 5) == 5);
	printf("again reads: %.5s\n", buf);
	printf("done\n");
	return 0;
}
