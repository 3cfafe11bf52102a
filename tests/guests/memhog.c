/* Touches MiB of anonymous memory, a page at a time, then says so: under
 * a memory limit smaller than that, the OOM killer ends it (SIGKILL).
 * Usage: memhog MIB [WAIT_FILE] (with WAIT_FILE: first waits for that
 * file to exist, printing "waiting" once, so a checkpoint can be taken
 * before any of the memory is touched). */
#include "common.h"
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

int main(int argc, char **argv)
{
	CHECK(argc >= 2);
	long mib = atol(argv[1]);
	CHECK(mib > 0);
	if (argc > 2) {
		printf("waiting\n");
		fflush(stdout);
		struct stat st;
		while (stat(argv[2], &st) != 0) {
			struct timespec ts = { 0, 10 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
	}
	size_t len = (size_t)mib << 20;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	for (size_t off = 0; off < len; off += 4096)
		p[off] = 1;
	printf("touched %ld MiB\n", mib);
	return 0;
}
