/* A container runtime's root switch, then ticks across checkpoint and
 * restore: a tmpfs at DIR/new with a file, /etc bound read-only into it,
 * this program's directory bound at /prog, a proc mounted in it, a
 * directory of it bound at /alias; pivot_root(2) into it with the old
 * root at /old, which is then detached (umount2(MNT_DETACH)) and removed;
 * then, as a runtime execs the container's program, it execs itself from
 * the new root. The cwd is /data; a child chroots into /alias and waits. Each tick (a second apart) reports the tree as
 * the parent and the child see it (mount points sorted, each with its
 * parent's and rw/ro: the same modulo ids natively), files, the cwd and
 * the child's root; `FAIL` on a change.
 * argv[1]: a fresh directory; argv[2]: how many ticks. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <libgen.h>

#include "common.h"

static char base[1024];

static const char *p(const char *rel)
{
	static char buf[2][2048];
	static int n;
	n ^= 1;
	snprintf(buf[n], sizeof buf[n], "%s/%s", base, rel);
	return buf[n];
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	int r = write(fd, text, strlen(text)) == (ssize_t)strlen(text) ? 0 : -1;
	close(fd);
	return r;
}

/* Its first line only. */
static void read_text(const char *path, char *buf, size_t len)
{
	read_file_text(path, buf, len);
	buf[strcspn(buf, "\n")] = 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The mounts of a mountinfo file as "point<parent-point,rw|ro" sorted,
 * joined by spaces. */
static void tree(const char *mountinfo, char *out, size_t len)
{
	FILE *f = fopen(mountinfo, "r");
	char line[4096];
	int ids[64], parents[64], n = 0;
	char *points[64], *opts[64];
	while (f && n < 64 && fgets(line, sizeof line, f)) {
		char mp[1024], o[256];
		if (sscanf(line, "%d %d %*s %*s %1023s %255s", &ids[n], &parents[n], mp, o) != 4)
			continue;
		points[n] = strdup(mp);
		opts[n] = strdup(strncmp(o, "ro", 2) == 0 ? "ro" : "rw");
		n++;
	}
	if (f)
		fclose(f);
	char *entries[64];
	for (int i = 0; i < n; i++) {
		const char *parent = "-";
		for (int j = 0; j < n; j++)
			if (j != i && ids[j] == parents[i])
				parent = points[j];
		char e[2200];
		snprintf(e, sizeof e, "%s<%s,%s", points[i], parent, opts[i]);
		entries[i] = strdup(e);
	}
	qsort(entries, n, sizeof *entries, cmp);
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		strncat(out, i ? " " : "", len - strlen(out) - 1);
		strncat(out, entries[i], len - strlen(out) - 1);
		free(entries[i]);
		free(points[i]);
		free(opts[i]);
	}
}

#define MUST(what, call)                                                      \
	do {                                                                   \
		if ((call) != 0) {                                             \
			printf("FAIL %s: %s\n", what, errname(errno));         \
			return 1;                                              \
		}                                                              \
	} while (0)

static int ticking(int ticks);

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--in-new-root") == 0)
		return ticking(atoi(argv[2]));
	if (argc < 3)
		return 2;
	snprintf(base, sizeof base, "%s", argv[1]);
	mkdir(p("new"), 0755);
	MUST("mount tmpfs", mount("none", p("new"), "tmpfs", 0, "mode=0755"));
	const char *dirs[] = {"new/old",  "new/etc",       "new/proc", "new/data",
			      "new/prog", "new/data/jail", "new/alias"};
	for (unsigned i = 0; i < sizeof dirs / sizeof *dirs; i++)
		MUST(dirs[i], mkdir(p(dirs[i]), 0755));
	MUST("write", write_file(p("new/data/file"), "payload"));
	MUST("write jail", write_file(p("new/data/jail/inner"), "inside"));
	MUST("bind /etc", mount("/etc", p("new/etc"), NULL, MS_BIND, NULL));
	MUST("remount ro", mount(NULL, p("new/etc"), NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL));
	char self[1024];
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
	if (len <= 0)
		return 1;
	self[len] = 0;
	char prog_dir[1024], prog_name[256];
	snprintf(prog_dir, sizeof prog_dir, "%s", self);
	snprintf(prog_name, sizeof prog_name, "/prog/%s", basename(self));
	MUST("bind prog", mount(dirname(prog_dir), p("new/prog"), NULL, MS_BIND, NULL));
	MUST("mount proc", mount("proc", p("new/proc"), "proc", 0, NULL));
	MUST("bind jail", mount(p("new/data/jail"), p("new/alias"), NULL, MS_BIND, NULL));
	MUST("chdir new", chdir(p("new")));
	MUST("pivot_root", syscall(SYS_pivot_root, ".", "old"));
	MUST("chdir /", chdir("/"));
	MUST("umount old", umount2("/old", MNT_DETACH));
	MUST("rmdir old", rmdir("/old"));
	MUST("chdir data", chdir("/data"));
	char *args[] = {prog_name, "--in-new-root", argv[2], NULL};
	execv(prog_name, args);
	printf("FAIL exec %s: %s\n", prog_name, errname(errno));
	return 1;
}

static int ticking(int ticks)
{

	int go[2], ready[2];
	if (pipe(go) || pipe(ready))
		return 1;
	fflush(stdout);
	pid_t child = fork();
	if (child == 0) {
		close(go[1]);
		close(ready[0]);
		if (chroot("/alias") || chdir("/"))
			_exit(1);
		char c = 'r';
		if (write(ready[1], &c, 1) != 1)
			_exit(1);
		/* Until the parent is done. */
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(go[0]);
	close(ready[1]);
	char c;
	if (read(ready[0], &c, 1) != 1) {
		printf("FAIL child not ready\n");
		return 1;
	}
	char first[8192] = "";
	for (int i = 0; i < ticks; i++) {
		char mine[2048], theirs[1024], path[64], cwd[256] = "", root[256] = "";
		char data[64], etc[64], inner[64], old[16];
		tree("/proc/self/mountinfo", mine, sizeof mine);
		snprintf(path, sizeof path, "/proc/%d/mountinfo", child);
		tree(path, theirs, sizeof theirs);
		if (!getcwd(cwd, sizeof cwd))
			snprintf(cwd, sizeof cwd, "%s", errname(errno));
		snprintf(path, sizeof path, "/proc/%d/root", child);
		ssize_t n = readlink(path, root, sizeof root - 1);
		root[n > 0 ? n : 0] = 0;
		read_text("file", data, sizeof data);
		read_text("/alias/inner", inner, sizeof inner);
		int w = open("/etc/cryo-ckpt-pivot", O_CREAT | O_WRONLY, 0644);
		snprintf(etc, sizeof etc, "%s", w < 0 ? errname(errno) : "writable");
		if (w >= 0)
			close(w);
		struct stat st;
		snprintf(old, sizeof old, "%s", stat("/old", &st) ? errname(errno) : "there");
		char now[8192];
		snprintf(now, sizeof now,
			 "mounts=[%s] child=[%s] cwd=%s child-root=%s data=%s inner=%s etc=%s old=%s",
			 mine, theirs, cwd, root, data, inner, etc, old);
		if (i == 0)
			snprintf(first, sizeof first, "%s", now);
		else if (strcmp(first, now))
			printf("FAIL changed: %s\n", now);
		printf("tick %d %s\n", i, now);
		fflush(stdout);
		if (i + 1 < ticks)
			sleep(1);
	}
	close(go[1]);
	int st;
	waitpid(child, &st, 0);
	printf("done %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return 0;
}
