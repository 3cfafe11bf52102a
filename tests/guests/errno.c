/* Error paths: each failing call reports the errno real Linux gives.
 * Exits with status 3 on purpose, so a wrong exit status is caught too. */
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

int main(void)
{
	char dir[64], path[160], buf[8];
	make_tmpdir("errno", dir, sizeof dir);

	EXPECT_ERR("open_missing", open("/nonexistent/cryo/file", O_RDONLY));
	EXPECT_ERR("open_missing_creat_no_parent", open("/nonexistent/cryo/file", O_WRONLY | O_CREAT, 0644));
	EXPECT_ERR("read_bad_fd", read(777, buf, 1));
	EXPECT_ERR("read_negative_fd", read(-1, buf, 1));
	int ro = open("/etc/passwd", O_RDONLY);
	CHECK(ro >= 0);
	EXPECT_ERR("write_readonly_fd", write(ro, "x", 1));
	EXPECT_ERR("open_dir_for_write", open("/tmp", O_WRONLY));
	int dirfd = open("/tmp", O_RDONLY);
	CHECK(dirfd >= 0);
	EXPECT_ERR("read_directory", read(dirfd, buf, 1));
	close(dirfd);
	EXPECT_ERR("mkdir_exists", mkdir(dir, 0755));
	EXPECT_ERR("mkdir_root", mkdir("/", 0755));
	snprintf(path, sizeof path, "%s/f", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	CHECK(fd >= 0);
	EXPECT_ERR("open_excl_exists", open(path, O_WRONLY | O_CREAT | O_EXCL, 0644));
	EXPECT_ERR("read_writeonly_fd", read(fd, buf, 1));
	close(fd);
	EXPECT_ERR("open_through_file", open("/etc/passwd/x", O_RDONLY));
	EXPECT_ERR("rmdir_not_empty", rmdir(dir));
	EXPECT_ERR("rmdir_file", rmdir(path));
	EXPECT_ERR("unlink_dir", unlink(dir));
	EXPECT_ERR("unlink_missing", unlink("/tmp/cryo-definitely-missing-file"));
	EXPECT_ERR("open_directory_flag_on_file", open(path, O_RDONLY | O_DIRECTORY));
	char longname[300];
	memset(longname, 'a', sizeof longname - 1);
	longname[0] = '/';
	longname[sizeof longname - 1] = 0;
	EXPECT_ERR("name_too_long", open(longname, O_RDONLY));
	EXPECT_ERR("bad_pointer_path", open((const char *)8, O_RDONLY));
	EXPECT_ERR("bad_pointer_buffer", syscall(SYS_read, ro, (void *)8, 4));
	EXPECT_ERR("lseek_bad_whence", lseek(ro, 0, 99));
	EXPECT_ERR("close_bad_fd", close(555));
	EXPECT_ERR("rename_missing", rename("/tmp/cryo-definitely-missing-file", "/tmp/cryo-x"));
	close(ro);

	snprintf(path, sizeof path, "%s/f", dir);
	unlink(path);
	rmdir(dir);
	printf("exiting with 3\n");
	return 3;
}
