/* unshare(2): a process cloned with CLONE_FILES or CLONE_FS stops sharing
 * its descriptor table or fs context, so what it closes, chdirs or umasks
 * afterwards is its own; what cannot be unshared (threads, handlers or
 * memory another task holds) is EINVAL; unknown flags are EINVAL. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char *try_unshare(int flags)
{
	return errname(unshare(flags) == 0 ? 0 : errno);
}

static char child_stack[256 * 1024] __attribute__((aligned(16)));

static int run_body(void *body)
{
	return ((int (*)(void))body)();
}

/* A child cloned with `flags` (on a stack of its own, as CLONE_VM needs)
 * that runs `body` and exits with its result. */
static int in_child(int flags, int (*body)(void))
{
	fflush(stdout);
	pid_t pid = clone(run_body, child_stack + sizeof child_stack, flags | SIGCHLD,
			  (void *)body);
	CHECK(pid >= 0);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static int shared_fd = -1;

static int close_shared(void)
{
	return close(shared_fd) == 0 ? 0 : 1;
}

static int unshare_then_close(void)
{
	if (unshare(CLONE_FILES) != 0)
		return 2;
	return close_shared();
}

static int chdir_tmp(void)
{
	umask(077);
	return chdir("/tmp") == 0 ? 0 : 1;
}

static int unshare_then_chdir(void)
{
	if (unshare(CLONE_FS) != 0)
		return 2;
	return chdir_tmp();
}

static int unshare_handlers(void)
{
	/* Sharing handlers with the parent (CLONE_SIGHAND needs CLONE_VM). */
	return unshare(CLONE_SIGHAND) == 0 ? 0 : errno;
}

static int unshare_vm(void)
{
	return unshare(CLONE_VM) == 0 ? 0 : errno;
}

static void *idle(void *arg)
{
	(void)arg;
	pause();
	return NULL;
}

static void cwd_line(const char *what)
{
	char buf[256];
	mode_t m = umask(022);
	umask(m);
	printf("%s: cwd %s umask %03o\n", what, getcwd(buf, sizeof buf) ? buf : "?",
	       (unsigned)m);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("unshare(0): %s\n", try_unshare(0));
	printf("unshare(CLONE_PARENT): %s\n", try_unshare(CLONE_PARENT));
	printf("unshare(CLONE_FILES|CLONE_FS|CLONE_SYSVSEM) alone: %s\n",
	       try_unshare(CLONE_FILES | CLONE_FS | CLONE_SYSVSEM));
	printf("single-threaded unshare(CLONE_THREAD|CLONE_SIGHAND|CLONE_VM): %s\n",
	       try_unshare(CLONE_THREAD | CLONE_SIGHAND | CLONE_VM));

	/* Descriptor tables. */
	shared_fd = open("/dev/null", O_RDONLY);
	CHECK(shared_fd >= 0);
	int r = in_child(CLONE_FILES, close_shared);
	printf("CLONE_FILES child closes: %d, parent's fd then %s\n", r,
	       fcntl(shared_fd, F_GETFD) == -1 ? errname(errno) : "open");
	shared_fd = open("/dev/null", O_RDONLY);
	CHECK(shared_fd >= 0);
	r = in_child(CLONE_FILES, unshare_then_close);
	printf("CLONE_FILES child unshares, closes: %d, parent's fd then %s\n", r,
	       fcntl(shared_fd, F_GETFD) == -1 ? errname(errno) : "open");

	/* Fs contexts. */
	CHECK(chdir("/") == 0);
	umask(022);
	r = in_child(CLONE_FS, chdir_tmp);
	cwd_line("after a CLONE_FS child's chdir");
	CHECK(chdir("/") == 0);
	umask(022);
	r = in_child(CLONE_FS, unshare_then_chdir);
	printf("CLONE_FS child unshared first: %d\n", r);
	cwd_line("after an unshared child's chdir");

	/* What cannot be unshared while shared. */
	r = in_child(CLONE_VM | CLONE_SIGHAND, unshare_handlers);
	printf("CLONE_SIGHAND child unshare(CLONE_SIGHAND): %s\n", errname(r));
	r = in_child(CLONE_VM, unshare_vm);
	printf("CLONE_VM child unshare(CLONE_VM): %s\n", errname(r));
	r = in_child(0, unshare_vm);
	printf("fork child unshare(CLONE_VM): %s\n", errname(r));

	pthread_t t;
	CHECK(pthread_create(&t, NULL, idle, NULL) == 0);
	printf("two threads: unshare(CLONE_THREAD): %s\n", try_unshare(CLONE_THREAD));
	printf("two threads: unshare(CLONE_VM): %s\n", try_unshare(CLONE_VM));
	printf("two threads: unshare(CLONE_FILES): %s\n", try_unshare(CLONE_FILES));
	printf("done\n");
	return 0;
}
