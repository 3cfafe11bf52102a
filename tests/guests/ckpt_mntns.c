/* A mount namespace across checkpoint and restore, as `unshare -m` makes
 * one: unshare(CLONE_NEWNS), a tmpfs mounted at DIR/m there only, then
 * the program exec'd again (as unshare(1) execs its command). In "two"
 * and "shared" modes a child forked before the unshare stays in the first
 * namespace; in "shared" a tmpfs mounted at DIR/s before it is in both.
 * The cwd is DIR/m; a child forked after waits. Each tick (a second
 * apart) reports how many mounts at DIR/m the process and its children
 * see, the file it reads through its cwd, the child's cwd; `FAIL` on a
 * change, and in "two" mode how many the first namespace's child sees.
 * argv: MODE(one|two) DIR TICKS. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common.h"

static char base[1024];

/* How many lines of a mountinfo file have DIR/m as their mount point. */
static int count(const char *file)
{
	FILE *f = fopen(file, "r");
	if (!f)
		return -1;
	char line[4096], mp[2048], want[1100];
	snprintf(want, sizeof want, "%s/m", base);
	int n = 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "%*s %*s %*s %*s %2047s", mp) == 1 && strcmp(mp, want) == 0)
			n++;
	fclose(f);
	return n;
}

static pid_t waiter(int *release)
{
	int go[2];
	if (pipe(go))
		exit(1);
	fflush(stdout);
	pid_t c = fork();
	if (c == 0) {
		close(go[1]);
		char b;
		while (read(go[0], &b, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(go[0]);
	*release = go[1];
	return c;
}

static int ticking(const char *mode, int ticks, pid_t stay)
{
	if (chdir("m"))
		return 1;
	int release_child;
	pid_t child = waiter(&release_child);
	char first[1400] = "";
	for (int i = 0; i < ticks; i++) {
		char path[64], cwd[1100] = "", file[64], now[1400];
		snprintf(path, sizeof path, "/proc/%d/mountinfo", child);
		int theirs = count(path);
		snprintf(path, sizeof path, "/proc/%d/cwd", child);
		ssize_t n = readlink(path, cwd, sizeof cwd - 1);
		cwd[n > 0 ? n : 0] = 0;
		read_file_text("file", file, sizeof file);
		int first_ns = -2;
		if (stay > 0) {
			snprintf(path, sizeof path, "/proc/%d/mountinfo", stay);
			first_ns = count(path);
		}
		snprintf(now, sizeof now, "mine=%d child=%d child-cwd-is-m=%d file=%s first-ns=%d",
			 count("/proc/self/mountinfo"), theirs,
			 strcmp(cwd + (strlen(cwd) >= 2 ? strlen(cwd) - 2 : 0), "/m") == 0, file, first_ns);
		if (i == 0)
			snprintf(first, sizeof first, "%s", now);
		else if (strcmp(first, now))
			printf("FAIL changed: %s\n", now);
		printf("tick %d %s\n", i, now);
		fflush(stdout);
		if (i + 1 < ticks)
			sleep(1);
	}
	/* The children go: the waiting one's pipe and, in "two" mode, the
	 * first namespace's one's (open across the exec) are closed. */
	for (int fd = 3; fd < 64; fd++)
		close(fd);
	int st;
	while (wait(&st) > 0)
		;
	(void)mode;
	(void)release_child;
	printf("done\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	snprintf(base, sizeof base, "%s", argv[2]);
	if (chdir(base))
		return 1;
	if (argc == 5)
		return ticking(argv[1], atoi(argv[3]), atoi(argv[4]));
	mkdir("m", 0755);
	mkdir("s", 0755);
	/* "shared": a tmpfs mounted before the unshare is in both. */
	if (strcmp(argv[1], "shared") == 0 && mount("none", "s", "tmpfs", 0, "mode=0755")) {
		printf("FAIL mount shared: %s\n", errname(errno));
		return 1;
	}
	int release_stay = -1;
	pid_t stay = 0;
	if (strcmp(argv[1], "one") != 0)
		stay = waiter(&release_stay);
	if (unshare(CLONE_NEWNS)) {
		printf("FAIL unshare: %s\n", errname(errno));
		return 1;
	}
	if (mount("none", "m", "tmpfs", 0, "mode=0755")) {
		printf("FAIL mount: %s\n", errname(errno));
		return 1;
	}
	int fd = open("m/file", O_CREAT | O_WRONLY, 0644);
	if (fd < 0 || write(fd, "in copy", 7) != 7)
		return 1;
	close(fd);
	/* The first namespace's child, if any, goes when this program ends:
	 * its pipe's end stays open across the exec. */
	(void)release_stay;
	char self[1024];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return 1;
	self[n] = 0;
	char stay_pid[16];
	snprintf(stay_pid, sizeof stay_pid, "%d", stay);
	char *args[] = {self, argv[1], argv[2], argv[3], stay_pid, NULL};
	execv(self, args);
	printf("FAIL exec: %s\n", errname(errno));
	return 1;
}
