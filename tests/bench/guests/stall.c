/* stall [MiB=64]: how long the program stops while it is checkpointed.
 *
 * Fills MiB mebibytes with pseudo-random words (so a statefile has real
 * work compressing them), then loops as fast as it can: each iteration
 * writes one word of the next page (walking the whole buffer, so the
 * program keeps dirtying memory the way a busy one does) and reads
 * CLOCK_MONOTONIC. Every 100 ms it prints
 *   w=N max_us=G iters=K
 * G: the longest time between two consecutive iterations in that window,
 * K: iterations in it. A checkpoint that stops the program shows as one
 * window with a large G; one that slows it down, as windows with a smaller
 * K. Runs until killed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 64;
	size_t words = (size_t)mib << 17;
	uint64_t *buf = mmap(NULL, words * 8, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED || mib <= 0) {
		perror("mmap");
		return 1;
	}
	uint64_t x = 88172645463325252ULL;
	for (size_t i = 0; i < words; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = x;
	}
	size_t pages = words / 512, page = 0;
	long long start = now_ns(), prev = start, window_end = start + 100000000LL;
	long long max_gap = 0, iters = 0, w = 0;
	for (;;) {
		buf[page * 512 + (iters & 511)] ^= (uint64_t)iters;
		if (++page == pages)
			page = 0;
		iters++;
		long long t = now_ns();
		if (t - prev > max_gap)
			max_gap = t - prev;
		prev = t;
		if (t >= window_end) {
			printf("w=%lld max_us=%lld iters=%lld\n", w++, max_gap / 1000, iters);
			fflush(stdout);
			max_gap = 0;
			iters = 0;
			window_end = t + 100000000LL;
			/* The print's own time is not a stall. */
			prev = now_ns();
		}
	}
}
