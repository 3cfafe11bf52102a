/* splice(2), tee(2), copy_file_range(2) and sendfile(2): bytes moved
 * between files and pipes inside the kernel, with and without offset
 * arguments (which then move instead of the file's offset), a blocking
 * splice woken by a writer, SPLICE_F_NONBLOCK, tee leaving the bytes in
 * its source, and the errors Linux gives (EINVAL without a pipe or for a
 * pipe spliced to itself or bad flags, ESPIPE for an offset on a pipe,
 * EBADF, EISDIR, overlapping ranges of one file). Run in /tmp (tmpfs
 * under cryo) and in /var/tmp (the overlay root). */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/wait.h>
#include <time.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void show_pipe(const char *label, int fd)
{
	char buf[128];
	int fl = fcntl(fd, F_GETFL);
	CHECK(fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
	ssize_t n = read(fd, buf, sizeof buf);
	CHECK(fcntl(fd, F_SETFL, fl) == 0);
	printf("%s: %.*s (%zd)\n", label, (int)(n > 0 ? n : 0), buf, n);
}

static void show_file(const char *label, int fd)
{
	char buf[128];
	ssize_t n = pread(fd, buf, sizeof buf, 0);
	printf("%s: %.*s offset=%ld\n", label, (int)(n > 0 ? n : 0), buf, (long)lseek(fd, 0, SEEK_CUR));
}

static void run_in(const char *where)
{
	char dir[96], src_path[128], dst_path[128];
	snprintf(dir, sizeof dir, "%s/cryo-guest-splice-XXXXXX", where);
	CHECK(mkdtemp(dir) != NULL);
	printf("-- in %s\n", where);
	snprintf(src_path, sizeof src_path, "%s/src", dir);
	snprintf(dst_path, sizeof dst_path, "%s/dst", dir);
	int src = open(src_path, O_CREAT | O_RDWR, 0600);
	int dst = open(dst_path, O_CREAT | O_RDWR, 0600);
	CHECK(src >= 0 && dst >= 0);
	CHECK(write(src, "0123456789", 10) == 10);
	CHECK(lseek(src, 1, SEEK_SET) == 1);
	int p[2], q[2];
	CHECK(pipe(p) == 0 && pipe(q) == 0);

	/* File -> pipe with an offset argument: the file offset stays. */
	loff_t off = 3;
	EXPECT_ERR("splice_file_to_pipe", splice(src, &off, p[1], NULL, 4, 0));
	printf("off=%ld file_offset=%ld\n", (long)off, (long)lseek(src, 0, SEEK_CUR));
	show_pipe("pipe_after_file_splice", p[0]);
	/* Without one, the file offset moves. */
	EXPECT_ERR("splice_file_offset", splice(src, NULL, p[1], NULL, 3, 0));
	printf("file_offset=%ld\n", (long)lseek(src, 0, SEEK_CUR));
	/* Pipe -> file, at the file's offset, then at an offset argument. */
	EXPECT_ERR("splice_pipe_to_file", splice(p[0], NULL, dst, NULL, 100, 0));
	CHECK(write(p[1], "XY", 2) == 2);
	off = 10;
	EXPECT_ERR("splice_pipe_to_file_at", splice(p[0], NULL, dst, &off, 100, 0));
	printf("off=%ld\n", (long)off);
	show_file("dst", dst);

	/* Errors. */
	EXPECT_ERR("splice_no_pipe", splice(src, NULL, dst, NULL, 4, 0));
	off = 0;
	EXPECT_ERR("splice_offset_on_pipe", splice(p[0], &off, dst, NULL, 4, 0));
	EXPECT_ERR("splice_bad_flags", splice(src, NULL, p[1], NULL, 4, 0x100));
	EXPECT_ERR("splice_self", splice(p[0], NULL, p[1], NULL, 4, 0));
	EXPECT_ERR("splice_wrong_end", splice(p[1], NULL, dst, NULL, 4, 0));
	EXPECT_ERR("splice_nonblock_empty", splice(p[0], NULL, dst, NULL, 4, SPLICE_F_NONBLOCK));
	EXPECT_ERR("splice_zero", splice(src, NULL, p[1], NULL, 0, 0));

	/* Pipe -> pipe, and a blocking splice woken by a writer. */
	CHECK(write(p[1], "hop", 3) == 3);
	EXPECT_ERR("splice_pipe_to_pipe", splice(p[0], NULL, q[1], NULL, 64, 0));
	show_pipe("q", q[0]);
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		sleep_ms(50);
		_exit(write(p[1], "late", 4) == 4 ? 0 : 3);
	}
	EXPECT_ERR("splice_blocking", splice(p[0], NULL, q[1], NULL, 64, 0));
	int st;
	CHECK(waitpid(c, &st, 0) == c);
	show_pipe("q_after_wait", q[0]);

	/* tee copies and leaves the bytes. */
	CHECK(write(p[1], "abcdef", 6) == 6);
	EXPECT_ERR("tee", tee(p[0], q[1], 4, 0));
	show_pipe("tee_target", q[0]);
	show_pipe("tee_source", p[0]);
	EXPECT_ERR("tee_not_pipe", tee(src, q[1], 4, 0));
	EXPECT_ERR("tee_self", tee(p[0], p[1], 4, 0));
	EXPECT_ERR("tee_nonblock_empty", tee(p[0], q[1], 4, SPLICE_F_NONBLOCK));

	/* An empty pipe without writers: end of file. */
	CHECK(close(p[1]) == 0);
	EXPECT_ERR("splice_eof", splice(p[0], NULL, dst, NULL, 4, 0));
	CHECK(close(p[0]) == 0);

	/* copy_file_range. */
	CHECK(ftruncate(dst, 0) == 0 && lseek(dst, 0, SEEK_SET) == 0);
	loff_t in = 2, out = 0;
	EXPECT_ERR("cfr_offsets", copy_file_range(src, &in, dst, &out, 5, 0));
	printf("in=%ld out=%ld src_off=%ld dst_off=%ld\n", (long)in, (long)out,
	       (long)lseek(src, 0, SEEK_CUR), (long)lseek(dst, 0, SEEK_CUR));
	CHECK(lseek(src, 8, SEEK_SET) == 8 && lseek(dst, 5, SEEK_SET) == 5);
	EXPECT_ERR("cfr_file_offsets", copy_file_range(src, NULL, dst, NULL, 100, 0));
	printf("src_off=%ld\n", (long)lseek(src, 0, SEEK_CUR));
	show_file("cfr_dst", dst);
	EXPECT_ERR("cfr_at_eof", copy_file_range(src, NULL, dst, NULL, 100, 0));
	EXPECT_ERR("cfr_flags", copy_file_range(src, NULL, dst, NULL, 1, 1));
	in = 0;
	out = 2;
	EXPECT_ERR("cfr_overlap", copy_file_range(src, &in, src, &out, 4, 0));
	out = 20;
	EXPECT_ERR("cfr_same_file_apart", copy_file_range(src, &in, src, &out, 4, 0));
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	EXPECT_ERR("cfr_dir", copy_file_range(dfd, NULL, dst, NULL, 1, 0));
	CHECK(pipe(p) == 0);
	EXPECT_ERR("cfr_pipe", copy_file_range(src, NULL, p[1], NULL, 1, 0));
	int app = open(dst_path, O_WRONLY | O_APPEND);
	EXPECT_ERR("cfr_append", copy_file_range(src, &in, app, NULL, 1, 0));
	int ro = open(dst_path, O_RDONLY);
	EXPECT_ERR("cfr_readonly_out", copy_file_range(src, &in, ro, NULL, 1, 0));

	/* sendfile, with and without an offset. */
	off = 4;
	EXPECT_ERR("sendfile_at", sendfile(p[1], src, &off, 3));
	printf("off=%ld\n", (long)off);
	CHECK(lseek(src, 0, SEEK_SET) == 0);
	EXPECT_ERR("sendfile", sendfile(p[1], src, NULL, 2));
	printf("src_off=%ld\n", (long)lseek(src, 0, SEEK_CUR));
	show_pipe("sendfile_pipe", p[0]);

	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(app);
	close(ro);
	close(dfd);
	close(src);
	close(dst);
	CHECK(unlink(src_path) == 0 && unlink(dst_path) == 0 && rmdir(dir) == 0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	run_in("/tmp");
	run_in("/var/tmp");
	return 0;
}
