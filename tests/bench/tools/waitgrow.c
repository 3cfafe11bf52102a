/* Host-side helper for tests/bench/checkpoint.sh (not a guest):
 *
 *   waitgrow FILE SIZE TIMEOUT_MS
 *
 * Polls FILE every millisecond until it is larger than SIZE bytes, then
 * prints the time it saw that, in microseconds since the epoch
 * (CLOCK_REALTIME, the clock of bash's EPOCHREALTIME), and exits 0. A FILE
 * that does not exist yet counts as empty. Exits 1 (printing nothing) after
 * TIMEOUT_MS, 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

static long long now_us(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return (long long)t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s FILE SIZE TIMEOUT_MS\n", argv[0]);
		return 2;
	}
	const char *file = argv[1];
	long long size = atoll(argv[2]);
	long long deadline = now_us(CLOCK_MONOTONIC) + atoll(argv[3]) * 1000LL;
	const struct timespec ms = { 0, 1000 * 1000 };
	for (;;) {
		struct stat st;
		if (stat(file, &st) == 0 && (long long)st.st_size > size) {
			printf("%lld\n", now_us(CLOCK_REALTIME));
			return 0;
		}
		if (now_us(CLOCK_MONOTONIC) > deadline)
			return 1;
		nanosleep(&ms, NULL);
	}
}
