/* clone(2) with CLONE_FS and CLONE_PARENT, used directly (raw syscall,
 * fork-style: no new stack, the child runs on a copy of the caller's).
 *
 * CLONE_FS: cwd, umask and root are one object for parent and child, so
 * the child's chdir/umask/chroot are the parent's too; without the flag
 * each has its own copy.
 * CLONE_PARENT: the child is the caller's sibling: getppid() is the
 * caller's parent, the caller cannot wait for it, the caller's parent gets
 * the SIGCHLD and reaps it; the exit signal is the caller's own (Linux
 * ignores the one asked for), and init may not use the flag. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static long raw_clone(unsigned long flags)
{
	return syscall(SYS_clone, flags, 0L, 0L, 0L, 0L);
}

static mode_t current_umask(void)
{
	mode_t m = umask(0);
	umask(m);
	return m;
}

/* The child's part of the fs tests: moves, changes the umask and (as root)
 * its root, then exits with a status saying which calls worked. */
static void fs_child(int go)
{
	char c;
	if (read(go, &c, 1) != 1)
		_exit(90);
	int st = 0;
	if (chdir("/usr") != 0)
		st |= 1;
	umask(027);
	if (chroot("/usr") != 0)
		st |= 2;
	_exit(st);
}

static void fs_case(const char *label, unsigned long flags)
{
	CHECK(chdir("/") == 0);
	umask(022);
	int p[2];
	CHECK(pipe(p) == 0);
	/* Exit the root we were given before the test: the parent's own
	 * root is checked relative to it. */
	int oldroot = open("/", O_RDONLY | O_DIRECTORY);
	CHECK(oldroot >= 0);
	long pid = raw_clone(flags | SIGCHLD);
	CHECK(pid >= 0);
	if (pid == 0) {
		close(p[1]);
		fs_child(p[0]);
	}
	close(p[0]);
	CHECK(write(p[1], "x", 1) == 1);
	close(p[1]);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status));
	int chrooted = (WEXITSTATUS(status) & 2) == 0;
	/* /share is /usr/share once / is /usr. */
	int root_moved = access("/share", F_OK) == 0;
	/* The cwd is /usr if "share" is found relative to it. */
	int cwd_usr = access("share", F_OK) == 0;
	printf("%s: child chdir %s chroot %s; parent cwd moved %d, umask %03o, root moved %d\n", label,
	       (WEXITSTATUS(status) & 1) ? "failed" : "ok", chrooted ? "ok" : "failed", cwd_usr,
	       (unsigned)current_umask(), root_moved);
	/* Back to the original root and cwd for the next case. */
	CHECK(fchdir(oldroot) == 0);
	if (root_moved)
		CHECK(chroot(".") == 0);
	close(oldroot);
	CHECK(chdir("/") == 0);
	umask(022);
}

static volatile sig_atomic_t usr1_seen;
static void on_usr1(int sig)
{
	(void)sig;
	usr1_seen++;
}

/* The middle process: clones a sibling with CLONE_PARENT and an exit
 * signal of SIGUSR1 (which Linux replaces with its own, SIGCHLD). */
static void middle(int report, int release)
{
	long c = raw_clone(CLONE_PARENT | SIGUSR1);
	if (c < 0)
		_exit(80);
	if (c == 0) {
		char x;
		pid_t pp = getppid();
		if (read(release, &x, 1) != 1)
			_exit(81);
		/* Exit 7 if the parent is the middle's parent (its pid came in
		 * the release byte's pipe), else 8. */
		pid_t want;
		if (read(release, &want, sizeof want) != sizeof want)
			_exit(82);
		_exit(pp == want ? 7 : 8);
	}
	errno = 0;
	pid_t w = waitpid((pid_t)c, NULL, WNOHANG);
	int e1 = errno;
	errno = 0;
	pid_t w2 = waitpid(-1, NULL, WNOHANG | __WALL);
	int e2 = errno;
	pid_t cc = (pid_t)c;
	if (write(report, &cc, sizeof cc) != sizeof cc)
		_exit(83);
	/* 0: both waits said ECHILD, as for a process with no children. */
	_exit(w == -1 && e1 == ECHILD && w2 == -1 && e2 == ECHILD ? 0 : 84);
}

static void parent_case(void)
{
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	CHECK(sigprocmask(SIG_BLOCK, &chld, NULL) == 0);
	struct sigaction sa = { 0 };
	sa.sa_handler = on_usr1;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	int rep[2], rel[2];
	CHECK(pipe(rep) == 0 && pipe(rel) == 0);
	pid_t top = getpid();
	pid_t m = fork();
	CHECK(m >= 0);
	if (m == 0) {
		close(rep[0]);
		close(rel[1]);
		middle(rep[1], rel[0]);
	}
	close(rep[1]);
	close(rel[0]);
	pid_t c = 0;
	CHECK(read(rep[0], &c, sizeof c) == sizeof c);
	int status;
	CHECK(waitpid(m, &status, 0) == m);
	printf("parent: middle exit %d (0: it had no child to wait for)\n",
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	/* The middle's SIGCHLD, then release the sibling and take its own. */
	siginfo_t si;
	struct timespec ts = { 10, 0 };
	CHECK(sigtimedwait(&chld, &si, &ts) == SIGCHLD);
	printf("parent: first SIGCHLD from the middle %d\n", si.si_pid == m);
	CHECK(write(rel[1], "x", 1) == 1);
	CHECK(write(rel[1], &top, sizeof top) == sizeof top);
	CHECK(sigtimedwait(&chld, &si, &ts) == SIGCHLD);
	printf("parent: second SIGCHLD from the sibling %d, code %s, status %d\n", si.si_pid == c,
	       si.si_code == CLD_EXITED ? "CLD_EXITED" : "other", si.si_status);
	CHECK(waitpid(c, &status, 0) == c);
	printf("parent: reaped the sibling, exit %d (7: its parent was us); SIGUSR1 seen %d\n",
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1, (int)usr1_seen);
	errno = 0;
	printf("parent: nothing left %d\n", waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
	CHECK(sigprocmask(SIG_UNBLOCK, &chld, NULL) == 0);
	close(rep[0]);
	close(rel[1]);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	fs_case("fs_shared", CLONE_FS);
	fs_case("fs_private", 0);
	parent_case();
	/* Init (pid 1 in the sandbox) may not use CLONE_PARENT: Linux says
	 * EINVAL there; elsewhere it is allowed. Checked from a child whose
	 * own parent is us, so it is allowed in both runs. */
	pid_t k = fork();
	CHECK(k >= 0);
	if (k == 0) {
		long r = raw_clone(CLONE_PARENT | SIGCHLD);
		if (r == 0)
			_exit(5);
		_exit(r > 0 ? 0 : 1);
	}
	int st, n = 0, fives = 0;
	pid_t w;
	while ((w = waitpid(-1, &st, 0)) > 0) {
		n++;
		fives += WIFEXITED(st) && WEXITSTATUS(st) == 5;
	}
	printf("clone_parent from a child: %d reaped here, %d the grandchild\n", n, fives);
	return 0;
}
