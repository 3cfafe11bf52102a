/* POSIX record locks between two processes, compared with Linux: the
 * child sees the parent's lock with l_pid = the parent; F_SETLK conflicts
 * (EAGAIN); an F_SETLKW that would close a wait cycle fails with EDEADLK;
 * a blocked F_SETLKW gets the lock once its holder unlocks; a process's
 * locks go when it exits. Prints "SKIPPED: <why>" if fork fails. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>

/* errname with EDEADLK, which common.h leaves out. */
static const char *ename(int e)
{
	return e == EDEADLK ? "EDEADLK" : errname(e);
}

static int lk(int fd, int cmd, short type, off_t start)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = 1 };
	return fcntl(fd, cmd, &fl) == 0 ? 0 : errno;
}

static void sleep_ms(int ms)
{
	struct timespec d = { 0, ms * 1000000L };
	nanosleep(&d, NULL);
}

int main(void)
{
	char path[] = "/tmp/cryo-locks-fork-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK(write(fd, "0123456789", 10) == 10);
	CHECK(lk(fd, F_SETLK, F_WRLCK, 0) == 0);
	int go[2], done[2];
	CHECK(pipe(go) == 0 && pipe(done) == 0);
	fflush(stdout);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		printf("SKIPPED: fork: %s\n", errname(errno));
		return 0;
	}
	if (pid == 0) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
		CHECK(fcntl(fd, F_GETLK, &fl) == 0);
		printf("child: byte 0 is %s by the parent: %s\n", fl.l_type == F_WRLCK ? "write-locked" : "?",
		       fl.l_pid == parent ? "yes" : "no");
		printf("child: F_SETLK byte 0: %s\n", ename(lk(fd, F_SETLK, F_WRLCK, 0)));
		CHECK(lk(fd, F_SETLK, F_WRLCK, 1) == 0);
		fflush(stdout);
		CHECK(write(go[1], "g", 1) == 1);
		/* Blocks until the parent unlocks byte 0. */
		printf("child: F_SETLKW byte 0: %s\n", ename(lk(fd, F_SETLKW, F_WRLCK, 0)));
		fflush(stdout);
		char c;
		CHECK(read(done[0], &c, 1) == 1);
		_exit(0);
	}
	char c;
	CHECK(read(go[0], &c, 1) == 1);
	sleep_ms(300); /* the child is now blocked on byte 0 */
	printf("parent: F_SETLKW byte 1 (a cycle): %s\n", ename(lk(fd, F_SETLKW, F_WRLCK, 1)));
	fflush(stdout);
	CHECK(lk(fd, F_SETLK, F_UNLCK, 0) == 0);
	sleep_ms(300);
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 2 };
	CHECK(fcntl(fd, F_GETLK, &fl) == 0);
	printf("parent: bytes 0-1 held by the child: %s\n", fl.l_type == F_WRLCK && fl.l_pid == pid ? "yes" : "no");
	CHECK(write(done[1], "d", 1) == 1);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	fl.l_type = F_WRLCK;
	CHECK(fcntl(fd, F_GETLK, &fl) == 0);
	printf("parent: after the child exited: %s\n", fl.l_type == F_UNLCK ? "unlocked" : "locked");
	CHECK(unlink(path) == 0);
	return 0;
}
