/* Benchmark guest: open_read_close [N=100000] [FILE=/etc/hostname]
 *
 * N iterations of open(FILE, O_RDONLY), read up to 256 bytes, close; prints
 * the cost of one iteration (three system calls), measured inside the guest
 * with CLOCK_MONOTONIC:
 *   open_read_close file=F iterations=N total_ns=T ns_per_op=X.Y
 * One untimed warm-up iteration runs first (it also checks that FILE is
 * readable). Build: gcc -O2 -static. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long mono_ns(void)
{
	struct timespec t;
	if (clock_gettime(CLOCK_MONOTONIC, &t) != 0) {
		perror("clock_gettime");
		exit(1);
	}
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void one(const char *file)
{
	char buf[256];
	int fd = open(file, O_RDONLY);
	if (fd < 0) {
		perror(file);
		exit(1);
	}
	if (read(fd, buf, sizeof buf) < 0) {
		perror("read");
		exit(1);
	}
	if (close(fd) != 0) {
		perror("close");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	const char *file = argc > 2 ? argv[2] : "/etc/hostname";
	if (n <= 0) {
		fprintf(stderr, "usage: %s [iterations>0] [file]\n", argv[0]);
		return 2;
	}
	one(file); /* warm-up, and fail early if the file is unreadable */
	long long t0 = mono_ns();
	for (long i = 0; i < n; i++)
		one(file);
	long long t1 = mono_ns();
	printf("open_read_close file=%s iterations=%ld total_ns=%lld ns_per_op=%.1f\n", file, n,
	       t1 - t0, (double)(t1 - t0) / (double)n);
	return 0;
}
