/* dup/dup2/dup3: lowest-free-fd allocation, shared file offsets between
 * duplicates, dup2 onto itself, dup3 O_CLOEXEC and its EINVAL cases. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>

int main(void)
{
	int fd = open("/etc/passwd", O_RDONLY);
	CHECK(fd == 3); /* 0, 1, 2 are open; 3 is the lowest free */
	int d = dup(fd);
	printf("dup=%d\n", d);

	/* Duplicates share the offset. */
	char c;
	CHECK(read(fd, &c, 1) == 1);
	printf("shared_offset=%ld\n", (long)lseek(d, 0, SEEK_CUR));

	/* Closing a low fd makes it the next one handed out. */
	close(fd);
	printf("reuse_lowest=%d\n", dup(d));

	printf("dup2=%d\n", dup2(d, 42));
	printf("dup2_same=%d\n", dup2(d, d));
	printf("dup2_cloexec=%d\n", fcntl(42, F_GETFD));
	EXPECT_ERR("dup2_badfd", dup2(999, 43));
	EXPECT_ERR("dup2_same_badfd", dup2(999, 999));

	printf("dup3=%d\n", dup3(d, 50, O_CLOEXEC));
	printf("dup3_cloexec=%d\n", fcntl(50, F_GETFD));
	EXPECT_ERR("dup3_same", dup3(d, d, 0));
	EXPECT_ERR("dup3_badflags", dup3(d, 51, 0x1234));

	/* dup2 over an open fd closes it silently first. */
	int p[2];
	CHECK(pipe(p) == 0);
	CHECK(dup2(p[1], 42) == 42);
	CHECK(write(42, "z", 1) == 1);
	CHECK(read(p[0], &c, 1) == 1);
	printf("dup2_replaced_writes_pipe=%d\n", c == 'z');

	/* Redirect stdout to a duplicate of itself: still works. */
	fflush(stdout);
	int saved = dup(1);
	CHECK(dup2(saved, 1) == 1);
	printf("stdout_still_works=1\n");
	EXPECT_ERR("dup_badfd", dup(-1));
	return 0;
}
