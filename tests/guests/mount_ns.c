/* Mount namespaces: a child forked first stays in the first namespace,
 * the parent unshare(CLONE_NEWNS)es into a copy (its cwd moving with it);
 * each mounts a tmpfs at DIR/m and sees only its own. A child cloned with
 * CLONE_NEWNS gets a copy of the parent's (with the parent's tmpfs),
 * unmounts it there and the parent keeps it. Without CAP_SYS_ADMIN both
 * calls are EPERM; CLONE_NEWNS with CLONE_FS is EINVAL.
 * argv[1]: a fresh directory. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

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

/* How many lines of a mounts or mountinfo file name DIR/m. */
static int count(const char *file)
{
	FILE *f = fopen(file, "r");
	if (!f)
		return -1;
	char line[4096], want[1100];
	snprintf(want, sizeof want, " %s ", p("m"));
	int n = 0;
	while (fgets(line, sizeof line, f))
		n += strstr(line, want) != NULL;
	fclose(f);
	return n;
}

static void counts(const char *who, pid_t pid)
{
	char info[64], mounts[64];
	snprintf(info, sizeof info, "/proc/%d/mountinfo", pid);
	snprintf(mounts, sizeof mounts, "/proc/%d/mounts", pid);
	printf("%s: mountinfo %d mounts %d\n", who, count(info), count(mounts));
}

static void wait_byte(int fd)
{
	char c;
	while (read(fd, &c, 1) < 0 && errno == EINTR)
		;
}

static void send_byte(int fd)
{
	char c = 'x';
	if (write(fd, &c, 1) != 1)
		_exit(9);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	snprintf(base, sizeof base, "%s", argv[1]);
	mkdir(p("m"), 0755);
	int to_child[2], to_parent[2];
	if (pipe(to_child) || pipe(to_parent))
		return 1;
	fflush(stdout);
	pid_t first = fork();
	if (first == 0) {
		/* Stays in the first namespace. */
		wait_byte(to_child[0]);
		int r = mount("none", p("m"), "tmpfs", 0, "mode=0755");
		printf("first mount: %s\n", errname(r ? errno : 0));
		write_file(p("m/who"), "first");
		fflush(stdout);
		send_byte(to_parent[1]);
		wait_byte(to_child[0]);
		char who[32];
		read_file_text(p("m/who"), who, sizeof who);
		printf("first sees: %s\n", who);
		counts("first", getpid());
		fflush(stdout);
		send_byte(to_parent[1]);
		wait_byte(to_child[0]);
		_exit(0);
	}
	/* The parent's cwd moves into the copy with it. */
	if (chdir(base))
		return 1;
	printf("unshare: %s\n", errname(unshare(CLONE_NEWNS) ? errno : 0));
	send_byte(to_child[1]);
	wait_byte(to_parent[0]);
	int r = mount("none", "m", "tmpfs", 0, "mode=0755");
	printf("parent mount: %s\n", errname(r ? errno : 0));
	write_file("m/who", "parent");
	char who[32];
	read_file_text(p("m/who"), who, sizeof who);
	printf("parent sees: %s\n", who);
	counts("parent", getpid());
	counts("parent reads first's", first);
	fflush(stdout);
	send_byte(to_child[1]);
	wait_byte(to_parent[0]);

	/* A child cloned into a copy of the parent's namespace. */
	pid_t cloned = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
	if (cloned == 0) {
		char w[32];
		read_file_text(p("m/who"), w, sizeof w);
		printf("cloned sees: %s\n", w);
		printf("cloned umount: %s\n", errname(umount2(p("m"), 0) ? errno : 0));
		read_file_text(p("m/who"), w, sizeof w);
		printf("cloned then sees: %s\n", w);
		counts("cloned", getpid());
		fflush(stdout);
		_exit(0);
	}
	int st;
	if (cloned < 0)
		printf("clone NEWNS: %s\n", errname(errno));
	else
		waitpid(cloned, &st, 0);
	read_file_text(p("m/who"), who, sizeof who);
	printf("parent still sees: %s\n", who);
	printf("clone NEWNS|FS: %s\n",
	       errname(syscall(SYS_clone, CLONE_NEWNS | CLONE_FS | SIGCHLD, 0, 0, 0, 0) < 0 ? errno
											 : 0));
	fflush(stdout);

	/* Without CAP_SYS_ADMIN. */
	pid_t user = fork();
	if (user == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(1);
		printf("user unshare: %s\n", errname(unshare(CLONE_NEWNS) ? errno : 0));
		long c = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
		if (c == 0)
			_exit(0);
		printf("user clone: %s\n", errname(c < 0 ? errno : 0));
		fflush(stdout);
		_exit(0);
	}
	waitpid(user, &st, 0);
	send_byte(to_child[1]);
	waitpid(first, &st, 0);
	printf("done\n");
	return 0;
}
