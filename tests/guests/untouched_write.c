/* write(2) of a 1 GiB mapping the program never touched, to /dev/null and
 * (in 1 MiB pieces) to a tmpfs file: every byte is written, all zero, and
 * the test checks that the sandbox's memory did not grow by the buffer's
 * size (natively it costs nothing; the pages are never touched). */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>

int main(void)
{
	const size_t size = (size_t)1 << 30;
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	int null = open("/dev/null", O_WRONLY);
	CHECK(null >= 0);
	ssize_t w = write(null, p, size);
	printf("dev_null: wrote_all=%d\n", w == (ssize_t)size);

	char path[] = "/tmp/cryo-untouched-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK(unlink(path) == 0);
	CHECK(write(fd, p + size / 2, 1 << 20) == 1 << 20);
	char back[4096];
	CHECK(pread(fd, back, sizeof back, 12345) == (ssize_t)sizeof back);
	int zero = 1;
	for (size_t i = 0; i < sizeof back; i++)
		zero &= back[i] == 0;
	printf("tmpfs: all_zero=%d\n", zero);
	return 0;
}
