/* Puts state in the sandbox's /tmp (tmpfs, the overlay's upper layer) for
 * the tmpfs checkpoint tests, then reports on it forever, so that a restored
 * copy shows what it found after the restore.
 *
 *   tmpfs_state zeros   writes a 64 MiB file of zeros
 *   tmpfs_state text    writes 64 MiB of repetitive ASCII lines
 *   tmpfs_state deep    builds a directory chain 20,000 deep with a marker
 *                       file at the bottom
 *   tmpfs_state shm     maps a /dev/shm file MAP_SHARED and writes through
 *                       the mapping and with write(2), never msync
 *
 * Every report re-reads what was written: "sum=<fnv1a64> size=<bytes> n=<i>"
 * for a file, "depth=<reached> marker=<text> n=<i>" for the chain,
 * "map=<text> file=<text> mapsees=<text> coherent=<0|1> n=<i>" for shm (what
 * the mapping and read(2) show of what each wrote, and whether a fresh write
 * each way is seen the other way at once). The first
 * report follows the writing at once; later ones come every second, and the
 * chain is walked only just before a report, so a checkpoint taken right
 * after a report finds the guest asleep with no directory of the chain open.
 */
#include "common.h"
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
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

static void report_shm(int fd, char *m, long pg, unsigned n)
{
	char file[16] = { 0 }, tag[16], back[16] = { 0 };
	CHECK(pread(fd, file, 6, 100) == 6);
	/* A fresh write each way, seen the other way with no msync. */
	snprintf(tag, sizeof tag, "m%05u", n % 100000);
	memcpy(m + 200, tag, 6);
	CHECK(pread(fd, back, 6, 200) == 6);
	int coherent = memcmp(back, tag, 6) == 0;
	snprintf(tag, sizeof tag, "w%05u", n % 100000);
	CHECK(pwrite(fd, tag, 6, 300) == 6);
	coherent = coherent && memcmp(m + 300, tag, 6) == 0;
	printf("map=%.6s file=%s mapsees=%.5s coherent=%d n=%u\n", m + 100, file, m + pg + 7,
	       coherent, n);
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
	if (strcmp(mode, "shm") == 0) {
		long pg = sysconf(_SC_PAGESIZE);
		int fd = open("/dev/shm/tmpfs_state.seg", O_RDWR | O_CREAT | O_EXCL, 0600);
		CHECK(fd >= 0);
		CHECK(ftruncate(fd, 2 * pg) == 0);
		char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		CHECK(m != MAP_FAILED);
		memcpy(m + 100, "mapped", 6);
		CHECK(pwrite(fd, "wrote", 5, pg + 7) == 5);
		for (unsigned n = 0;; n++) {
			report_shm(fd, m, pg, n);
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
