/* Extended attributes on a file and a directory of /tmp and on a file of
 * /dev/shm: set/get/list/remove through paths, l* (symlinks) and f*
 * (descriptors), XATTR_CREATE/REPLACE, the size query, ERANGE, E2BIG,
 * ENODATA, EOPNOTSUPP (an unknown namespace, a pipe), EINVAL, EBADF (an
 * O_PATH descriptor), EPERM for user.* on a symlink, trusted.* as root,
 * and as a user that is not root: trusted.* hidden and refused, EACCES
 * without write permission. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#ifndef ENODATA
#define ENODATA 61
#endif

static const char *err(int e)
{
	return e == ENODATA ? "ENODATA" : errname(e);
}

#define TRY(label, call)                                                              \
	do {                                                                          \
		errno = 0;                                                            \
		long r_ = (long)(call);                                               \
		printf("%s: ret=%ld errno=%s\n", label, r_, r_ < 0 ? err(errno) : "OK"); \
	} while (0)

static void show_list(const char *tag, const char *path)
{
	char buf[1024];
	ssize_t n = listxattr(path, buf, sizeof buf);
	printf("%s list:", tag);
	if (n < 0) {
		printf(" %s\n", err(errno));
		return;
	}
	/* Sorted, so that the file system's order does not matter. */
	char *names[64];
	int k = 0;
	for (char *p = buf; p < buf + n && k < 64; p += strlen(p) + 1) {
		if (strncmp(p, "security.", 9) != 0) /* an LSM's own */
			names[k++] = p;
	}
	for (int i = 0; i < k; i++)
		for (int j = i + 1; j < k; j++)
			if (strcmp(names[j], names[i]) < 0) {
				char *t = names[i];
				names[i] = names[j];
				names[j] = t;
			}
	for (int i = 0; i < k; i++)
		printf(" %s", names[i]);
	printf("\n");
}

static void get(const char *tag, const char *path, const char *name)
{
	char buf[128];
	errno = 0;
	ssize_t n = getxattr(path, name, buf, sizeof buf);
	if (n < 0)
		printf("%s get %s: %s\n", tag, name, err(errno));
	else
		printf("%s get %s: %zd '%.*s'\n", tag, name, n, (int)n, buf);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	char dir[128], f[256], lnk[256], sub[256];
	make_tmpdir("xattr", dir, sizeof dir);
	snprintf(f, sizeof f, "%s/f", dir);
	snprintf(lnk, sizeof lnk, "%s/lnk", dir);
	snprintf(sub, sizeof sub, "%s/sub", dir);
	int fd = open(f, O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	CHECK(symlink("f", lnk) == 0);
	CHECK(mkdir(sub, 0755) == 0);

	show_list("new", f);
	TRY("get missing", getxattr(f, "user.a", NULL, 0));
	TRY("set", setxattr(f, "user.a", "one", 3, 0));
	TRY("size query", getxattr(f, "user.a", NULL, 0));
	get("f", f, "user.a");
	char small[2];
	TRY("get too small", getxattr(f, "user.a", small, sizeof small));
	TRY("create existing", setxattr(f, "user.a", "x", 1, XATTR_CREATE));
	TRY("replace missing", setxattr(f, "user.b", "x", 1, XATTR_REPLACE));
	TRY("replace", setxattr(f, "user.a", "uno", 3, XATTR_REPLACE));
	TRY("create", setxattr(f, "user.b", "two", 3, XATTR_CREATE));
	TRY("bad flags", setxattr(f, "user.c", "x", 1, 4));
	TRY("empty value", setxattr(f, "user.empty", "", 0, 0));
	get("f", f, "user.a");
	get("f", f, "user.empty");
	TRY("unknown namespace", setxattr(f, "foo.bar", "x", 1, 0));
	TRY("get unknown namespace", getxattr(f, "foo.bar", NULL, 0));
	TRY("bare prefix", setxattr(f, "user.", "x", 1, 0));
	TRY("empty name", setxattr(f, "", "x", 1, 0));
	char longname[300] = "user.";
	memset(longname + 5, 'n', 251);
	longname[256] = 0;
	TRY("256-byte name", setxattr(f, longname, "x", 1, 0));
	longname[255] = 0;
	TRY("255-byte name", setxattr(f, longname, "x", 1, 0));
	TRY("255-byte name removed", removexattr(f, longname));
	static char big[65537];
	TRY("value too big", setxattr(f, "user.big", big, sizeof big, 0));
	show_list("f", f);
	TRY("list size query", listxattr(f, NULL, 0));
	TRY("list too small", listxattr(f, small, sizeof small));

	/* Through a symlink, its own (l*), and through descriptors. */
	get("via link", lnk, "user.a");
	TRY("lset user on symlink", lsetxattr(lnk, "user.a", "x", 1, 0));
	TRY("lget user on symlink", lgetxattr(lnk, "user.a", NULL, 0));
	TRY("llist symlink", llistxattr(lnk, NULL, 0));
	TRY("fset", fsetxattr(fd, "user.c", "three", 5, 0));
	char buf[64];
	TRY("fget", fgetxattr(fd, "user.c", buf, sizeof buf));
	TRY("flist size", flistxattr(fd, NULL, 0));
	TRY("fremove", fremovexattr(fd, "user.c"));
	TRY("fremove again", fremovexattr(fd, "user.c"));
	int opath = open(f, O_PATH);
	CHECK(opath >= 0);
	TRY("fget O_PATH", fgetxattr(opath, "user.a", buf, sizeof buf));
	int p[2];
	CHECK(pipe(p) == 0);
	TRY("fget pipe", fgetxattr(p[0], "user.a", buf, sizeof buf));
	TRY("fset pipe", fsetxattr(p[1], "user.a", "x", 1, 0));
	TRY("fget bad fd", fgetxattr(999, "user.a", buf, sizeof buf));
	TRY("get missing file", getxattr("/nonexistent/x", "user.a", buf, sizeof buf));

	/* A directory; trusted.* as root. */
	TRY("dir set", setxattr(sub, "user.d", "dir", 3, 0));
	get("sub", sub, "user.d");
	TRY("trusted set", setxattr(f, "trusted.t", "root", 4, 0));
	get("f", f, "trusted.t");
	show_list("f with trusted", f);
	TRY("remove", removexattr(f, "user.b"));
	TRY("remove again", removexattr(f, "user.b"));
	show_list("f after remove", f);

	/* /dev/shm: a plain tmpfs; a large value. */
	const char *shm = "/dev/shm/cryo-xattr-guest";
	int s = open(shm, O_CREAT | O_RDWR | O_TRUNC, 0600);
	CHECK(s >= 0);
	memset(big, 'v', sizeof big);
	TRY("shm 4096-byte value", setxattr(shm, "user.large", big, 4096, 0));
	TRY("shm size query", getxattr(shm, "user.large", NULL, 0));
	show_list("shm", shm);

	/* As a user that is not root. */
	CHECK(chmod(dir, 0755) == 0 && chmod(f, 0644) == 0);
	pid_t kid = fork();
	CHECK(kid >= 0);
	if (kid == 0) {
		CHECK(setgid(65534) == 0 && setuid(65534) == 0);
		get("user", f, "user.a");
		get("user", f, "trusted.t");
		show_list("user", f);
		TRY("user set without write", setxattr(f, "user.u", "x", 1, 0));
		TRY("user set trusted", setxattr(f, "trusted.u", "x", 1, 0));
		TRY("user remove without write", removexattr(f, "user.a"));
		_exit(0);
	}
	int st;
	CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	unlink(shm);
	unlink(lnk);
	unlink(f);
	rmdir(sub);
	rmdir(dir);
	printf("done\n");
	return 0;
}
