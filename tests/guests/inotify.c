/* inotify for changes made inside the sandbox: every event a directory
 * watch and a file watch see for create, open, modify, attrib, close
 * (write and nowrite), access, rename within and across directories
 * (MOVED_FROM/MOVED_TO sharing a cookie, MOVE_SELF), link, symlink,
 * mkdir/rmdir (IN_ISDIR), unlink (DELETE, DELETE_SELF, IGNORED), with
 * the flags IN_ONLYDIR, IN_MASK_ADD, IN_MASK_CREATE, IN_ONESHOT and
 * IN_DONT_FOLLOW, rm_watch, coalescing of identical events, FIONREAD,
 * poll and epoll readiness, short reads (EINVAL), EAGAIN, and the errnos
 * of inotify_init1, inotify_add_watch and inotify_rm_watch. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>

static char dir[128];
static int wd_dir, wd_file, wd_sub, wd_link;

static const char *wdname(int wd)
{
	if (wd == wd_dir)
		return "dir";
	if (wd == wd_file)
		return "file";
	if (wd == wd_sub)
		return "sub";
	if (wd == wd_link)
		return "link";
	if (wd == -1)
		return "-1";
	return "?";
}

static void mask_str(unsigned m, char *out, size_t n)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ IN_ACCESS, "ACCESS" },	 { IN_MODIFY, "MODIFY" },
		{ IN_ATTRIB, "ATTRIB" },	 { IN_CLOSE_WRITE, "CLOSE_WRITE" },
		{ IN_CLOSE_NOWRITE, "CLOSE_NOWRITE" }, { IN_OPEN, "OPEN" },
		{ IN_MOVED_FROM, "MOVED_FROM" }, { IN_MOVED_TO, "MOVED_TO" },
		{ IN_CREATE, "CREATE" },	 { IN_DELETE, "DELETE" },
		{ IN_DELETE_SELF, "DELETE_SELF" }, { IN_MOVE_SELF, "MOVE_SELF" },
		{ IN_UNMOUNT, "UNMOUNT" },	 { IN_Q_OVERFLOW, "Q_OVERFLOW" },
		{ IN_IGNORED, "IGNORED" },	 { IN_ISDIR, "ISDIR" },
	};
	out[0] = 0;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (m & names[i].bit) {
			if (out[0])
				strncat(out, "|", n - strlen(out) - 1);
			strncat(out, names[i].name, n - strlen(out) - 1);
			m &= ~names[i].bit;
		}
	}
	if (m)
		snprintf(out + strlen(out), n - strlen(out), "|%#x", m);
}

/* Reads and prints every queued event; cookies are shown as "c" (same
 * as the previous MOVED_FROM's) or "c?" (another), never raw. */
static void drain(int fd, const char *step)
{
	char buf[4096] __attribute__((aligned(8)));
	static unsigned last_cookie;
	printf("-- %s\n", step);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0) {
			CHECK(errno == EAGAIN);
			return;
		}
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)p;
			char m[256];
			mask_str(e->mask, m, sizeof m);
			const char *cookie = "";
			if (e->mask & IN_MOVED_FROM) {
				last_cookie = e->cookie;
				cookie = e->cookie ? " cookie=c" : " cookie=0";
			} else if (e->mask & IN_MOVED_TO) {
				cookie = e->cookie == last_cookie ? " cookie=c" : " cookie=c?";
			} else if (e->cookie) {
				cookie = " cookie!=0";
			}
			printf("%s %s%s%s len%%16=%u\n", wdname(e->wd), m, e->len ? " " : "",
			       e->len ? e->name : "", e->len % 16);
			(void)cookie;
			if (*cookie)
				printf("   %s\n", cookie + 1);
			p += sizeof *e + e->len;
		}
	}
}

static void path(char *out, const char *name)
{
	snprintf(out, 256, "%s/%s", dir, name);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	make_tmpdir("inotify", dir, sizeof dir);
	EXPECT_ERR("init1 bad flags", inotify_init1(0x1234));
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	CHECK(fd >= 0);
	printf("cloexec=%d nonblock=%d\n", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0,
	       (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
	char f[256], g[256], sub[256], s2[256], lnk[256], hard[256];
	path(f, "f");
	path(g, "g");
	path(sub, "sub");
	path(s2, "sub/moved");
	path(lnk, "lnk");
	path(hard, "hard");

	/* Errnos. */
	EXPECT_ERR("add bad fd", inotify_add_watch(999, dir, IN_ALL_EVENTS));
	EXPECT_ERR("add not inotify", inotify_add_watch(1, dir, IN_ALL_EVENTS));
	EXPECT_ERR("add no events", inotify_add_watch(fd, dir, 0));
	EXPECT_ERR("add missing", inotify_add_watch(fd, f, IN_ALL_EVENTS));
	EXPECT_ERR("add mask_add|mask_create",
		   inotify_add_watch(fd, dir, IN_MODIFY | IN_MASK_ADD | IN_MASK_CREATE));
	EXPECT_ERR("rm unknown", inotify_rm_watch(fd, 12345));
	EXPECT_ERR("rm not inotify", inotify_rm_watch(1, 1));
	char buf[64];
	EXPECT_ERR("read empty", read(fd, buf, sizeof buf));

	wd_dir = inotify_add_watch(fd, dir, IN_ALL_EVENTS);
	CHECK(wd_dir >= 1);
	printf("same dir again same wd: %d\n", inotify_add_watch(fd, dir, IN_ALL_EVENTS) == wd_dir);
	EXPECT_ERR("mask_create on watched", inotify_add_watch(fd, dir, IN_MODIFY | IN_MASK_CREATE));

	/* Create, open, write, close. */
	int a = open(f, O_CREAT | O_WRONLY, 0644);
	CHECK(a >= 0);
	drain(fd, "creat");
	wd_file = inotify_add_watch(fd, f, IN_MODIFY | IN_ONLYDIR);
	printf("onlydir on a file: %s\n", wd_file < 0 ? errname(errno) : "ok");
	wd_file = inotify_add_watch(fd, f, IN_MODIFY);
	CHECK(wd_file > wd_dir);
	CHECK(inotify_add_watch(fd, f, IN_CLOSE | IN_MASK_ADD) == wd_file);
	CHECK(write(a, "abc", 3) == 3);
	CHECK(write(a, "def", 3) == 3);
	int q = -1;
	CHECK(ioctl(fd, FIONREAD, &q) == 0);
	printf("FIONREAD after two writes: %d\n", q);
	struct pollfd pfd = { fd, POLLIN, 0 };
	int pr = poll(&pfd, 1, 0);
	printf("poll: %d revents=%#x\n", pr, pfd.revents);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 7 }, out;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);
	printf("epoll: %d\n", epoll_wait(ep, &out, 1, 0));
	EXPECT_ERR("read too small", read(fd, buf, 8));
	CHECK(close(a) == 0);
	drain(fd, "two writes, close");
	printf("poll after drain: %d\n", poll(&pfd, 1, 0));
	printf("epoll after drain: %d\n", epoll_wait(ep, &out, 1, 0));

	/* Read, attrib. */
	int r = open(f, O_RDONLY);
	CHECK(read(r, buf, sizeof buf) == 6);
	CHECK(close(r) == 0);
	CHECK(chmod(f, 0600) == 0);
	CHECK(truncate(f, 1) == 0);
	drain(fd, "read, close, chmod, truncate");

	/* Links, symlinks, renames. */
	CHECK(link(f, hard) == 0);
	CHECK(symlink("f", lnk) == 0);
	drain(fd, "link, symlink");
	wd_link = inotify_add_watch(fd, lnk, IN_ATTRIB | IN_DONT_FOLLOW);
	CHECK(wd_link > 0 && wd_link != wd_file);
	CHECK(inotify_add_watch(fd, lnk, IN_ATTRIB) == wd_file);
	CHECK(mkdir(sub, 0755) == 0);
	wd_sub = inotify_add_watch(fd, sub, IN_ALL_EVENTS | IN_ONLYDIR);
	CHECK(wd_sub > 0);
	drain(fd, "mkdir");
	CHECK(rename(f, g) == 0);
	drain(fd, "rename in dir");
	CHECK(rename(g, s2) == 0);
	drain(fd, "rename across dirs");
	CHECK(inotify_add_watch(fd, s2, IN_ALL_EVENTS) == wd_file);
	int o = open(g, O_CREAT | O_WRONLY, 0644);
	CHECK(o >= 0 && close(o) == 0);
	drain(fd, "creat again");
	CHECK(rename(g, s2) == 0);
	drain(fd, "rename over a watched file");
	CHECK(rename(hard, g) == 0);
	drain(fd, "rename the other name");

	/* Oneshot. */
	int os = inotify_add_watch(fd, s2, IN_OPEN | IN_ONESHOT);
	CHECK(os > 0);
	wd_file = os;
	close(open(s2, O_RDONLY));
	close(open(s2, O_RDONLY));
	drain(fd, "oneshot opened twice");

	/* Removal. */
	wd_file = inotify_add_watch(fd, s2, IN_ALL_EVENTS);
	CHECK(wd_file > 0);
	CHECK(unlink(s2) == 0);
	drain(fd, "unlink");
	CHECK(unlink(g) == 0);
	drain(fd, "unlink the last name");
	printf("rm dir watch: %d\n", inotify_rm_watch(fd, wd_sub));
	EXPECT_ERR("rm it again", inotify_rm_watch(fd, wd_sub));
	drain(fd, "rm_watch");
	/* The last name of an open file goes: IN_ATTRIB now, IN_DELETE_SELF
	 * and IN_IGNORED only when the last fd (then the last mapping) goes.
	 * In sub, whose watch is gone: only the file's watch sees this. */
	char held[256];
	path(held, "sub/held");
	int h = open(held, O_CREAT | O_RDWR, 0644);
	CHECK(h >= 0 && write(h, "data", 4) == 4);
	wd_file = inotify_add_watch(fd, held, IN_ALL_EVENTS);
	CHECK(wd_file > 0);
	int h2 = dup(h);
	CHECK(h2 >= 0);
	drain(fd, "creat a file to hold open");
	CHECK(unlink(held) == 0);
	drain(fd, "unlink while open");
	CHECK(close(h) == 0);
	drain(fd, "close one of two fds");
	char *hm = mmap(NULL, 4096, PROT_READ, MAP_SHARED, h2, 0);
	CHECK(hm != MAP_FAILED);
	CHECK(close(h2) == 0);
	drain(fd, "close the last fd, a mapping left");
	CHECK(munmap(hm, 4096) == 0);
	drain(fd, "munmap the last mapping");
	/* With a second name, unlinking one is IN_ATTRIB alone. */
	h = open(held, O_CREAT | O_RDWR, 0644);
	CHECK(h >= 0 && close(h) == 0);
	path(hard, "sub/held2");
	CHECK(link(held, hard) == 0);
	wd_file = inotify_add_watch(fd, held, IN_ALL_EVENTS);
	CHECK(wd_file > 0);
	drain(fd, "a file with two names");
	CHECK(unlink(held) == 0);
	drain(fd, "unlink one of two names");
	CHECK(unlink(hard) == 0);
	drain(fd, "unlink the other, nothing open");

	CHECK(rmdir(sub) == 0);
	CHECK(unlink(lnk) == 0);
	drain(fd, "rmdir, unlink symlink");
	CHECK(rmdir(dir) == 0);
	drain(fd, "rmdir the watched dir");
	printf("done\n");
	return 0;
}
