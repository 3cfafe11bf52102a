/* Writes argv[1] (a path under /tmp), reads it back and prints what it read,
 * and LEAVES the file in place: the host test checks that under cryo the
 * file never appears on the host (writes go to the sandbox's in-memory
 * upper layer). Without arguments it uses and removes its own temp file. */
#include "common.h"
#include <fcntl.h>

int main(int argc, char **argv)
{
	char dir[64], own[128];
	const char *path = argc > 1 ? argv[1] : NULL;
	if (!path) {
		make_tmpdir("roundtrip", dir, sizeof dir);
		snprintf(own, sizeof own, "%s/f", dir);
		path = own;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
	CHECK(fd >= 0);
	static const char msg[] = "written inside the sandbox\n";
	CHECK(write(fd, msg, sizeof msg - 1) == (ssize_t)(sizeof msg - 1));
	close(fd);

	char buf[64] = { 0 };
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	printf("read_back=%zd match=%d\n", n, strcmp(buf, msg) == 0);
	printf("exists=%d\n", access(path, F_OK) == 0);
	if (path == own) {
		unlink(own);
		rmdir(dir);
	}
	return 0;
}
