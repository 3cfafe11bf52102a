/* File I/O end to end: write a 1 MiB file in /tmp in odd-sized chunks,
 * copy it with read/write, copy it again with sendfile, fsync/fdatasync,
 * rename, ftruncate, unlink, and check every copy's checksum and size. */
#include "common.h"
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>

#define SIZE (1 << 20)

static unsigned long long sum_file(const char *path, long *size)
{
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	static unsigned char buf[10007];
	unsigned long long h = FNV_INIT;
	ssize_t n;
	*size = 0;
	while ((n = read(fd, buf, sizeof buf)) > 0) {
		h = fnv1a(h, buf, (size_t)n);
		*size += n;
	}
	CHECK(n == 0);
	close(fd);
	return h;
}

int main(void)
{
	static unsigned char data[SIZE];
	fill_pattern(data, SIZE, 12345);
	unsigned long long want = fnv1a(FNV_INIT, data, SIZE);
	printf("source_fnv=%016llx\n", want);

	char dir[64], src[128], dst[128], dst2[128], moved[128];
	make_tmpdir("copyfile", dir, sizeof dir);
	snprintf(src, sizeof src, "%s/src", dir);
	snprintf(dst, sizeof dst, "%s/dst", dir);
	snprintf(dst2, sizeof dst2, "%s/dst2", dir);
	snprintf(moved, sizeof moved, "%s/moved", dir);

	int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	for (size_t off = 0; off < SIZE;) {
		size_t n = SIZE - off < 3001 ? SIZE - off : 3001;
		ssize_t w = write(fd, data + off, n);
		CHECK(w > 0);
		off += (size_t)w;
	}
	printf("fsync=%d fdatasync=%d\n", fsync(fd), fdatasync(fd));
	close(fd);

	/* read/write copy with a 64 KiB buffer. */
	int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_EXCL, 0600);
	CHECK(in >= 0 && out >= 0);
	static unsigned char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0)
		CHECK(write(out, buf, (size_t)n) == n);
	close(out);

	long size;
	unsigned long long got = sum_file(dst, &size);
	printf("rw_copy: size=%ld match=%d\n", size, got == want);

	/* sendfile copy from an explicit offset pointer (in's offset untouched). */
	out = open(dst2, O_WRONLY | O_CREAT | O_EXCL, 0600);
	CHECK(out >= 0);
	off_t off = 0;
	long total = 0;
	while ((n = sendfile(out, in, &off, SIZE)) > 0)
		total += n;
	printf("sendfile: total=%ld offset=%ld in_offset_unchanged=%d\n", total, (long)off,
	       lseek(in, 0, SEEK_CUR) == SIZE);
	close(out);
	close(in);
	got = sum_file(dst2, &size);
	printf("sendfile_copy: size=%ld match=%d\n", size, got == want);

	/* rename over nothing, then truncate the moved file to half. */
	printf("rename=%d\n", rename(dst2, moved));
	printf("old_name_gone=%d\n", access(dst2, F_OK) == -1 && errno == ENOENT);
	printf("truncate=%d\n", truncate(moved, SIZE / 2));
	got = sum_file(moved, &size);
	printf("truncated: size=%ld match_first_half=%d\n", size, got == fnv1a(FNV_INIT, data, SIZE / 2));

	/* O_TRUNC on open empties the file. */
	fd = open(dst, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0);
	struct stat st;
	CHECK(fstat(fd, &st) == 0);
	printf("o_trunc_size=%ld\n", (long)st.st_size);
	close(fd);

	printf("unlink=%d,%d,%d\n", unlink(src), unlink(dst), unlink(moved));
	printf("rmdir=%d\n", rmdir(dir));
	return 0;
}
