/* mount(2), umount2(2), chroot(2) and pivot_root(2) as root in a private
 * mount namespace (natively under `unshare -m --propagation private`),
 * then as a non-root uid. argv[1] is a fresh directory to work in; every
 * line is an errno name or a fact that holds natively and under cryo. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "common.h"

static char base[512];

static const char *p(const char *rel)
{
	static char bufs[8][1024];
	static int n;
	char *b = bufs[n++ % 8];
	snprintf(b, 1024, "%s/%s", base, rel);
	return b;
}

#define SHOW(what, call) \
	do { \
		errno = 0; \
		long r_ = (long)(call); \
		printf("%s: %s\n", what, r_ < 0 ? errname(errno) : "OK"); \
	} while (0)

static int in_mountinfo(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096], mp[2048];
	int found = 0;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "%*s %*s %*s %*s %2047s", mp) == 1 && strcmp(mp, path) == 0)
			found = 1;
	}
	fclose(f);
	return found;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	int r = write(fd, text, strlen(text)) == (ssize_t)strlen(text) ? 0 : -1;
	close(fd);
	return r;
}

static void show_file(const char *what, const char *path)
{
	char buf[64] = {0};
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		printf("%s: %s\n", what, errname(errno));
		return;
	}
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	printf("%s: %s\n", what, n >= 0 ? buf : "read failed");
}

static void list_dir(const char *what, const char *path)
{
	DIR *d = opendir(path);
	char names[64][256];
	int n = 0;
	if (!d) {
		printf("%s: %s\n", what, errname(errno));
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)) && n < 64) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			snprintf(names[n++], 256, "%s", e->d_name);
	}
	closedir(d);
	qsort(names, n, 256, (int (*)(const void *, const void *))strcmp);
	printf("%s:", what);
	for (int i = 0; i < n; i++)
		printf(" %s", names[i]);
	printf("\n");
}

static void unprivileged(void)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(2);
		SHOW("user mount tmpfs", mount("none", p("t"), "tmpfs", 0, NULL));
		SHOW("user mount missing target", mount("none", p("nope"), "tmpfs", 0, NULL));
		SHOW("user umount2", umount2(p("t"), 0));
		SHOW("user chroot", chroot(base));
		SHOW("user pivot_root", syscall(SYS_pivot_root, p("t"), p("t/old")));
		fflush(stdout);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	printf("user child exit: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static void chrooted_child(void)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		char cwd[256];
		struct stat root, up;
		SHOW("chroot", chroot(p("t")));
		SHOW("chdir /", chdir("/"));
		show_file("chrooted /hello", "/hello");
		show_file("chrooted /../../hello", "/../../hello");
		stat("/", &root);
		stat("/..", &up);
		printf(".. of / is /: %d\n", root.st_ino == up.st_ino && root.st_dev == up.st_dev);
		printf("getcwd: %s\n", getcwd(cwd, sizeof cwd) ? cwd : errname(errno));
		SHOW("mount proc in chroot", mount("proc", "/proc", "proc", 0, NULL));
		char link[256] = {0};
		ssize_t n = readlink("/proc/self/root", link, sizeof link - 1);
		printf("/proc/self/root: %s\n", n >= 0 ? link : errname(errno));
		printf("/proc in mountinfo: %d\n", in_mountinfo("/proc"));
		SHOW("umount /proc", umount2("/proc", 0));
		fflush(stdout);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	printf("chroot child exit: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	/* The parent's root did not change. */
	printf("parent sees %s/hello: %d\n", "t", access(p("t/hello"), F_OK) == 0);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	snprintf(base, sizeof base, "%s", argv[1]);
	const char *dirs[] = {"t", "b", "x", "m1", "m2", "p", "file-dir"};
	for (unsigned i = 0; i < sizeof dirs / sizeof *dirs; i++)
		mkdir(p(dirs[i]), 0755);
	write_file(p("plain"), "plain");

	/* A new tmpfs with options. */
	SHOW("mount tmpfs", mount("none", p("t"), "tmpfs", 0, "mode=0710,uid=12,gid=34"));
	struct stat st;
	stat(p("t"), &st);
	printf("tmpfs root: mode %o uid %u gid %u\n", st.st_mode & 07777, st.st_uid, st.st_gid);
	struct statfs sf;
	statfs(p("t"), &sf);
	printf("tmpfs magic: %d\n", sf.f_type == 0x01021994);
	printf("in mountinfo: %d\n", in_mountinfo(p("t")));
	SHOW("write in tmpfs", write_file(p("t/hello"), "hello"));
	mkdir(p("t/d"), 0755);
	mkdir(p("t/proc"), 0755);

	/* Errors. */
	SHOW("missing target", mount("none", p("nope"), "tmpfs", 0, NULL));
	SHOW("unknown fstype", mount("none", p("x"), "nosuchfs", 0, NULL));
	SHOW("tmpfs on a file", mount("none", p("plain"), "tmpfs", 0, NULL));
	SHOW("MS_NOUSER", mount("none", p("x"), "tmpfs", MS_NOUSER, NULL));
	SHOW("bad tmpfs option", mount("none", p("x"), "tmpfs", 0, "colour=blue"));
	SHOW("bind missing source", mount(p("nope"), p("b"), NULL, MS_BIND, NULL));
	SHOW("bind dir on file", mount(p("t/d"), p("plain"), NULL, MS_BIND, NULL));
	SHOW("remount non-mount", mount(NULL, p("x"), NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL));

	/* Bind mounts: one directory, two names. */
	SHOW("bind", mount(p("t/d"), p("b"), NULL, MS_BIND, NULL));
	SHOW("write through bind", write_file(p("b/via-bind"), "via bind"));
	show_file("read through tmpfs", p("t/d/via-bind"));
	SHOW("unlink through tmpfs", unlink(p("t/d/via-bind")));
	printf("gone through bind: %d\n", access(p("b/via-bind"), F_OK) != 0);
	SHOW("write again", write_file(p("b/kept"), "kept"));
	/* Read-only by remount. */
	SHOW("remount bind ro", mount(NULL, p("b"), NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL));
	SHOW("create on ro bind", open(p("b/new"), O_CREAT | O_WRONLY, 0644));
	SHOW("mkdir on ro bind", mkdir(p("b/newdir"), 0755));
	SHOW("create on the rw original", write_file(p("t/d/new"), "rw"));
	statfs(p("b"), &sf);
	printf("ro bind statfs ST_RDONLY: %d\n", (sf.f_flags & 1) != 0);
	SHOW("remount bind rw", mount(NULL, p("b"), NULL, MS_REMOUNT | MS_BIND, NULL));
	SHOW("create on rw bind", write_file(p("b/new2"), "rw"));

	/* Propagation: accepted on a mount, not on a plain directory. */
	SHOW("MS_PRIVATE", mount(NULL, p("t"), NULL, MS_PRIVATE, NULL));
	SHOW("MS_REC|MS_SLAVE", mount(NULL, p("t"), NULL, MS_REC | MS_SLAVE, NULL));
	SHOW("MS_PRIVATE|MS_SHARED", mount(NULL, p("t"), NULL, MS_PRIVATE | MS_SHARED, NULL));
	SHOW("MS_PRIVATE non-mount", mount(NULL, p("x"), NULL, MS_PRIVATE, NULL));

	/* noexec. */
	SHOW("mount noexec tmpfs", mount("none", p("x"), "tmpfs", MS_NOEXEC, NULL));
	{
		int in = open("/proc/self/exe", O_RDONLY);
		int out = open(p("x/prog"), O_CREAT | O_WRONLY, 0755);
		char buf[65536];
		ssize_t n;
		while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
			if (write(out, buf, n) != n)
				break;
		close(in);
		close(out);
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			char *args[] = {(char *)p("x/prog"), NULL};
			execv(args[0], args);
			printf("execve on noexec: %s\n", errname(errno));
			fflush(stdout);
			_exit(0);
		}
		int s;
		waitpid(pid, &s, 0);
	}
	SHOW("umount noexec", umount2(p("x"), 0));

	/* MS_MOVE. */
	SHOW("mount m1", mount("none", p("m1"), "tmpfs", 0, NULL));
	write_file(p("m1/moved"), "moved");
	SHOW("move m1 to m2", mount(p("m1"), p("m2"), NULL, MS_MOVE, NULL));
	show_file("m2/moved", p("m2/moved"));
	printf("m1/moved left: %d\n", access(p("m1/moved"), F_OK) == 0);
	SHOW("move a non-mount", mount(p("x"), p("m1"), NULL, MS_MOVE, NULL));
	SHOW("move into itself", mount(p("m2"), p("m2"), NULL, MS_MOVE, NULL));
	SHOW("umount m2", umount2(p("m2"), 0));

	/* umount2. */
	int fd = open(p("b/kept"), O_RDONLY);
	SHOW("umount bind busy", umount2(p("b"), 0));
	close(fd);
	SHOW("chdir into bind", chdir(p("b")));
	SHOW("umount cwd busy", umount2(p("b"), 0));
	SHOW("chdir /", chdir("/"));
	SHOW("umount bad flags", umount2(p("b"), 0x100));
	SHOW("umount expire+detach", umount2(p("b"), MNT_EXPIRE | MNT_DETACH));
	SHOW("umount missing", umount2(p("nope"), 0));
	SHOW("umount non-mount", umount2(p("x"), 0));
	SHOW("umount bind force", umount2(p("b"), MNT_FORCE));
	SHOW("umount bind again", umount2(p("b"), 0));
	printf("bind in mountinfo: %d\n", in_mountinfo(p("b")));
	fd = open(p("t/hello"), O_RDONLY);
	SHOW("mount over tmpfs dir", mount("none", p("t/d"), "tmpfs", 0, NULL));
	write_file(p("t/d/inner"), "inner");
	/* MS_REC takes the mount on t/d along; a plain bind does not. */
	SHOW("rbind", mount(p("t"), p("m1"), NULL, MS_BIND | MS_REC, NULL));
	show_file("rbind sees the submount", p("m1/d/inner"));
	SHOW("bind", mount(p("t"), p("m2"), NULL, MS_BIND, NULL));
	show_file("bind does not", p("m2/d/inner"));
	SHOW("umount rbind with its submount", umount2(p("m1"), 0));
	SHOW("umount rbind detach", umount2(p("m1"), MNT_DETACH));
	SHOW("umount bind", umount2(p("m2"), 0));
	printf("m1 in mountinfo: %d\n", in_mountinfo(p("m1/d")));
	SHOW("umount tmpfs with a submount", umount2(p("t"), 0));
	SHOW("umount tmpfs detach", umount2(p("t"), MNT_DETACH));
	{
		char link[64];
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		show_file("open file after detach", link);
	}
	close(fd);
	printf("t/hello after detach: %d\n", access(p("t/hello"), F_OK) == 0);

	/* chroot. */
	SHOW("mount tmpfs again", mount("none", p("t"), "tmpfs", 0, NULL));
	write_file(p("t/hello"), "chrooted hello");
	mkdir(p("t/proc"), 0755);
	SHOW("chroot to a file", chroot(p("plain")));
	SHOW("chroot missing", chroot(p("nope")));
	chrooted_child();

	unprivileged();

	/* pivot_root. */
	SHOW("pivot non-mount", syscall(SYS_pivot_root, p("x"), p("x")));
	SHOW("mount p", mount("none", p("p"), "tmpfs", 0, NULL));
	write_file(p("p/marker"), "marker");
	mkdir(p("p/old"), 0755);
	SHOW("pivot put_old outside", syscall(SYS_pivot_root, p("p"), base));
	SHOW("chdir p", chdir(p("p")));
	SHOW("pivot . .", syscall(SYS_pivot_root, ".", "."));
	SHOW("umount old root", umount2(".", MNT_DETACH));
	SHOW("chdir / after pivot", chdir("/"));
	list_dir("new /", "/");
	show_file("/marker", "/marker");
	fflush(stdout);
	return 0;
}
