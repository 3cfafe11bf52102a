/* Checkpoint workload: ckpt_counter [MiB=64] [file=/etc/passwd] [count=inf] [procs=1]
 *
 * Fills MiB mebibytes with a known pattern in which every fourth page is
 * left zero (so a statefile can skip them), opens `file` and reads part of
 * it so the fd sits at a non-zero offset, then every 100 ms prints
 *   counter=N checksum=HEX clock_back=0|1 fileoff=K
 * where checksum is recomputed over the whole buffer each time (memory
 * must survive a checkpoint/restore intact), clock_back says whether
 * CLOCK_MONOTONIC ever went backwards (it must not, across restore), and
 * fileoff is the fd's offset (fds must survive too). Stops after `count`
 * lines (forever if absent or negative). The buffer is also mutated
 * deterministically each iteration so a restore from a stale image is
 * detected.
 *
 * With procs > 1 the process forks procs-1 children once the buffer is
 * filled (sharing it copy-on-write); each wakes every 100 ms and writes
 * one byte of its own page, and dies with its parent (PR_SET_PDEATHSIG).
 * The parent's lines then end with " alive=K": how many children are
 * still running, checked each time, so a tree that lost a process across
 * a checkpoint shows it. */
#include <sys/mman.h>
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

/* FNV-1a-style hash over 64-bit words: fast enough to redo over 64 MiB
 * every iteration. */
static unsigned long long checksum(const unsigned char *buf, size_t size)
{
	unsigned long long h = FNV_INIT, w;
	for (size_t i = 0; i < size; i += sizeof w) {
		memcpy(&w, buf + i, sizeof w);
		h = (h ^ w) * 1099511628211ULL;
		h ^= h >> 29; /* the multiply alone never mixes high bits into low ones */
	}
	return h;
}

static long long mono_ns(void)
{
	struct timespec t;
	CHECK(clock_gettime(CLOCK_MONOTONIC, &t) == 0);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void child_loop(unsigned char *page, pid_t parent)
{
	CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL) == 0);
	if (getppid() != parent)
		_exit(0);
	for (;;) {
		page[0]++;
		struct timespec req = { 0, 100 * 1000 * 1000 };
		while (nanosleep(&req, &req) != 0 && errno == EINTR)
			;
	}
}

/* Children still running (not exited, not a zombie). */
static int alive(const pid_t *kids, long n)
{
	int k = 0;
	for (long i = 0; i < n; i++) {
		siginfo_t si;
		memset(&si, 0, sizeof si);
		if (waitid(P_PID, (id_t)kids[i], &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == 0)
			k++;
	}
	return k;
}

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 64;
	const char *file = argc > 2 ? argv[2] : "/etc/passwd";
	long count = argc > 3 ? atol(argv[3]) : -1;
	long procs = argc > 4 ? atol(argv[4]) : 1;
	CHECK(mib > 0 && mib <= 4096);
	CHECK(procs >= 1 && procs <= 64 && (size_t)procs <= ((size_t)mib << 20) / 4096);

	const size_t pg = 4096, size = (size_t)mib << 20;
	/* Page-aligned (malloc's header would shift every "zero page" across a
	 * page boundary), so the zero pages really are whole zero pages. */
	unsigned char *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	for (size_t p = 0; p < size / pg; p++) {
		if (p % 4 == 3)
			memset(buf + p * pg, 0, pg); /* a quarter of the pages are zero */
		else
			fill_pattern(buf + p * pg, pg, (unsigned)p + 1);
	}

	int fd = open(file, O_RDONLY);
	CHECK(fd >= 0);
	char tmp[17];
	ssize_t got = read(fd, tmp, sizeof tmp);
	CHECK(got > 0);

	pid_t kids[64];
	pid_t me = getpid();
	fflush(stdout);
	for (long i = 0; i < procs - 1; i++) {
		kids[i] = fork();
		CHECK(kids[i] >= 0);
		if (kids[i] == 0)
			child_loop(buf + (size_t)i * pg, me);
	}

	long long last = mono_ns();
	int clock_back = 0;
	for (long n = 0; count < 0 || n < count; n++) {
		/* Deterministic mutation: bump one byte in a non-zero page. */
		size_t page = ((size_t)n * 7919) % (size / pg);
		if (page % 4 == 3)
			page--;
		buf[page * pg + (size_t)n % pg]++;

		unsigned long long h = checksum(buf, size);
		long long now = mono_ns();
		clock_back |= now < last;
		last = now;
		printf("counter=%ld checksum=%016llx clock_back=%d fileoff=%ld", n, h, clock_back,
		       (long)lseek(fd, 0, SEEK_CUR));
		if (procs > 1)
			printf(" alive=%d", alive(kids, procs - 1));
		printf("\n");
		fflush(stdout);

		struct timespec req = { 0, 100 * 1000 * 1000 };
		while (nanosleep(&req, &req) != 0 && errno == EINTR)
			;
		long long after = mono_ns();
		clock_back |= after < now;
		last = after;
	}
	return 0;
}
