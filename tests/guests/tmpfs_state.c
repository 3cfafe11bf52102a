/* Puts state in the sandbox's /tmp (tmpfs, the overlay's upper layer) for
 * the tmpfs checkpoint tests, then reports on it forever, so that a restored
 * copy shows what it found after the restore.
 *
 *   tmpfs_state zeros   writes a 64 MiB file of zeros
 *   tmpfs_state text    writes 64 MiB of repetitive ASCII lines
 *   tmpfs_state deep    builds a directory chain 20,000 deep with a marker
 *                       file at the bottom
 *
 * Every report re-reads what was written: "sum=<fnv1a64> size=<bytes> n=<i>"
 * for a file, "depth=<reached> marker=<text> n=<i>" for the chain. The first
 * report follows the writing at once; later ones come every second, and the
 * chain is walked only just before a report, so a checkpoint taken right
 * after a report finds the guest asleep with no directory of the chain open.
 */
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#define FILE_SIZE (64u << 20)
#define DEPTH 20000

static char buf[1 << 20];

static void nap(void)
{
	struct timespec ts = { 1, 0 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		CHECK(w > 0);
		p += w;
		n -= (size_t)w;
	}
}

static void fill_text(void)
{
	/* 64-byte lines: a counter and a constant sentence. */
	size_t off = 0;
	unsigned line = 0;
	while (off + 64 <= sizeof buf) {
		snprintf(buf + off, 65, "%08u the quick brown fox jumps over the lazy dog, again....\n",
			 line++ % 100000000u);
		off += 64;
	}
}

static void report_file(const char *path, unsigned n)
{
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	uint64_t h = 0xcbf29ce484222325ull;
	size_t total = 0;
	for (;;) {
		ssize_t r = read(fd, buf, sizeof buf);
		CHECK(r >= 0);
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r; i++) {
			h ^= (unsigned char)buf[i];
			h *= 0x100000001b3ull;
		}
		total += (size_t)r;
	}
	close(fd);
	printf("sum=%016llx size=%zu n=%u\n", (unsigned long long)h, total, n);
	fflush(stdout);
}

static void report_chain(unsigned n)
{
	int fd = open("/tmp/chain", O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0);
	int depth = 0;
	while (depth < DEPTH) {
		int next = openat(fd, "d", O_RDONLY | O_DIRECTORY);
		if (next < 0)
			break;
		close(fd);
		fd = next;
		depth++;
	}
	char marker[32] = "none";
	int m = openat(fd, "marker", O_RDONLY);
	if (m >= 0) {
		ssize_t r = read(m, marker, sizeof marker - 1);
		marker[r > 0 ? r : 0] = 0;
		close(m);
	}
	close(fd);
	printf("depth=%d marker=%s n=%u\n", depth, marker, n);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	const char *mode = argv[1];
	const char *path = "/tmp/tmpfs_state.data";
	if (strcmp(mode, "deep") == 0) {
		CHECK(mkdir("/tmp/chain", 0755) == 0);
		int fd = open("/tmp/chain", O_RDONLY | O_DIRECTORY);
		CHECK(fd >= 0);
		for (int i = 0; i < DEPTH; i++) {
			CHECK(mkdirat(fd, "d", 0755) == 0);
			int next = openat(fd, "d", O_RDONLY | O_DIRECTORY);
			CHECK(next >= 0);
			close(fd);
			fd = next;
		}
		int m = openat(fd, "marker", O_WRONLY | O_CREAT | O_EXCL, 0644);
		CHECK(m >= 0);
		write_all(m, "bottom", 6);
		close(m);
		close(fd);
		for (unsigned n = 0;; n++) {
			report_chain(n);
			nap();
		}
	}
	int zeros = strcmp(mode, "zeros") == 0;
	CHECK(zeros || strcmp(mode, "text") == 0);
	if (zeros)
		memset(buf, 0, sizeof buf);
	else
		fill_text();
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	CHECK(fd >= 0);
	for (unsigned i = 0; i < FILE_SIZE / sizeof buf; i++)
		write_all(fd, buf, sizeof buf);
	close(fd);
	for (unsigned n = 0;; n++) {
		report_file(path, n);
		nap();
	}
}
