/* A program holding a pty, a lock and inotify watches across a checkpoint
 * (issue 10's "carry on" test). Before the ticks it takes a write lock on
 * a file, watches its directory and the file, makes changes whose events
 * stay queued unread, opens a pseudo-terminal in raw mode and leaves
 * bytes unread in it. Each tick prints a line that depends on the tick
 * alone; at the end it reads the queued events, makes new changes and
 * reads theirs, adds a watch (the next descriptor), moves bytes both ways
 * through the pty, and has a child find the lock still held (F_GETLK,
 * EAGAIN) until it is released.
 * Usage: ckpt_holding TICKS */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <termios.h>
#include <time.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void drain(int fd, const char *step)
{
	char buf[4096] __attribute__((aligned(8)));
	int q = -1;
	CHECK(ioctl(fd, FIONREAD, &q) == 0);
	printf("-- %s (%d bytes queued)\n", step, q);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0) {
			CHECK(errno == EAGAIN);
			return;
		}
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)p;
			printf("wd=%d mask=%#x cookie=%s name=%s\n", e->wd, e->mask,
			       e->cookie ? "set" : "0", e->len ? e->name : "");
			p += sizeof *e + e->len;
		}
	}
}

static void pty_read(int fd, const char *tag)
{
	char buf[64];
	struct pollfd p = { fd, POLLIN, 0 };
	CHECK(poll(&p, 1, 5000) == 1);
	ssize_t n = read(fd, buf, sizeof buf);
	CHECK(n > 0);
	printf("%s read: %.*s\n", tag, (int)n, buf);
}

int main(int argc, char **argv)
{
	int ticks = argc > 1 ? atoi(argv[1]) : 10;
	setvbuf(stdout, NULL, _IOLBF, 0);
	char dir[128], file[256], a[256], b[256];
	make_tmpdir("holding", dir, sizeof dir);
	snprintf(file, sizeof file, "%s/locked", dir);
	snprintf(a, sizeof a, "%s/a", dir);
	snprintf(b, sizeof b, "%s/b", dir);

	int lf = open(file, O_CREAT | O_RDWR, 0644);
	CHECK(lf >= 0);
	struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };
	CHECK(fcntl(lf, F_SETLK, &l) == 0);

	const char *shm = "/dev/shm/cryo-holding-xattr";
	int sf = open(shm, O_CREAT | O_RDWR | O_TRUNC, 0600);
	CHECK(sf >= 0 && close(sf) == 0);
	CHECK(setxattr(file, "user.kept", "upper layer", 11, 0) == 0);
	CHECK(setxattr(shm, "user.kept", "shm", 3, 0) == 0);
	CHECK(setxattr(shm, "trusted.root", "t", 1, 0) == 0);

	int in = inotify_init1(IN_NONBLOCK);
	CHECK(in >= 0);
	int wd_dir = inotify_add_watch(in, dir, IN_ALL_EVENTS);
	int wd_file = inotify_add_watch(in, file, IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE);
	printf("wds: %d %d\n", wd_dir, wd_file);
	int fa = open(a, O_CREAT | O_WRONLY, 0600);
	CHECK(fa >= 0 && close(fa) == 0);
	CHECK(write(lf, "locked bytes", 12) == 12);
	CHECK(fchmod(lf, 0640) == 0);
	CHECK(rename(a, b) == 0);

	int master = posix_openpt(O_RDWR | O_NOCTTY);
	CHECK(master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0);
	int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	CHECK(slave >= 0);
	struct termios t;
	CHECK(tcgetattr(slave, &t) == 0);
	cfmakeraw(&t);
	CHECK(tcsetattr(slave, TCSANOW, &t) == 0);
	CHECK(write(master, "typed before", 12) == 12);

	for (int i = 1; i <= ticks; i++) {
		printf("tick %d\n", i);
		sleep_ms(100);
	}

	drain(in, "queued before the ticks");
	CHECK(unlink(b) == 0);
	CHECK(pwrite(lf, "!", 1, 0) == 1);
	drain(in, "unlink, write");
	printf("same dir's wd: %d\n", inotify_add_watch(in, dir, IN_CREATE | IN_MASK_ADD));
	char sub[256];
	snprintf(sub, sizeof sub, "%s/sub", dir);
	CHECK(mkdir(sub, 0700) == 0);
	printf("new watch wd: %d\n", inotify_add_watch(in, sub, IN_ALL_EVENTS));
	CHECK(rmdir(sub) == 0);
	int fb = open(b, O_CREAT | O_WRONLY, 0600);
	CHECK(fb >= 0 && close(fb) == 0);
	drain(in, "create again");

	pty_read(slave, "slave");
	CHECK(write(master, "typed after", 11) == 11);
	pty_read(slave, "slave");
	CHECK(write(slave, "echoed back", 11) == 11);
	pty_read(master, "master");
	CHECK(tcgetattr(slave, &t) == 0);
	printf("still raw: %d\n", (t.c_lflag & (ICANON | ECHO)) == 0);

	int go[2], back[2];
	CHECK(pipe(go) == 0 && pipe(back) == 0);
	pid_t parent = getpid();
	pid_t kid = fork();
	CHECK(kid >= 0);
	if (kid == 0) {
		int f = open(file, O_RDWR);
		struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 1 };
		CHECK(fcntl(f, F_GETLK, &q) == 0);
		printf("child sees lock: type=%s by parent=%d start=%ld len=%ld\n",
		       q.l_type == F_WRLCK ? "write" : "other", q.l_pid == parent, (long)q.l_start,
		       (long)q.l_len);
		q.l_type = F_WRLCK;
		EXPECT_ERR("child setlk", fcntl(f, F_SETLK, &q));
		char c;
		CHECK(write(go[1], "w", 1) == 1);
		CHECK(read(back[0], &c, 1) == 1);
		printf("child setlk after unlock: %d\n", fcntl(f, F_SETLK, &q));
		_exit(0);
	}
	char c;
	CHECK(read(go[0], &c, 1) == 1);
	l.l_type = F_UNLCK;
	CHECK(fcntl(lf, F_SETLK, &l) == 0);
	CHECK(write(back[1], "g", 1) == 1);
	int st;
	CHECK(waitpid(kid, &st, 0) == kid);
	printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	char v[64];
	ssize_t n = getxattr(file, "user.kept", v, sizeof v);
	printf("file xattr: %.*s\n", (int)(n > 0 ? n : 0), v);
	n = getxattr(shm, "user.kept", v, sizeof v);
	printf("shm xattr: %.*s\n", (int)(n > 0 ? n : 0), v);
	n = listxattr(shm, v, sizeof v);
	printf("shm list bytes: %zd\n", n);
	unlink(shm);
	printf("done\n");
	return 0;
}
