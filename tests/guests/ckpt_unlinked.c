/* Files with no name across a checkpoint: one made with O_TMPFILE in
 * /tmp, one in /dev/shm unlinked after writing, and one unlinked in the
 * root's upper layer (/var/tmp) whose descriptor a child shares, each
 * holding known bytes at a known offset. Each tick prints a line that
 * depends on the tick alone; at the end every file is read back through
 * its descriptor (offset, bytes, size, st_nlink 0) and written on, and
 * /proc/self/fd still names the first as deleted.
 * Usage: ckpt_unlinked TICKS */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int unlinked(const char *dir, const char *tag)
{
	char path[128];
	snprintf(path, sizeof path, "%s/cryo-unlinked-%s-XXXXXX", dir, tag);
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK(unlink(path) == 0);
	return fd;
}

static void fill(int fd, const char *tag)
{
	char buf[64];
	int n = snprintf(buf, sizeof buf, "%s-head,%s-tail", tag, tag);
	CHECK(write(fd, buf, n) == n);
	CHECK(lseek(fd, 5, SEEK_SET) == 5);
}

static void check(int fd, const char *tag)
{
	char buf[64];
	struct stat st;
	CHECK(fstat(fd, &st) == 0);
	off_t at = lseek(fd, 0, SEEK_CUR);
	ssize_t n = read(fd, buf, sizeof buf);
	printf("%s: nlink=%lu size=%ld offset=%ld rest=%.*s\n", tag, (unsigned long)st.st_nlink, (long)st.st_size,
	       (long)at, (int)(n > 0 ? n : 0), buf);
	CHECK(write(fd, "+more", 5) == 5);
	CHECK(pread(fd, buf, sizeof buf, 0) > 0);
	CHECK(fstat(fd, &st) == 0);
	printf("%s: grew to %ld\n", tag, (long)st.st_size);
}

int main(int argc, char **argv)
{
	int ticks = argc > 1 ? atoi(argv[1]) : 10;
	setvbuf(stdout, NULL, _IOLBF, 0);
	int tmp = open("/tmp", O_TMPFILE | O_RDWR, 0600);
	CHECK(tmp >= 0);
	fill(tmp, "tmpfile");
	int shm = unlinked("/dev/shm", "shm");
	fill(shm, "shm");
	int var = unlinked("/var/tmp", "var");
	fill(var, "var");
	char link[64], name[256];
	snprintf(link, sizeof link, "/proc/self/fd/%d", var);
	ssize_t k = readlink(link, name, sizeof name - 1);
	CHECK(k > 0);
	name[k] = 0;
	printf("deleted name shown: %d\n", strstr(name, " (deleted)") != NULL);

	pid_t kid = fork();
	CHECK(kid >= 0);
	if (kid == 0) {
		/* Shares `var`'s description: its offset moves for both. */
		sleep_ms(100L * ticks + 300);
		char c;
		_exit(read(var, &c, 1) == 1 ? 0 : 3);
	}
	for (int i = 1; i <= ticks; i++) {
		printf("tick %d\n", i);
		sleep_ms(100);
	}
	check(tmp, "tmpfile");
	check(shm, "shm");
	int st;
	CHECK(waitpid(kid, &st, 0) == kid);
	printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	check(var, "var");
	k = readlink(link, name, sizeof name - 1);
	CHECK(k > 0);
	name[k] = 0;
	printf("deleted name still shown: %d\n", strstr(name, " (deleted)") != NULL);
	printf("done\n");
	return 0;
}
