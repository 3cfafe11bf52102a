/* FIFOs across a checkpoint: FIFO "a" holds unread bytes with a
 * non-blocking reader and a writer open, FIFO "c" is open O_RDWR with
 * bytes in it, and a child is blocked in open(2) of FIFO "b" waiting for a
 * writer (the open restarts after a restore). Each tick prints a line that
 * depends on the tick alone; at the end the held bytes are read, a new
 * writer opened by path must join the restored pipe (a non-blocking
 * O_WRONLY open succeeds only with a reader on it), and the waiting child
 * gets a line through "b".
 * Usage: ckpt_fifo TICKS */
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

static void path_of(char *buf, size_t n, const char *dir, const char *name)
{
	snprintf(buf, n, "%s/%s", dir, name);
}

int main(int argc, char **argv)
{
	int ticks = argc > 1 ? atoi(argv[1]) : 10;
	setvbuf(stdout, NULL, _IOLBF, 0);
	char dir[64], a[96], b[96], c[96], buf[64];
	make_tmpdir("ckpt-fifo", dir, sizeof dir);
	path_of(a, sizeof a, dir, "a");
	path_of(b, sizeof b, dir, "b");
	path_of(c, sizeof c, dir, "c");
	CHECK(mkfifo(a, 0600) == 0 && mkfifo(b, 0600) == 0 && mkfifo(c, 0600) == 0);

	int rd = open(a, O_RDONLY | O_NONBLOCK);
	CHECK(rd >= 0);
	int wr = open(a, O_WRONLY);
	CHECK(wr >= 0);
	CHECK(write(wr, "held\n", 5) == 5);
	int rw = open(c, O_RDWR);
	CHECK(rw >= 0);
	CHECK(write(rw, "rw-data\n", 8) == 8);

	pid_t kid = fork();
	CHECK(kid >= 0);
	if (kid == 0) {
		close(rd);
		close(wr);
		close(rw);
		int r = open(b, O_RDONLY);
		if (r < 0)
			_exit(3);
		ssize_t n = read(r, buf, sizeof buf);
		printf("child got %.*s", (int)(n > 0 ? n : 0), buf);
		_exit(n > 0 ? 0 : 4);
	}

	for (int i = 1; i <= ticks; i++) {
		printf("tick %d\n", i);
		sleep_ms(100);
	}

	ssize_t n = read(rd, buf, sizeof buf);
	printf("held bytes: %.*s", (int)(n > 0 ? n : 0), buf);
	int again = open(a, O_WRONLY | O_NONBLOCK);
	printf("new writer joined: %d\n", again >= 0);
	CHECK(again >= 0);
	CHECK(write(again, "again\n", 6) == 6);
	n = read(rd, buf, sizeof buf);
	printf("through the new writer: %.*s", (int)(n > 0 ? n : 0), buf);
	struct stat fs, ps;
	CHECK(fstat(rd, &fs) == 0 && stat(a, &ps) == 0);
	printf("same inode: %d fifo: %d\n", fs.st_ino == ps.st_ino, S_ISFIFO(fs.st_mode));
	n = read(rw, buf, sizeof buf);
	printf("rdwr bytes: %.*s", (int)(n > 0 ? n : 0), buf);
	close(again);
	close(wr);
	n = read(rd, buf, sizeof buf);
	printf("after the writers closed: %zd\n", n);

	int to_kid = open(b, O_WRONLY);
	CHECK(to_kid >= 0);
	CHECK(write(to_kid, "through b\n", 10) == 10);
	close(to_kid);
	int status;
	CHECK(waitpid(kid, &status, 0) == kid);
	printf("child exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	unlink(a);
	unlink(b);
	unlink(c);
	rmdir(dir);
	printf("done\n");
	return 0;
}
