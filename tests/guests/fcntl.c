/* fcntl: F_GETFL/F_SETFL (O_APPEND, O_NONBLOCK; the access mode cannot be
 * changed), F_DUPFD (lowest free fd >= arg), F_DUPFD_CLOEXEC,
 * F_GETFD/F_SETFD with FD_CLOEXEC, and errors on bad fds. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>

static void flags(const char *label, int fd)
{
	int fl = fcntl(fd, F_GETFL);
	const char *acc = (fl & O_ACCMODE) == O_RDONLY ? "rdonly" :
			  (fl & O_ACCMODE) == O_WRONLY ? "wronly" : "rdwr";
	printf("%s: acc=%s append=%d nonblock=%d\n", label, acc, !!(fl & O_APPEND), !!(fl & O_NONBLOCK));
}

int main(void)
{
	char dir[64], path[128];
	make_tmpdir("fcntl", dir, sizeof dir);
	snprintf(path, sizeof path, "%s/f", dir);
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	CHECK(fd >= 0);
	flags("initial", fd);

	CHECK(fcntl(fd, F_SETFL, O_APPEND | O_NONBLOCK | O_RDONLY) == 0);
	flags("after_setfl", fd);
	/* With O_APPEND every write goes to the end, whatever the offset. */
	CHECK(write(fd, "abc", 3) == 3);
	lseek(fd, 0, SEEK_SET);
	CHECK(write(fd, "def", 3) == 3);
	printf("append_offset=%ld\n", (long)lseek(fd, 0, SEEK_CUR));
	CHECK(fcntl(fd, F_SETFL, 0) == 0);
	flags("cleared", fd);

	int ro = open(path, O_RDONLY);
	CHECK(ro >= 0);
	flags("readonly", ro);

	/* F_DUPFD returns the lowest free descriptor >= arg. */
	int d1 = fcntl(fd, F_DUPFD, 10);
	int d2 = fcntl(fd, F_DUPFD, 10);
	printf("dupfd=%d,%d\n", d1, d2);
	printf("dupfd_cloexec_flag=%d\n", fcntl(d1, F_GETFD));
	int d3 = fcntl(fd, F_DUPFD_CLOEXEC, 20);
	printf("dupfd_cloexec=%d flag=%d\n", d3, fcntl(d3, F_GETFD));

	/* FD_CLOEXEC is per descriptor, not per open file. */
	CHECK(fcntl(d1, F_SETFD, FD_CLOEXEC) == 0);
	printf("getfd: d1=%d d2=%d fd=%d\n", fcntl(d1, F_GETFD), fcntl(d2, F_GETFD), fcntl(fd, F_GETFD));
	CHECK(fcntl(d1, F_SETFD, 0) == 0);
	printf("getfd_cleared=%d\n", fcntl(d1, F_GETFD));

	/* Status flags are shared between duplicates (same open file). */
	CHECK(fcntl(d2, F_SETFL, O_NONBLOCK) == 0);
	flags("shared_via_dup", fd);

	EXPECT_ERR("getfl_badfd", fcntl(999, F_GETFL));
	EXPECT_ERR("dupfd_negative", fcntl(fd, F_DUPFD, -1));
	EXPECT_ERR("bad_cmd", fcntl(fd, 0x7fff));

	close(d1);
	close(d2);
	close(d3);
	close(ro);
	close(fd);
	unlink(path);
	rmdir(dir);
	return 0;
}
