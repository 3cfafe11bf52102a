/* The guest of golden/data/diff-v1.cryo (golden/tests/diff_golden.rs).
 *
 *   diff_idle serve DIR   makes DIR with `keep` ("alpha\nbeta\n") and `gone`
 *                         ("bye\n"), prints "ready" and waits for SIGUSR1;
 *                         then runs `diff_idle change DIR` as a child, prints
 *                         "changed STATUS" and sleeps for good.
 *   diff_idle change DIR  creates DIR/x (empty), removes DIR/gone, appends
 *                         "gamma\n" to DIR/keep.
 *
 * Static against musl, so its statefile restores on any host that has the
 * committed executable at the manifest's path. Everything it does after the
 * checkpoint is a function of the signal alone: `cryo diff` of the statefile
 * and the restored sandbox is one exact change set. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void put(const char *dir, const char *name, const char *text, int flags)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);
	if (fd < 0) {
		perror(path);
		exit(2);
	}
	size_t len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len) {
		perror(path);
		exit(2);
	}
	close(fd);
}

static int change(const char *dir)
{
	char path[4096];
	put(dir, "x", "", O_TRUNC);
	snprintf(path, sizeof path, "%s/gone", dir);
	if (unlink(path) != 0) {
		perror(path);
		return 2;
	}
	put(dir, "keep", "gamma\n", O_APPEND);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s serve|change DIR\n", argv[0]);
		return 2;
	}
	const char *dir = argv[2];
	if (strcmp(argv[1], "change") == 0)
		return change(dir);
	if (strcmp(argv[1], "serve") != 0) {
		fprintf(stderr, "usage: %s serve|change DIR\n", argv[0]);
		return 2;
	}
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		perror(dir);
		return 2;
	}
	put(dir, "keep", "alpha\nbeta\n", O_TRUNC);
	put(dir, "gone", "bye\n", O_TRUNC);

	/* SIGUSR1 stays blocked and is taken synchronously: no handler runs,
	 * so no signal frame (whose size is the CPU's and the platform's)
	 * lands on the stack, and the memory the guest changes is the same
	 * on every host. */
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	printf("ready\n");
	fflush(stdout);
	while (sigwaitinfo(&usr1, NULL) != SIGUSR1)
		;

	pid_t child = fork();
	if (child < 0) {
		perror("fork");
		return 2;
	}
	if (child == 0) {
		execl(argv[0], argv[0], "change", dir, (char *)NULL);
		_exit(127);
	}
	int status;
	if (waitpid(child, &status, 0) != child) {
		perror("waitpid");
		return 2;
	}
	printf("changed %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	fflush(stdout);
	for (;;)
		pause();
}
