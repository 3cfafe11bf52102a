/* close_range(2), with and without CLOSE_RANGE_UNSHARE, in a child that
 * shares the descriptor table (clone with CLONE_FILES, no CLONE_THREAD):
 * without UNSHARE what the child closes is closed for the parent too;
 * with it the child closes in its own copy and the parent keeps its
 * descriptors (and does not see what the child opens afterwards).
 * CLOSE_RANGE_CLOEXEC marks instead of closing; bad flags are EINVAL.
 * Prints "SKIPPED: <why>" if a sharing child cannot be made. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static int target_fd;
static unsigned child_flags;
static int child_seen;

static int child(void *arg)
{
	(void)arg;
	if (syscall(SYS_close_range, target_fd, target_fd, child_flags) != 0)
		_exit(10);
	child_seen = fcntl(target_fd, F_GETFD) < 0 ? errno : 0;
	/* What the child opens now goes to whichever table it has (at 100,
	 * not at the lowest number, which the parent's own may hold). */
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || fcntl(fd, F_DUPFD, 100) != 100 || close(fd) != 0)
		_exit(11);
	_exit(0);
}

static const char *state(int fd)
{
	return fcntl(fd, F_GETFD) < 0 ? errname(errno) : "open";
}

static int run(unsigned flags)
{
	static char stack[1 << 16];
	target_fd = open("/dev/null", O_RDONLY);
	CHECK(target_fd >= 0);
	child_flags = flags;
	child_seen = -1;
	int pid = clone(child, stack + sizeof stack, CLONE_VM | CLONE_FILES | SIGCHLD, NULL);
	if (pid < 0) {
		printf("SKIPPED: clone(CLONE_VM|CLONE_FILES) without CLONE_THREAD: %s\n", errname(errno));
		return -1;
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	printf("flags %u: child sees its fd %s, parent sees it %s, child's new fd in parent: %s\n",
	       flags, child_seen ? errname(child_seen) : "open", state(target_fd),
	       state(100));
	close(target_fd);
	close(100);
	return 0;
}

int main(void)
{
	int fd = open("/dev/null", O_RDONLY);
	CHECK(fd >= 0);
	CHECK(syscall(SYS_close_range, fd, fd, CLOSE_RANGE_CLOEXEC) == 0);
	printf("CLOEXEC marks: %s\n", fcntl(fd, F_GETFD) == FD_CLOEXEC ? "yes" : "no");
	printf("bad flags: %s\n", syscall(SYS_close_range, fd, fd, 8) == 0 ? "OK" : errname(errno));
	printf("first > last: %s\n", syscall(SYS_close_range, fd + 1, fd, 0) == 0 ? "OK" : errname(errno));
	CHECK(close(fd) == 0);
	if (run(0) < 0 || run(CLOSE_RANGE_UNSHARE) < 0)
		return 0;
	return 0;
}
