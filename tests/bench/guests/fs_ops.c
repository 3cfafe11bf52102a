/* Benchmark guest for tests/bench/fs.sh:
 *   fs_ops stat PATH N    N x stat(PATH)                 -> ns_per_op=
 *   fs_ops files DIR N    N x creat+close in DIR, then N x unlink -> ms=
 *   fs_ops read FILE      FILE read sequentially, 1 MiB at a time -> ms= mib_per_s=
 * Timed inside the guest with CLOCK_MONOTONIC; one untimed warm-up stat for
 * `stat`. DIR must exist and is left empty. Build: gcc -O2 -static. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static int usage(const char *argv0)
{
	fprintf(stderr, "usage: %s stat PATH N | files DIR N | read FILE\n", argv0);
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return usage(argv[0]);
	if (strcmp(argv[1], "stat") == 0 && argc == 4) {
		long n = atol(argv[3]);
		struct stat st;
		if (n <= 0)
			return usage(argv[0]);
		if (stat(argv[2], &st) != 0) {
			perror(argv[2]);
			return 1;
		}
		long long t0 = mono_ns();
		for (long i = 0; i < n; i++)
			if (stat(argv[2], &st) != 0) {
				perror("stat");
				return 1;
			}
		long long t = mono_ns() - t0;
		printf("stat iterations=%ld total_ns=%lld ns_per_op=%.1f\n", n, t, (double)t / n);
		return 0;
	}
	if (strcmp(argv[1], "files") == 0 && argc == 4) {
		long n = atol(argv[3]);
		char path[4096];
		if (n <= 0)
			return usage(argv[0]);
		long long t0 = mono_ns();
		for (long i = 0; i < n; i++) {
			snprintf(path, sizeof path, "%s/f%ld", argv[2], i);
			int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
			if (fd < 0 || close(fd) != 0) {
				perror(path);
				return 1;
			}
		}
		for (long i = 0; i < n; i++) {
			snprintf(path, sizeof path, "%s/f%ld", argv[2], i);
			if (unlink(path) != 0) {
				perror(path);
				return 1;
			}
		}
		long long t = mono_ns() - t0;
		printf("files n=%ld ms=%.3f\n", n, t / 1e6);
		return 0;
	}
	if (strcmp(argv[1], "read") == 0 && argc == 3) {
		static char buf[1 << 20];
		int fd = open(argv[2], O_RDONLY);
		if (fd < 0) {
			perror(argv[2]);
			return 1;
		}
		long long total = 0, t0 = mono_ns();
		for (;;) {
			ssize_t r = read(fd, buf, sizeof buf);
			if (r < 0) {
				perror("read");
				return 1;
			}
			if (r == 0)
				break;
			total += r;
		}
		long long t = mono_ns() - t0;
		close(fd);
		printf("read bytes=%lld ms=%.3f mib_per_s=%.1f\n", total, t / 1e6,
		       total / 1048576.0 / (t / 1e9));
		return 0;
	}
	return usage(argv[0]);
}
