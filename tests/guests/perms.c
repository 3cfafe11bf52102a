/* File permissions for a user that is not root: read, write and execute
 * bits for owner, group (primary and supplementary) and others; search
 * permission on every directory walked; creating, removing and renaming
 * needing write on the directory; the sticky directory rule; new files
 * owned by their creator (and by a set-group-ID directory's group);
 * chmod and explicit times only for the owner, "now" times with write
 * permission; truncate; execve of an execute-only file, and EACCES without
 * an execute bit (for root too); access(2) with the real ids against
 * AT_EACCESS with the effective ones; protected hard links. Files are
 * set up as root, then a child drops to uid 1000, gid 100 (groups 100
 * and 27). Run in /tmp (tmpfs under cryo) and in /var/tmp (the overlay
 * root). Usage: perms [--exec-probe] */
#define _GNU_SOURCE
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <utime.h>

static char base[96];

static const char *at(const char *name)
{
	static char buf[4][160];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof buf[i], "%s/%s", base, name);
	return buf[i];
}

static void make(const char *name, mode_t mode, gid_t gid)
{
	int fd = open(at(name), O_CREAT | O_WRONLY | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(write(fd, "data\n", 5) == 5);
	CHECK(close(fd) == 0);
	CHECK(chown(at(name), 0, gid) == 0);
	CHECK(chmod(at(name), mode) == 0);
}

static void make_dir(const char *name, mode_t mode, gid_t gid)
{
	CHECK(mkdir(at(name), 0700) == 0);
	CHECK(chown(at(name), 0, gid) == 0);
	CHECK(chmod(at(name), mode) == 0);
}

static void try_open(const char *label, const char *name, int flags)
{
	errno = 0;
	int fd = open(at(name), flags, 0644);
	printf("%s: %s\n", label, fd >= 0 ? "OK" : errname(errno));
	if (fd >= 0)
		close(fd);
}

static void owner_of(const char *label, const char *name)
{
	struct stat st;
	CHECK(stat(at(name), &st) == 0);
	printf("%s: uid=%u gid=%u setgid=%d\n", label, st.st_uid, st.st_gid, (st.st_mode & S_ISGID) != 0);
}

/* A listening unix socket named `name`, its file's mode `mode`. */
static int listen_at(const char *name, mode_t mode)
{
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(s >= 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof a.sun_path, "%s", at(name));
	CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0 && listen(s, 4) == 0);
	CHECK(chmod(at(name), mode) == 0);
	return s;
}

static void try_connect(const char *label, const char *name)
{
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(s >= 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof a.sun_path, "%s", at(name));
	EXPECT_ERR(label, connect(s, (struct sockaddr *)&a, sizeof a));
	close(s);
}

static int run_exec(const char *self, const char *name)
{
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		char *argv[] = { (char *)name, "--exec-probe", NULL };
		execv(at(name), argv);
		_exit(errno == EACCES ? 13 : 12);
	}
	int st;
	CHECK(waitpid(c, &st, 0) == c);
	(void)self;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void as_user(const char *self)
{
	gid_t groups[] = { 100, 27 };
	CHECK(setgroups(2, groups) == 0);
	CHECK(setresgid(100, 100, 100) == 0);
	CHECK(setresuid(1000, 1000, 1000) == 0);

	try_open("read_600", "f600", O_RDONLY);
	try_open("read_644", "f644", O_RDONLY);
	try_open("write_644", "f644", O_WRONLY);
	try_open("trunc_644", "f644", O_RDONLY | O_TRUNC);
	try_open("read_group_640", "g640", O_RDONLY);
	try_open("write_group_640", "g640", O_WRONLY);
	try_open("rdwr_666", "f666", O_RDWR);
	try_open("create_in_755", "newfile", O_CREAT | O_WRONLY);
	EXPECT_ERR("mkdir_in_755", mkdir(at("newdir"), 0755));
	EXPECT_ERR("unlink_in_755", unlink(at("f666")));
	EXPECT_ERR("rename_in_755", rename(at("f666"), at("f666b")));
	struct stat st;
	EXPECT_ERR("stat_through_700", stat(at("d700/x"), &st));
	try_open("open_through_700", "d700/x", O_RDONLY);
	try_open("open_through_711", "d711/x", O_RDONLY);
	try_open("readdir_711", "d711", O_RDONLY | O_DIRECTORY);
	EXPECT_ERR("chdir_700", chdir(at("d700")));
	EXPECT_ERR("truncate_644", truncate(at("f644"), 1));
	EXPECT_ERR("truncate_666", truncate(at("f666"), 5));
	EXPECT_ERR("chmod_others", chmod(at("f666"), 0600));
	EXPECT_ERR("utimes_explicit_others", utime(at("f666"), &(struct utimbuf){ 1, 2 }));
	EXPECT_ERR("utimes_now_writable", utime(at("f666"), NULL));
	EXPECT_ERR("utimes_now_readonly", utime(at("f644"), NULL));
	EXPECT_ERR("link_others_600", link(at("f600"), at("w/l600")));
	EXPECT_ERR("link_others_666", link(at("f666"), at("w/l666")));
	EXPECT_ERR("access_600_R", access(at("f600"), R_OK));
	EXPECT_ERR("access_644_W", access(at("f644"), W_OK));
	EXPECT_ERR("access_g640_R", access(at("g640"), R_OK));
	EXPECT_ERR("access_x711_X", access(at("x711"), X_OK));

	/* A writable directory: new files are the creator's. */
	int fd = open(at("w/mine"), O_CREAT | O_WRONLY, 0640);
	CHECK(fd >= 0);
	close(fd);
	owner_of("created", "w/mine");
	EXPECT_ERR("mkdir_in_777", mkdir(at("w/sub"), 0755));
	owner_of("created_dir", "w/sub");
	EXPECT_ERR("chmod_own", chmod(at("w/mine"), 0600));
	EXPECT_ERR("utimes_explicit_own", utime(at("w/mine"), &(struct utimbuf){ 1, 2 }));
	fd = open(at("sg/mine"), O_CREAT | O_WRONLY, 0640);
	CHECK(fd >= 0);
	close(fd);
	owner_of("created_in_setgid", "sg/mine");
	EXPECT_ERR("mkdir_in_setgid", mkdir(at("sg/sub"), 0755));
	owner_of("dir_in_setgid", "sg/sub");
	/* chmod g+s keeps the bit for a file of one of the caller's groups. */
	EXPECT_ERR("chmod_setgid_supplementary_group", chmod(at("sg/mine"), 02640));
	owner_of("after_chmod_setgid", "sg/mine");

	/* Sticky: others' files stay, one's own may go. */
	EXPECT_ERR("unlink_sticky_others", unlink(at("t/root_file")));
	EXPECT_ERR("rename_sticky_others", rename(at("t/root_file"), at("t/moved")));
	fd = open(at("t/own"), O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	close(fd);
	EXPECT_ERR("unlink_sticky_own", unlink(at("t/own")));

	/* Connecting needs write permission on the socket's file. */
	try_connect("connect_socket_700", "sock700");
	try_connect("connect_socket_777", "sock777");

	/* A pty's replica is whoever opened ptmx's (its group and mode are the
	 * devpts mount's options: gid=5,mode=620 in a container, the opener's
	 * group and 600 on a host devpts without options, so not printed). */
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	CHECK(m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0);
	const char *pts = ptsname(m);
	CHECK(pts != NULL);
	struct stat ps;
	CHECK(stat(pts, &ps) == 0);
	printf("pts owner uid=%u\n", ps.st_uid);
	int r = open(pts, O_RDWR | O_NOCTTY);
	printf("open_own_pts: %s\n", r >= 0 ? "OK" : errname(errno));
	if (r >= 0)
		close(r);
	close(m);

	printf("exec_711=%d\n", run_exec(self, "x711"));
	printf("exec_644=%d\n", run_exec(self, "x644"));
	printf("exec_700_root=%d\n", run_exec(self, "x700"));
}

/* Effective 1000, real 0: access(2) answers for the real ids. */
static void effective_only(void)
{
	CHECK(setresgid(0, 100, 0) == 0);
	CHECK(setresuid(0, 1000, 0) == 0);
	try_open("eff_read_600", "f600", O_RDONLY);
	EXPECT_ERR("eff_access_600", access(at("f600"), R_OK));
	EXPECT_ERR("eff_faccessat_eaccess_600", faccessat(AT_FDCWD, at("f600"), R_OK, AT_EACCESS));
}

static void run_in(const char *where, const char *self)
{
	snprintf(base, sizeof base, "%s/cryo-guest-perms-XXXXXX", where);
	CHECK(mkdtemp(base) != NULL);
	CHECK(chmod(base, 0755) == 0);
	printf("-- in %s\n", where);
	make("f600", 0600, 0);
	make("f644", 0644, 0);
	make("f666", 0666, 0);
	make("g640", 0640, 27);
	make_dir("d700", 0700, 0);
	make("d700/x", 0644, 0);
	make_dir("d711", 0711, 0);
	make("d711/x", 0644, 0);
	make_dir("w", 0777, 0);
	make_dir("sg", 02777, 27);
	make_dir("t", 01777, 0);
	make("t/root_file", 0666, 0);
	/* Executables: copies of this program. */
	int in = open(self, O_RDONLY);
	CHECK(in >= 0);
	static char prog[4 << 20];
	ssize_t n = read(in, prog, sizeof prog);
	CHECK(n > 0 && n < (ssize_t)sizeof prog);
	close(in);
	const char *names[] = { "x711", "x644", "x700" };
	mode_t modes[] = { 0711, 0644, 0700 };
	for (int i = 0; i < 3; i++) {
		int fd = open(at(names[i]), O_CREAT | O_WRONLY | O_TRUNC, 0700);
		CHECK(fd >= 0 && write(fd, prog, n) == n && close(fd) == 0);
		CHECK(chmod(at(names[i]), modes[i]) == 0);
	}
	int l700 = listen_at("sock700", 0700);
	int l777 = listen_at("sock777", 0777);
	/* Root: any file opens, only an execute bit lets it execute. */
	CHECK(chmod(at("f600"), 0000) == 0);
	try_open("root_read_000", "f600", O_RDWR);
	CHECK(chmod(at("f600"), 0600) == 0);
	printf("root_exec_644=%d\n", run_exec(self, "x644"));
	printf("root_exec_700=%d\n", run_exec(self, "x700"));

	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		as_user(self);
		fflush(stdout);
		_exit(0);
	}
	int st;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		effective_only();
		fflush(stdout);
		_exit(0);
	}
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);

	close(l700);
	close(l777);
	const char *files[] = { "sock700", "sock777", "f600", "f644", "f666", "g640", "d700/x", "d711/x", "t/root_file", "w/mine",
				"sg/mine", "x711", "x644", "x700", "w/l666" };
	for (size_t i = 0; i < sizeof files / sizeof *files; i++)
		unlink(at(files[i]));
	const char *dirs[] = { "d700", "d711", "w/sub", "w", "sg/sub", "sg", "t" };
	for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
		rmdir(at(dirs[i]));
	CHECK(rmdir(base) == 0);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--exec-probe") == 0)
		return 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	umask(022);
	char self[256];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	CHECK(n > 0);
	self[n] = 0;
	run_in("/tmp", self);
	run_in("/var/tmp", self);
	return 0;
}
