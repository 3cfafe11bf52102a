/* pipe2 within a single process: data written comes back in order, an
 * empty O_NONBLOCK pipe reads EAGAIN, EOF after the write end closes, EPIPE
 * (with SIGPIPE ignored) after the read end closes, O_CLOEXEC is set,
 * lseek on a pipe is ESPIPE, and a pipe holds at least 64 KiB. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <signal.h>

int main(void)
{
	int p[2];
	CHECK(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
	printf("cloexec=%d,%d\n", fcntl(p[0], F_GETFD), fcntl(p[1], F_GETFD));
	printf("nonblock=%d\n", !!(fcntl(p[0], F_GETFL) & O_NONBLOCK));

	char buf[128];
	EXPECT_ERR("read_empty_nonblock", read(p[0], buf, sizeof buf));
	printf("write=%zd\n", write(p[1], "hello, ", 7));
	printf("write=%zd\n", write(p[1], "pipe", 4));
	ssize_t n = read(p[0], buf, sizeof buf);
	printf("read=%zd data=%.*s\n", n, (int)n, buf);
	EXPECT_ERR("lseek_pipe", lseek(p[0], 0, SEEK_CUR));
	EXPECT_ERR("write_read_end", write(p[0], "x", 1));

	/* Fill the pipe without blocking: capacity is at least 64 KiB. */
	static char big[4096];
	size_t cap = 0;
	while ((n = write(p[1], big, sizeof big)) > 0)
		cap += (size_t)n;
	printf("fill_stops_with=%s cap_at_least_64k=%d\n", errname(errno), cap >= 65536);
	size_t drained = 0;
	while ((n = read(p[0], big, sizeof big)) > 0)
		drained += (size_t)n;
	printf("drained_all=%d\n", drained == cap);

	/* EOF once the last writer is gone. */
	CHECK(write(p[1], "end", 3) == 3);
	close(p[1]);
	n = read(p[0], buf, sizeof buf);
	printf("read_before_eof=%zd eof=%zd\n", n, read(p[0], buf, sizeof buf));
	close(p[0]);

	/* EPIPE once the last reader is gone (SIGPIPE ignored). */
	signal(SIGPIPE, SIG_IGN);
	CHECK(pipe2(p, 0) == 0);
	printf("blocking_cloexec=%d\n", fcntl(p[0], F_GETFD));
	close(p[0]);
	EXPECT_ERR("write_no_reader", write(p[1], "x", 1));
	close(p[1]);
	EXPECT_ERR("pipe2_bad_flags", pipe2(p, 0x12345678));
	return 0;
}
