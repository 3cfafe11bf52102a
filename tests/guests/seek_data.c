/* lseek SEEK_DATA and SEEK_HOLE on tmpfs files (/dev/shm and a memfd):
 * a page written is data, one never written a hole, the end a hole;
 * ENXIO at or past the end and for a negative offset; after a hole is
 * punched and after truncation. With a path argument, the same probes on
 * that (host) file alone. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static void at(int fd, const char *tag, off_t pos)
{
	errno = 0;
	off_t d = lseek(fd, pos, SEEK_DATA);
	int ed = errno;
	errno = 0;
	off_t h = lseek(fd, pos, SEEK_HOLE);
	int eh = errno;
	printf("%s from %ld: data=%ld%s%s hole=%ld%s%s\n", tag, (long)pos, (long)d, d < 0 ? " " : "",
	       d < 0 ? errname(ed) : "", (long)h, h < 0 ? " " : "", h < 0 ? errname(eh) : "");
}

static void probe(int fd, const char *tag)
{
	off_t offs[] = { 0, 100, 4095, 4096, 5000, 8192, 65536, 65536 + 4096 + 1, 1 << 20,
			 (1 << 20) + 4096, (1 << 20) + 8191, (1 << 20) + 8192, 1 << 30 };
	for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
		at(fd, tag, offs[i]);
}

static void layout(int fd)
{
	CHECK(pwrite(fd, "head", 4, 0) == 4);
	CHECK(pwrite(fd, "mid", 3, 65536 + 10) == 3);
	CHECK(pwrite(fd, "two pages", 9, (1 << 20) + 4090) == 9);
	CHECK(ftruncate(fd, (1 << 20) + 8192 + 100) == 0);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1) {
		/* A sparse host file the test made: the holes are the host
		 * file system's, read through the gofer under cryo. */
		int h = open(argv[1], O_RDONLY);
		CHECK(h >= 0);
		probe(h, "host");
		EXPECT_ERR("host negative", lseek(h, -1, SEEK_HOLE));
		printf("done\n");
		return 0;
	}
	const char *path = "/dev/shm/cryo-seek-data-guest";
	int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(unlink(path) == 0);
	at(fd, "empty", 0);
	layout(fd);
	probe(fd, "shm");
	EXPECT_ERR("negative", lseek(fd, -1, SEEK_DATA));
	printf("offset after probes: %ld\n", (long)lseek(fd, 0, SEEK_CUR));
	CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65536, 4096) == 0);
	probe(fd, "punched");
	CHECK(ftruncate(fd, 70000) == 0);
	probe(fd, "truncated");

	int m = (int)syscall(SYS_memfd_create, "seek", 0);
	CHECK(m >= 0);
	layout(m);
	probe(m, "memfd");
	printf("done\n");
	return 0;
}
