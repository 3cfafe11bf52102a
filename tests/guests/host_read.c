/* read(2) and pread64(2) of a host file (the path in argv[1], made by the
 * test: 3 MiB + 123 bytes, byte i being (i * 7 + i / 4096) % 251), into
 * buffers good and bad: a buffer whose tail page is not writable gets the
 * bytes before it (a short count), a wholly bad one EFAULT with the offset
 * unmoved, and big reads (more than one of the Sentry's 1 MiB steps) give
 * the file's bytes exactly, at every offset and up to its end. */
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

static unsigned char want(long i)
{
	return (unsigned char)((i * 7 + i / 4096) % 251);
}

static long mismatch(const unsigned char *b, long n, long at)
{
	for (long i = 0; i < n; i++)
		if (b[i] != want(at + i))
			return at + i;
	return -1;
}

static void show(const char *what, ssize_t r, int fd)
{
	int e = r < 0 ? errno : 0;
	printf("%s: %zd %s, offset now %ld\n", what, r, r < 0 ? errname(e) : "OK",
	       (long)lseek(fd, 0, SEEK_CUR));
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0) {
		printf("open: %s\n", errname(errno));
		return 1;
	}
	long page = 4096;
	unsigned char *two = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mprotect(two + page, page, PROT_READ);
	ssize_t r = read(fd, two + 100, 2 * page);
	show("read over a read-only tail page", r, fd);
	printf("  bytes right: %d\n", r > 0 && mismatch(two + 100, r, 0) < 0);
	r = read(fd, two + page, 10);
	show("read into a read-only page", r, fd);
	volatile uintptr_t low = 8; /* opaque to the compiler's bounds checks */
	r = read(fd, (void *)low, 10);
	show("read to address 8", r, fd);
	r = pread(fd, two + page - 10, 100, 5000);
	printf("pread over the read-only page at 5000: %zd, bytes right: %d\n", r,
	       r > 0 && mismatch(two + page - 10, r, 5000) < 0);
	r = pread(fd, two, 10, -1);
	printf("pread at -1: %s\n", r < 0 ? errname(errno) : "read");

	long size = lseek(fd, 0, SEEK_END);
	printf("size %ld\n", size);
	unsigned char *big = malloc(size + 4096);
	lseek(fd, 0, SEEK_SET);
	long got = 0;
	int reads = 0;
	for (;;) {
		ssize_t n = read(fd, big + got, 1500000);
		if (n <= 0) {
			printf("read ends with %zd after %d reads\n", n, reads);
			break;
		}
		got += n;
		reads++;
	}
	printf("sequential 1500000-byte reads: %ld bytes, first wrong at %ld\n", got,
	       mismatch(big, got, 0));
	memset(big, 0, size);
	r = pread(fd, big, size + 4096, 0);
	printf("one pread of it all and more: %zd, first wrong at %ld\n", r, mismatch(big, r, 0));
	r = pread(fd, big, 2 << 20, size - 77);
	printf("pread from 77 before the end: %zd, first wrong at %ld\n", r,
	       mismatch(big, r, size - 77));
	r = pread(fd, big, 10, size + 5);
	printf("pread past the end: %zd\n", r);
	/* Reads straight into a page also mapped shared elsewhere. */
	unsigned char *sh = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				 -1, 0);
	pid_t c = fork();
	if (c == 0) {
		ssize_t n = pread(fd, sh, page, 1 << 20);
		_exit(n == page ? 0 : 1);
	}
	int st;
	waitpid(c, &st, 0);
	printf("a child's pread into shared memory: exit %d, parent sees bytes right: %d\n",
	       WEXITSTATUS(st), mismatch(sh, page, 1 << 20) < 0);

	/* A file made in /tmp (the sandbox's own tmpfs under cryo) gives the
	 * same short count over the read-only page. */
	char tmp[] = "/tmp/host_read.XXXXXX";
	int t = mkstemp(tmp);
	CHECK(t >= 0);
	unlink(tmp);
	CHECK(pread(fd, big, 8192, 0) == 8192 && write(t, big, 8192) == 8192);
	lseek(t, 0, SEEK_SET);
	r = read(t, two + page - 100, 300);
	show("read of a /tmp file over the read-only page", r, t);
	printf("  bytes right: %d\n", r > 0 && mismatch(two + page - 100, r, 0) < 0);
	r = read(t, two + page, 10);
	show("read of a /tmp file into the read-only page", r, t);
	return 0;
}
