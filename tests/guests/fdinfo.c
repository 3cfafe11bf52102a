/* /proc/self/fdinfo/N: pos and flags (octal, O_CLOEXEC from the descriptor)
 * of files, pipes, an eventfd, a signalfd and a pidfd, with the lines each
 * kind adds; mnt_id names a mount of /proc/self/mountinfo; a pidfd's Pid is
 * its process's, -1 once reaped; a closed descriptor has none. Numbers
 * that differ between runs (inode numbers, mount ids, eventfd-id) are not
 * printed. */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static int mount_listed(long id)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return -1;
	long m;
	char rest[4096];
	int found = 0;
	while (fscanf(f, "%ld", &m) == 1) {
		if (m == id)
			found = 1;
		if (!fgets(rest, sizeof rest, f))
			break;
	}
	fclose(f);
	return found;
}

/* Prints fd's fdinfo lines, all but the ones whose values vary; for a
 * pidfd, whether Pid is `pid`. */
static void show(const char *what, int fd, pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	if (!f) {
		printf("%s: %s\n", what, errname(errno));
		return;
	}
	printf("%s:\n", what);
	while (fgets(line, sizeof line, f)) {
		long v;
		if (sscanf(line, "mnt_id: %ld", &v) == 1) {
			printf("  mnt_id listed in mountinfo: %d\n", mount_listed(v));
			continue;
		}
		if (!strncmp(line, "ino:", 4) || !strncmp(line, "eventfd-id:", 11))
			continue;
		if (sscanf(line, "Pid: %ld", &v) == 1) {
			printf("  Pid: %s\n", v == pid ? "the child's" : v == -1 ? "-1" : "other");
			continue;
		}
		if (sscanf(line, "NSpid: %ld", &v) == 1) {
			printf("  NSpid: %s\n", v == pid ? "the child's" : v == -1 ? "-1" : "other");
			continue;
		}
		printf("  %s", line);
	}
	fclose(f);
}

int main(void)
{
	int r = open("/etc/passwd", O_RDONLY);
	CHECK(r >= 0 && lseek(r, 5, SEEK_SET) == 5);
	show("read-only file at 5", r, 0);
	int d = dup(r);
	CHECK(lseek(d, 9, SEEK_SET) == 9);
	show("its dup after a seek to 9", r, 0);
	CHECK(fcntl(r, F_SETFD, FD_CLOEXEC) == 0);
	show("the first, close-on-exec now", r, 0);

	unlink("/tmp/fdinfo-guest");
	int w = open("/tmp/fdinfo-guest", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	CHECK(w >= 0 && write(w, "abc", 3) == 3);
	show("append-only file after 3 bytes", w, 0);
	int rw = open("/tmp/fdinfo-guest", O_RDWR | O_NONBLOCK | O_NOATIME);
	show("read-write, non-blocking", rw, 0);

	int p[2];
	CHECK(pipe2(p, O_NONBLOCK) == 0);
	show("pipe read end", p[0], 0);
	show("pipe write end", p[1], 0);

	int e = eventfd(3, EFD_SEMAPHORE | EFD_CLOEXEC);
	CHECK(e >= 0);
	show("eventfd 3, semaphore", e, 0);
	uint64_t add = 0x100;
	CHECK(write(e, &add, sizeof add) == sizeof add);
	show("eventfd after adding 0x100", e, 0);

	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGRTMIN + 2);
	int sf = signalfd(-1, &s, SFD_NONBLOCK);
	CHECK(sf >= 0);
	show("signalfd", sf, 0);

	pid_t c = fork();
	if (c == 0) {
		pause();
		_exit(0);
	}
	int pf = (int)syscall(SYS_pidfd_open, c, 0);
	CHECK(pf >= 0);
	show("pidfd of a live child", pf, c);
	kill(c, SIGKILL);
	siginfo_t si;
	CHECK(waitid(P_PID, c, &si, WEXITED | WNOWAIT) == 0);
	show("pidfd of a zombie", pf, c);
	CHECK(waitpid(c, NULL, 0) == c);
	show("pidfd of a reaped child", pf, c);

	close(d);
	show("a closed descriptor", d, 0);
	unlink("/tmp/fdinfo-guest");
	return 0;
}
