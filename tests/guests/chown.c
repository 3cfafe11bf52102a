/* chown, lchown, fchown and fchownat: root changes owner and group (a
 * regular file loses set-user-ID, and set-group-ID when group-executable),
 * -1 leaves a field alone, lchown changes the link itself, AT_EMPTY_PATH
 * names the descriptor's file; a user may only give its own file one of
 * its own groups (EPERM otherwise); EBADF, ENOENT and EINVAL as Linux. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>

static void show(const char *label, const char *path, int follow)
{
	struct stat st;
	CHECK((follow ? stat(path, &st) : lstat(path, &st)) == 0);
	printf("%s: uid=%u gid=%u mode=%04o\n", label, (unsigned)st.st_uid, (unsigned)st.st_gid,
	       (unsigned)(st.st_mode & 07777));
}

int main(void)
{
	char dir[64], f[96], g[96], l[96];
	make_tmpdir("chown", dir, sizeof dir);
	CHECK(chmod(dir, 0777) == 0);
	snprintf(f, sizeof f, "%s/f", dir);
	snprintf(g, sizeof g, "%s/g", dir);
	snprintf(l, sizeof l, "%s/l", dir);
	int fd = open(f, O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0 && close(fd) == 0);
	CHECK(chmod(f, 06755) == 0);
	EXPECT_ERR("chown", chown(f, 1000, 1000));
	show("after_chown", f, 1);
	EXPECT_ERR("chown_unchanged", chown(f, -1, -1));
	show("after_minus_one", f, 1);
	CHECK(chmod(f, 02745) == 0); /* set-group-ID without group-exec stays */
	EXPECT_ERR("chown_gid_only", chown(f, -1, 1001));
	show("sgid_kept", f, 1);

	CHECK(symlink("f", l) == 0);
	EXPECT_ERR("lchown", lchown(l, 1002, 1002));
	show("link_itself", l, 0);
	show("target_unchanged", f, 1);

	fd = open(f, O_RDONLY);
	CHECK(fd >= 0);
	EXPECT_ERR("fchown", fchown(fd, 1003, -1));
	EXPECT_ERR("fchownat_empty_path", fchownat(fd, "", -1, 1004, AT_EMPTY_PATH));
	show("via_fd", f, 1);
	int pfd = open(f, O_PATH);
	CHECK(pfd >= 0);
	EXPECT_ERR("fchown_opath", fchown(pfd, 0, 0));
	EXPECT_ERR("fchownat_opath_empty", fchownat(pfd, "", 1005, -1, AT_EMPTY_PATH));
	EXPECT_ERR("fchown_bad_fd", fchown(999, 0, 0));
	EXPECT_ERR("fchownat_bad_flags", fchownat(AT_FDCWD, f, 0, 0, 0x8000));
	EXPECT_ERR("chown_missing", chown("/nonexistent-cryo", 0, 0));
	EXPECT_ERR("fchownat_empty_no_flag", fchownat(fd, "", 0, 0, 0));

	/* A user and its own file. */
	fd = open(g, O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0 && close(fd) == 0);
	CHECK(chown(g, 1000, 1000) == 0);
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		gid_t groups[] = { 1000, 1007 };
		CHECK(setgroups(2, groups) == 0);
		CHECK(setresgid(1000, 1000, 1000) == 0);
		CHECK(setresuid(1000, 1000, 1000) == 0);
		EXPECT_ERR("user_to_own_group", chown(g, -1, 1007));
		EXPECT_ERR("user_to_other_group", chown(g, -1, 2000));
		EXPECT_ERR("user_give_away", chown(g, 0, -1));
		EXPECT_ERR("user_same_owner", chown(g, 1000, -1));
		EXPECT_ERR("user_others_file", chown(f, -1, 1000));
		fflush(stdout);
		_exit(0);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st));
	show("user_file", g, 1);

	CHECK(unlink(l) == 0 && unlink(f) == 0 && unlink(g) == 0 && rmdir(dir) == 0);
	return 0;
}
