/* Two processes sharing one fs context (clone(CLONE_FS), as a shell's
 * helper might be made) across a checkpoint: argv[1] ticks, then the
 * child changes the working directory and the umask, and the parent must
 * see both (with CLONE_FS they are one context, before a restore and
 * after); a third process cloned without CLONE_FS keeps its own.
 * Prints "tick N" lines, the values seen, then "done". */
#define _GNU_SOURCE
#include "common.h"
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* A child that, each time it reads a directory name from `in`, chdirs
 * there, sets the umask to the byte after it and answers on `out`. */
static pid_t helper(unsigned long flags, int in, int out)
{
	pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
	CHECK(pid >= 0);
	if (pid)
		return pid;
	char buf[64];
	ssize_t n;
	/* One byte alone: the end. */
	while ((n = read(in, buf, sizeof buf - 1)) > 1) {
		buf[n] = 0;
		CHECK(chdir(buf) == 0);
		umask((mode_t)(unsigned char)buf[n - 1] & 077);
		CHECK(write(out, "k", 1) == 1);
	}
	_exit(0);
}

static void ask(int to, int from, const char *dir, char mask)
{
	char msg[64];
	size_t len = strlen(dir);
	memcpy(msg, dir, len);
	msg[len] = 0;
	msg[len + 1] = mask;
	/* "DIR\0M": the helper takes the name up to the NUL, the mask after. */
	CHECK(write(to, msg, len + 2) == (ssize_t)(len + 2));
	char k;
	CHECK(read(from, &k, 1) == 1);
}

static void show(const char *who)
{
	char cwd[256];
	CHECK(getcwd(cwd, sizeof cwd) != NULL);
	mode_t m = umask(0);
	umask(m);
	printf("%s: cwd=%s umask=%03o\n", who, cwd, (unsigned)m);
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	int ticks = atoi(argv[1]);
	int a[2], b[2], c[2], d[2];
	CHECK(pipe(a) == 0 && pipe(b) == 0 && pipe(c) == 0 && pipe(d) == 0);
	CHECK(chdir("/") == 0);
	umask(022);
	pid_t shared = helper(CLONE_FS, a[0], b[1]);
	pid_t own = helper(0, c[0], d[1]);
	for (int i = 1; i <= ticks; i++) {
		printf("tick %d\n", i);
		fflush(stdout);
		usleep(100000);
	}
	ask(a[1], b[0], "/tmp", 7);
	show("after the CLONE_FS child moved");
	ask(c[1], d[0], "/usr", 077);
	show("after the other child moved");
	CHECK(chdir("/etc") == 0);
	ask(a[1], b[0], ".", 027);
	show("after the CLONE_FS child moved to its own .");
	/* Both children hold every pipe's ends: told to end, not closed. */
	CHECK(write(a[1], "q", 1) == 1 && write(c[1], "q", 1) == 1);
	int st;
	CHECK(waitpid(shared, &st, 0) == shared && WIFEXITED(st));
	CHECK(waitpid(own, &st, 0) == own && WIFEXITED(st));
	printf("done\n");
	return 0;
}
