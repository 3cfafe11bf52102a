/* Lazy-restore workload: lazy_mem [MiB=512] [STRIDE=0] [wait]
 *
 * Fills MiB mebibytes with a non-zero, page-numbered pattern and prints
 *   ready mib=N checksum=HEX
 * then polls /proc/cryo/lazy every 20 ms. Once it reads "loaded …" (the
 * sandbox was restored with --lazy), with a STRIDE it first reads one byte
 * of every STRIDE-th MiB of its buffer, from the last down (a working set
 * that is neither the buffer's start nor in its order), reads the file
 * again, and then prints it as
 *   lazy: loaded L of T chunks, prefetched P, demanded D
 * before touching the rest of its buffer (with "wait", once a SIGUSR1
 * came: a checkpoint may be taken before), then checks every page against the
 * pattern, prints
 *   verified checksum=HEX
 * and exits 0. A page that differs prints a CHECK failure. */
#include <sys/mman.h>
#include <fcntl.h>
#include <signal.h>
#include "common.h"
#include <time.h>

static volatile sig_atomic_t go;

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

static int read_lazy(char *out, size_t n)
{
	int fd = open("/proc/cryo/lazy", O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t got = read(fd, out, n - 1);
	close(fd);
	if (got < 0)
		return -1;
	out[got] = 0;
	return 0;
}

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 512;
	long stride = argc > 2 ? atol(argv[2]) : 0;
	int wait_usr1 = argc > 3 && strcmp(argv[3], "wait") == 0;
	if (wait_usr1) {
		struct sigaction sa = { .sa_handler = on_usr1 };
		sigemptyset(&sa.sa_mask);
		CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
		/* Blocked but while waiting, so that none is lost between the
		 * check and the wait. */
		sigset_t usr1;
		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		CHECK(sigprocmask(SIG_BLOCK, &usr1, NULL) == 0);
	}
	CHECK(mib > 0 && mib <= 4096);
	CHECK(stride >= 0 && stride <= mib);

	const size_t pg = 4096, size = (size_t)mib << 20, pages = size / pg;
	unsigned char *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	unsigned long long h = FNV_INIT;
	for (size_t p = 0; p < pages; p++) {
		fill_pattern(buf + p * pg, pg, (unsigned)p + 1);
		h = fnv1a(h, buf + p * pg, 64);
	}
	printf("ready mib=%ld checksum=%016llx\n", mib, h);
	fflush(stdout);

	static char state[256];
	for (;;) {
		struct timespec req = { 0, 20 * 1000 * 1000 };
		while (nanosleep(&req, &req) != 0 && errno == EINTR)
			;
		if (read_lazy(state, sizeof state) == 0 && strncmp(state, "loaded ", 7) == 0)
			break;
	}
	if (stride > 0) {
		volatile unsigned char sink = 0;
		for (long m = mib - 1; m >= 0; m -= stride)
			sink ^= buf[(size_t)m << 20];
		(void)sink;
		CHECK(read_lazy(state, sizeof state) == 0);
	}
	printf("lazy: %s", state);
	fflush(stdout);
	sigset_t waiting;
	sigemptyset(&waiting);
	while (wait_usr1 && !go)
		sigsuspend(&waiting);

	unsigned char want[4096];
	unsigned long long g = FNV_INIT;
	for (size_t p = 0; p < pages; p++) {
		fill_pattern(want, pg, (unsigned)p + 1);
		CHECK(memcmp(want, buf + p * pg, pg) == 0);
		g = fnv1a(g, buf + p * pg, 64);
	}
	printf("verified checksum=%016llx\n", g);
	fflush(stdout);
	return 0;
}
