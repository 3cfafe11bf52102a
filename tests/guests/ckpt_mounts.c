/* A mount tree across checkpoint and restore: a tmpfs at /mnt/ck with a
 * file, a directory of it bind-mounted read-only at /mnt/ro, a child
 * chrooted into the bind mount. Each tick (a second apart, so a checkpoint
 * lands between ticks) both report what they see; `FAIL` on a change.
 * argv[1]: how many ticks. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "common.h"

static int read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	return 0;
}

/* How many lines of /proc/self/mountinfo name a mount point under /mnt,
 * and whether the read-only one is still ro. */
static void tree(char *out, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096], mp[1024], opts[256];
	int under = 0, ro = 0;
	while (f && fgets(line, sizeof line, f)) {
		if (sscanf(line, "%*s %*s %*s %*s %1023s %255s", mp, opts) != 2)
			continue;
		if (strncmp(mp, "/mnt/", 5) == 0)
			under++;
		if (strcmp(mp, "/mnt/ro") == 0 && strncmp(opts, "ro", 2) == 0)
			ro = 1;
	}
	if (f)
		fclose(f);
	char data[64] = "", inner[64] = "";
	if (read_text("/mnt/ck/data", data, sizeof data))
		strcpy(data, errname(errno));
	if (read_text("/mnt/ro/inner", inner, sizeof inner))
		strcpy(inner, errname(errno));
	int w = open("/mnt/ro/new", O_CREAT | O_WRONLY, 0644);
	snprintf(out, len, "mounts=%d ro=%d data=%s inner=%s write=%s", under, ro, data, inner,
		 w < 0 ? errname(errno) : "OK");
	if (w >= 0)
		close(w);
}

int main(int argc, char **argv)
{
	int ticks = argc > 1 ? atoi(argv[1]) : 5;
	mkdir("/mnt", 0755);
	mkdir("/mnt/ck", 0755);
	mkdir("/mnt/ro", 0755);
	if (mount("none", "/mnt/ck", "tmpfs", 0, "mode=0755")) {
		printf("FAIL mount tmpfs: %s\n", errname(errno));
		return 1;
	}
	int fd = open("/mnt/ck/data", O_CREAT | O_WRONLY, 0644);
	if (fd < 0 || write(fd, "payload", 7) != 7) {
		printf("FAIL write\n");
		return 1;
	}
	close(fd);
	mkdir("/mnt/ck/jail", 0755);
	fd = open("/mnt/ck/jail/inner", O_CREAT | O_WRONLY, 0644);
	if (fd < 0 || write(fd, "inside", 6) != 6) {
		printf("FAIL write inner\n");
		return 1;
	}
	close(fd);
	if (mount("/mnt/ck/jail", "/mnt/ro", NULL, MS_BIND, NULL) ||
	    mount(NULL, "/mnt/ro", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL)) {
		printf("FAIL bind: %s\n", errname(errno));
		return 1;
	}
	int pipefd[2];
	if (pipe(pipefd))
		return 1;
	fflush(stdout);
	pid_t child = fork();
	if (child == 0) {
		close(pipefd[0]);
		if (chroot("/mnt/ro") || chdir("/")) {
			dprintf(pipefd[1], "FAIL chroot %s\n", errname(errno));
			_exit(1);
		}
		for (int i = 0; i < ticks; i++) {
			char buf[64] = "", line[160];
			struct stat up, root;
			stat("/", &root);
			stat("/../..", &up);
			if (read_text("/inner", buf, sizeof buf))
				strcpy(buf, errname(errno));
			int n = snprintf(line, sizeof line, "child=%s escaped=%d\n", buf,
					 root.st_ino != up.st_ino);
			if (write(pipefd[1], line, n) != n)
				_exit(1);
			sleep(1);
		}
		_exit(0);
	}
	close(pipefd[1]);
	FILE *from_child = fdopen(pipefd[0], "r");
	char first[512] = "";
	for (int i = 0; i < ticks; i++) {
		char now[512], childline[160] = "";
		if (!fgets(childline, sizeof childline, from_child)) {
			printf("FAIL child line\n");
			return 1;
		}
		childline[strcspn(childline, "\n")] = 0;
		tree(now, sizeof now);
		char full[700];
		snprintf(full, sizeof full, "%s %s", now, childline);
		if (i == 0)
			strcpy(first, full);
		else if (strcmp(first, full))
			printf("FAIL changed: %s\n", full);
		printf("tick %d %s\n", i, full);
		fflush(stdout);
	}
	int st;
	waitpid(child, &st, 0);
	printf("done\n");
	return 0;
}
