/* vmsplice(2): user pages into a pipe and out of one, with several
 * segments, SPLICE_F_GIFT (a copy here) and SPLICE_F_NONBLOCK (EAGAIN on
 * a full or empty pipe; the end's O_NONBLOCK does not count), no
 * segments, EPIPE without readers, EBADF for a
 * file that is not a pipe and a bad descriptor, EINVAL for unknown
 * flags. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/uio.h>

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	int p[2];
	CHECK(pipe(p) == 0);
	struct iovec in[2] = { { "hello ", 6 }, { "world", 5 } };
	printf("to pipe: %zd\n", vmsplice(p[1], in, 2, 0));
	char buf[64] = { 0 };
	CHECK(read(p[0], buf, sizeof buf) == 11);
	printf("read: %s\n", buf);

	static char page[4096] __attribute__((aligned(4096)));
	memset(page, 'g', sizeof page);
	struct iovec gift = { page, sizeof page };
	printf("gift: %zd\n", vmsplice(p[1], &gift, 1, SPLICE_F_GIFT));
	/* (Linux maps the pages; what a later change of them shows is
	 * unspecified, so the page is left alone.) */
	CHECK(read(p[0], buf, 8) == 8);
	printf("gifted bytes: %.8s\n", buf);
	CHECK(read(p[0], page, sizeof page) == 4096 - 8);

	CHECK(write(p[1], "abcdef", 6) == 6);
	char x[3], y[3];
	struct iovec out[2] = { { x, 3 }, { y, 3 } };
	printf("from pipe: %zd\n", vmsplice(p[0], out, 2, 0));
	printf("segments: %.3s %.3s\n", x, y);
	printf("no segments: %zd\n", vmsplice(p[1], in, 0, 0));
	EXPECT_ERR("empty, nonblock", vmsplice(p[0], out, 2, SPLICE_F_NONBLOCK));
	EXPECT_ERR("unknown flags", vmsplice(p[1], in, 2, 0x100));
	EXPECT_ERR("bad fd", vmsplice(999, in, 2, 0));
	int f = open("/proc/self/exe", O_RDONLY);
	CHECK(f >= 0);
	EXPECT_ERR("not a pipe", vmsplice(f, out, 2, 0));

	CHECK(fcntl(p[1], F_SETFL, O_NONBLOCK) == 0);
	static char fill[65536];
	ssize_t n = write(p[1], fill, sizeof fill);
	printf("filled: %zd\n", n);
	CHECK(fcntl(p[1], F_SETFL, 0) == 0);
	EXPECT_ERR("full, nonblock", vmsplice(p[1], in, 2, SPLICE_F_NONBLOCK));
	close(p[0]);
	EXPECT_ERR("no readers", vmsplice(p[1], in, 2, 0));
	close(p[1]);

	CHECK(pipe(p) == 0);
	close(p[1]);
	printf("no writers: %zd\n", vmsplice(p[0], out, 2, 0));
	printf("done\n");
	return 0;
}
