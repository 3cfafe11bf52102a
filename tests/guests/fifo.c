/* FIFOs (named pipes): mkfifo and mknod(S_IFIFO) create them (mode after
 * umask, S_ISFIFO, DT_FIFO in getdents); open's rules — a non-blocking
 * writer without a reader fails ENXIO, a non-blocking reader goes on at
 * once, O_RDWR opens both ends, a blocking reader waits for a writer and a
 * blocking writer for a reader, a signal interrupts the wait (EINTR without
 * SA_RESTART); data through the FIFO, POLLHUP only once a writer came and
 * went, ESPIPE, truncate's EINVAL, fstat naming the FIFO's inode, and
 * mknod's errors (EPERM for a directory, EINVAL for a bad type, EEXIST).
 * Run in /tmp (tmpfs under cryo) and in /var/tmp (the overlay root). */
#define _GNU_SOURCE
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static short revents(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT };
	CHECK(poll(&p, 1, 0) >= 0);
	return p.revents;
}

static void on_alarm(int sig)
{
	(void)sig;
}

static void run_in(const char *where)
{
	char dir[96], path[128], buf[64];
	snprintf(dir, sizeof dir, "%s/cryo-guest-fifo-XXXXXX", where);
	CHECK(mkdtemp(dir) != NULL);
	printf("-- in %s\n", where);
	snprintf(path, sizeof path, "%s/p", dir);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(dfd >= 0);

	EXPECT_ERR("mkfifo", mkfifo(path, 0666));
	struct stat st;
	CHECK(stat(path, &st) == 0);
	printf("isfifo=%d mode=%o size=%ld nlink=%lu\n", S_ISFIFO(st.st_mode), st.st_mode & 07777,
	       (long)st.st_size, (unsigned long)st.st_nlink);
	EXPECT_ERR("mkfifo_again", mkfifo(path, 0600));
	EXPECT_ERR("mknodat_fifo", mknodat(dfd, "q", S_IFIFO | 0640, 0));
	EXPECT_ERR("mknodat_reg", mknodat(dfd, "r", S_IFREG | 0600, 0));
	EXPECT_ERR("mknodat_zero_type", mknodat(dfd, "z", 0600, 0));
	CHECK(fstatat(dfd, "z", &st, 0) == 0);
	printf("zero_type_is_reg=%d size=%ld\n", S_ISREG(st.st_mode), (long)st.st_size);
	EXPECT_ERR("mknodat_dir", mknodat(dfd, "d", S_IFDIR | 0700, 0));
	EXPECT_ERR("mknodat_bad_type", mknodat(dfd, "x", 0170000 | 0600, 0));
	EXPECT_ERR("mknodat_missing_parent", mknodat(dfd, "no/such", S_IFIFO | 0600, 0));

	/* getdents names the FIFO DT_FIFO. */
	DIR *d = fdopendir(dup(dfd));
	CHECK(d != NULL);
	struct dirent *e;
	int p_fifo = -1, q_fifo = -1;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, "p") == 0)
			p_fifo = e->d_type == DT_FIFO;
		if (strcmp(e->d_name, "q") == 0)
			q_fifo = e->d_type == DT_FIFO;
	}
	printf("dirent p fifo=%d q fifo=%d\n", p_fifo, q_fifo);
	closedir(d);

	EXPECT_ERR("open_wr_nonblock_no_reader", open(path, O_WRONLY | O_NONBLOCK));
	int rd = open(path, O_RDONLY | O_NONBLOCK);
	CHECK(rd >= 0);
	printf("read_no_writer=%zd\n", read(rd, buf, sizeof buf));
	printf("poll_before_writer=%#x\n", revents(rd));
	int wr = open(path, O_WRONLY | O_NONBLOCK);
	CHECK(wr >= 0);
	printf("poll_writer=%#x\n", revents(wr));
	CHECK(write(wr, "hello", 5) == 5);
	printf("poll_data=%#x\n", revents(rd));
	ssize_t n = read(rd, buf, sizeof buf);
	printf("read=%.*s\n", (int)n, buf);
	EXPECT_ERR("read_empty", read(rd, buf, sizeof buf));
	EXPECT_ERR("lseek", lseek(rd, 0, SEEK_SET));
	EXPECT_ERR("truncate", truncate(path, 0));
	struct stat fst;
	CHECK(fstat(rd, &fst) == 0);
	CHECK(stat(path, &st) == 0);
	printf("fstat_isfifo=%d same_ino=%d\n", S_ISFIFO(fst.st_mode), fst.st_ino == st.st_ino);
	CHECK(write(wr, "bye", 3) == 3);
	CHECK(close(wr) == 0);
	printf("poll_writer_gone=%#x\n", revents(rd));
	n = read(rd, buf, sizeof buf);
	printf("read_rest=%.*s then=%zd\n", (int)n, buf, read(rd, buf, sizeof buf));
	CHECK(close(rd) == 0);

	/* O_RDWR: both ends in one file, no waiting. */
	int rw = open(path, O_RDWR);
	CHECK(rw >= 0);
	CHECK(write(rw, "both", 4) == 4);
	n = read(rw, buf, sizeof buf);
	printf("rdwr=%.*s\n", (int)n, buf);
	CHECK(close(rw) == 0);

	/* A blocking reader waits for a writer (the child's, 50 ms later). */
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		sleep_ms(50);
		int w = open(path, O_WRONLY);
		if (w < 0 || write(w, "from child", 10) != 10)
			_exit(3);
		_exit(0);
	}
	rd = open(path, O_RDONLY);
	CHECK(rd >= 0);
	size_t got = 0;
	while ((n = read(rd, buf + got, sizeof buf - got)) > 0)
		got += n;
	printf("blocking_reader_got=%.*s\n", (int)got, buf);
	int status;
	CHECK(waitpid(c, &status, 0) == c);
	printf("writer_child_exit=%d\n", WEXITSTATUS(status));
	CHECK(close(rd) == 0);

	/* A blocking writer waits for a reader. */
	c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		sleep_ms(50);
		int r = open(path, O_RDONLY);
		char b[16];
		ssize_t k = r < 0 ? -1 : read(r, b, sizeof b);
		_exit(k == 6 && memcmp(b, "to you", 6) == 0 ? 0 : 3);
	}
	wr = open(path, O_WRONLY);
	CHECK(wr >= 0);
	CHECK(write(wr, "to you", 6) == 6);
	CHECK(close(wr) == 0);
	CHECK(waitpid(c, &status, 0) == c);
	printf("reader_child_exit=%d\n", WEXITSTATUS(status));

	/* A signal interrupts an open waiting for a writer. The timer repeats:
	 * on a loaded machine its first expiry may come before the open. */
	struct sigaction sa = { .sa_handler = on_alarm };
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
	struct itimerval it = { .it_interval = { 0, 50000 }, .it_value = { 0, 50000 } };
	CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
	EXPECT_ERR("open_interrupted", open(path, O_RDONLY));
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	CHECK(setitimer(ITIMER_REAL, &off, NULL) == 0);

	EXPECT_ERR("unlink", unlink(path));
	EXPECT_ERR("stat_gone", stat(path, &st));
	CHECK(unlinkat(dfd, "q", 0) == 0 && unlinkat(dfd, "r", 0) == 0 && unlinkat(dfd, "z", 0) == 0);
	CHECK(close(dfd) == 0);
	CHECK(rmdir(dir) == 0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	umask(022);
	run_in("/tmp");
	run_in("/var/tmp");
	return 0;
}
