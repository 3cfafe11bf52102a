/* ioctl TCGETS/TIOCGWINSZ on things that are not terminals (a regular file,
 * a pipe, /dev/null) must fail with ENOTTY; isatty() agrees. FIONREAD on a
 * pipe reports the buffered byte count. A bad fd is EBADF. */
#include "common.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>

int main(void)
{
	struct termios t;
	struct winsize ws;
	int fd = open("/etc/passwd", O_RDONLY);
	CHECK(fd >= 0);
	EXPECT_ERR("file_tcgets", ioctl(fd, TCGETS, &t));
	EXPECT_ERR("file_tiocgwinsz", ioctl(fd, TIOCGWINSZ, &ws));
	printf("file_isatty=%d\n", isatty(fd));
	close(fd);

	int p[2];
	CHECK(pipe(p) == 0);
	EXPECT_ERR("pipe_tcgets", ioctl(p[0], TCGETS, &t));
	EXPECT_ERR("pipe_tiocgwinsz", ioctl(p[1], TIOCGWINSZ, &ws));
	CHECK(write(p[1], "12345", 5) == 5);
	int avail = -1;
	CHECK(ioctl(p[0], FIONREAD, &avail) == 0);
	printf("pipe_fionread=%d\n", avail);
	close(p[0]);
	close(p[1]);

	int null = open("/dev/null", O_RDWR);
	CHECK(null >= 0);
	EXPECT_ERR("devnull_tcgets", ioctl(null, TCGETS, &t));
	close(null);

	EXPECT_ERR("badfd_tcgets", ioctl(999, TCGETS, &t));
	return 0;
}
