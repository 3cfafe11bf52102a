/* read/write/pread64/pwrite64/readv/writev on a file in /tmp, plus stdin.
 * Checks offsets: pread/pwrite must not move the file offset, readv/writev
 * scatter/gather in order, short reads at EOF. */
#include "common.h"
#include <fcntl.h>
#include <sys/uio.h>

int main(void)
{
	char dir[64], path[128], buf[64];
	make_tmpdir("rw", dir, sizeof dir);
	snprintf(path, sizeof path, "%s/f", dir);

	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	printf("write=%zd\n", write(fd, "0123456789", 10));

	/* writev: three pieces land contiguously after "0123456789". */
	struct iovec wv[3] = { { "abc", 3 }, { "", 0 }, { "DEFG", 4 } };
	printf("writev=%zd\n", writev(fd, wv, 3));
	printf("offset=%ld\n", (long)lseek(fd, 0, SEEK_CUR));

	/* pwrite at 2 overwrites without moving the offset. */
	printf("pwrite=%zd\n", pwrite(fd, "XY", 2, 2));
	printf("offset_after_pwrite=%ld\n", (long)lseek(fd, 0, SEEK_CUR));

	memset(buf, 0, sizeof buf);
	printf("pread=%zd ", pread(fd, buf, sizeof buf - 1, 0));
	printf("data=%s\n", buf);
	printf("pread_at_eof=%zd\n", pread(fd, buf, 8, 17));
	printf("pread_past_eof=%zd\n", pread(fd, buf, 8, 1000));

	/* readv from offset 0: 4 + 6 bytes, then the rest. */
	lseek(fd, 0, SEEK_SET);
	char a[5] = { 0 }, b[7] = { 0 }, c[16] = { 0 };
	struct iovec rv[3] = { { a, 4 }, { b, 6 }, { c, 15 } };
	printf("readv=%zd a=%s b=%s c=%s\n", readv(fd, rv, 3), a, b, c);
	printf("read_at_eof=%zd\n", read(fd, buf, sizeof buf));
	close(fd);

	/* stdin is what the test harness feeds us. */
	size_t total = 0;
	ssize_t n;
	while ((n = read(0, buf, sizeof buf)) > 0)
		total += (size_t)n;
	printf("stdin_bytes=%zu last_read=%zd\n", total, n);

	unlink(path);
	rmdir(dir);
	return 0;
}
