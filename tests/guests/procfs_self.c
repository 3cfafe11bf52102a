/* /proc/<pid>/{stat,status,statm,limits}, /proc/<pid>/task/<tid>/stat,
 * /proc/meminfo and /proc/stat agree with what the process's own syscalls
 * say: ids, thread count, state letters (R for the reader, S for a child
 * blocked in pause, T stopped, Z a zombie), credentials after setresuid,
 * limits after setrlimit, memory totals against sysinfo. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

/* The file's text in a fresh buffer (never freed: the guest is short). */
static char *slurp(const char *path)
{
	char *buf = malloc(16384);
	CHECK(buf != NULL);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t n = fread(buf, 1, 16383, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

/* Field `n` (1-based) of a /proc/<pid>/stat line, after the comm. */
static long long stat_field(const char *line, int n)
{
	const char *p = strrchr(line, ')');
	CHECK(p != NULL);
	p += 2; /* field 3 */
	for (int i = 3; i < n; i++) {
		p = strchr(p, ' ');
		CHECK(p != NULL);
		p++;
	}
	return atoll(p);
}

static char stat_state(const char *line)
{
	const char *p = strrchr(line, ')');
	return p ? p[2] : '?';
}

static int count_fields(const char *line)
{
	int n = 1;
	for (const char *p = strrchr(line, ')'); *p; p++)
		n += *p == ' ';
	return n;
}

static char state_of(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	char *s = slurp(path);
	return s ? stat_state(s) : '?';
}

static void *idle_thread(void *arg)
{
	int *fd = arg;
	char c;
	CHECK(read(*fd, &c, 1) == 1);
	return NULL;
}

static long status_value(const char *key)
{
	char *s = slurp("/proc/self/status");
	CHECK(s != NULL);
	char *p = strstr(s, key);
	return p ? atol(p + strlen(key)) : -1;
}

/* The name in a /proc/self/comm read through descriptor fd at offset off
 * (pread) or at its offset (off < 0), up to n bytes. */
static void show_comm(const char *what, int fd, long off, size_t n)
{
	char b[64] = { 0 };
	ssize_t r = off < 0 ? read(fd, b, n) : pread(fd, b, n, off);
	b[strcspn(b, "\n")] = 0;
	printf("%s: %zd \"%s\"\n", what, r, b);
}

/* A /proc file's text is made when it is read (Linux's seq_file), not when
 * it is opened: at the first read, at a read from 0, and not in between. */
static void text_at_read(void)
{
	prctl(PR_SET_NAME, "first");
	int fd = open("/proc/self/comm", O_RDONLY);
	prctl(PR_SET_NAME, "second");
	show_comm("first read after a rename", fd, -1, 3);
	prctl(PR_SET_NAME, "third");
	show_comm("a read going on", fd, -1, 60);
	show_comm("pread at 0", fd, 0, 60);
	prctl(PR_SET_NAME, "fourth");
	show_comm("pread at 2", fd, 2, 60);
	lseek(fd, 0, SEEK_SET);
	show_comm("read after lseek to 0", fd, -1, 60);
	close(fd);
}

/* status's signal lines: the thread's own pending (SigPnd), the process's
 * (ShdPnd) and the blocked mask (SigBlk). */
static void signal_lines(void)
{
	sigset_t two, old;
	sigemptyset(&two);
	sigaddset(&two, SIGUSR1);
	sigaddset(&two, SIGUSR2);
	CHECK(sigprocmask(SIG_BLOCK, &two, &old) == 0);
	CHECK(syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), SIGUSR1) == 0);
	CHECK(kill(getpid(), SIGUSR2) == 0);
	char *s = slurp("/proc/self/status");
	CHECK(s != NULL);
	const char *keys[] = { "\nSigPnd:", "\nShdPnd:", "\nSigBlk:" };
	const unsigned long long want[] = { 1ULL << (SIGUSR1 - 1), 1ULL << (SIGUSR2 - 1),
					    (1ULL << (SIGUSR1 - 1)) | (1ULL << (SIGUSR2 - 1)) };
	for (int i = 0; i < 3; i++) {
		char *p = strstr(s, keys[i]);
		const char *seen = "missing";
		if (p)
			seen = strtoull(p + strlen(keys[i]), NULL, 16) == want[i] ? "as set" : "other";
		printf("status %s %s\n", keys[i] + 1, seen);
	}
	free(s);
	struct timespec zero = { 0, 0 };
	CHECK(sigtimedwait(&two, NULL, &zero) > 0 && sigtimedwait(&two, NULL, &zero) > 0);
	CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
}

int main(void)
{
	text_at_read();
	signal_lines();
	char *s = slurp("/proc/self/stat");
	CHECK(s != NULL);
	char comm[64], *c = slurp("/proc/self/comm");
	CHECK(c != NULL);
	snprintf(comm, sizeof comm, "(%.*s)", (int)strcspn(c, "\n"), c);
	printf("stat: fields=%d comm=%d state=%c pid=%d ppid=%d pgrp=%d sid=%d threads=%lld\n",
	       count_fields(s), strstr(s, comm) != NULL, stat_state(s),
	       atoi(s) == getpid(), stat_field(s, 4) == getppid(),
	       stat_field(s, 5) == getpgrp(), stat_field(s, 6) == getsid(0), stat_field(s, 20));

	/* /proc/self/fd/N names the file, and a deleted one as such. */
	int pw = open("/etc/passwd", O_RDONLY);
	CHECK(pw >= 0);
	char link[64], target[256];
	snprintf(link, sizeof link, "/proc/self/fd/%d", pw);
	ssize_t k = readlink(link, target, sizeof target - 1);
	printf("fd link: %.*s\n", (int)(k > 0 ? k : 0), target);
	char tmp[] = "/tmp/cryo-procfs-fd-XXXXXX";
	int tf = mkstemp(tmp);
	CHECK(tf >= 0 && unlink(tmp) == 0);
	snprintf(link, sizeof link, "/proc/self/fd/%d", tf);
	k = readlink(link, target, sizeof target - 1);
	printf("deleted fd link ends with (deleted): %d\n",
	       k > 10 && memcmp(target + k - 10, " (deleted)", 10) == 0);
	close(tf);
	close(pw);

	int p[2];
	CHECK(pipe(p) == 0);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, idle_thread, &p[0]) == 0);
	s = slurp("/proc/self/stat");
	long threads = status_value("Threads:");
	printf("with_thread: threads=%lld status_threads=%ld\n", stat_field(s, 20), threads);
	CHECK(write(p[1], "x", 1) == 1);
	CHECK(pthread_join(th, NULL) == 0);
	char path[96];
	snprintf(path, sizeof path, "/proc/self/task/%d/stat", getpid());
	s = slurp(path);
	printf("task_stat: found=%d ppid=%d\n", s != NULL, s && stat_field(s, 4) == getppid());

	/* statm: sizes in pages, resident within size. */
	s = slurp("/proc/self/statm");
	long size = 0, resident = 0;
	CHECK(s && sscanf(s, "%ld %ld", &size, &resident) == 2);
	printf("statm: size_pos=%d resident_le_size=%d\n", size > 0, resident > 0 && resident <= size);

	/* limits follow setrlimit. */
	struct rlimit rl = { 77, 99 };
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	s = slurp("/proc/self/limits");
	char *line = s ? strstr(s, "Max open files") : NULL;
	long soft = 0, hard = 0;
	CHECK(line && sscanf(line + strlen("Max open files"), "%ld %ld", &soft, &hard) == 2);
	printf("limits: nofile=%ld/%ld\n", soft, hard);
	rl.rlim_cur = rl.rlim_max = 64;
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);

	/* meminfo's total is sysinfo's. */
	struct sysinfo si;
	CHECK(sysinfo(&si) == 0);
	s = slurp("/proc/meminfo");
	long total_kb = 0;
	CHECK(s && sscanf(s, "MemTotal: %ld kB", &total_kb) == 1);
	printf("meminfo: total_is_sysinfo=%d\n",
	       total_kb == (long)((unsigned long long)si.totalram * si.mem_unit / 1024));

	/* /proc/stat: cpu lines, and a boot time uptime seconds ago. */
	s = slurp("/proc/stat");
	CHECK(s != NULL);
	char *bt = strstr(s, "\nbtime ");
	long btime = bt ? atol(bt + 7) : 0;
	long expect = (long)time(NULL) - si.uptime;
	printf("proc_stat: cpu_line=%d btime_ok=%d\n", strncmp(s, "cpu ", 4) == 0,
	       btime - expect <= 2 && expect - btime <= 2);

	/* A child's state through its life: S in pause, T stopped, Z exited. */
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		for (;;)
			pause();
	}
	struct timespec tick = { 0, 50 * 1000 * 1000 };
	char st = '?';
	for (int i = 0; i < 100 && st != 'S'; i++) {
		nanosleep(&tick, NULL);
		st = state_of(child);
	}
	printf("child_paused: state=%c\n", st);
	CHECK(kill(child, SIGSTOP) == 0);
	int ws;
	CHECK(waitpid(child, &ws, WUNTRACED) == child);
	printf("child_stopped: state=%c\n", state_of(child));
	CHECK(kill(child, SIGKILL) == 0);
	siginfo_t info;
	CHECK(waitid(P_PID, (id_t)child, &info, WEXITED | WNOWAIT) == 0);
	printf("child_zombie: state=%c\n", state_of(child));
	CHECK(waitpid(child, &ws, 0) == child);

	/* status shows the credentials setresuid set. */
	CHECK(setresgid(2002, 2003, 2004) == 0);
	CHECK(setresuid(1001, 1002, 1003) == 0);
	s = slurp("/proc/self/status");
	char *uid = s ? strstr(s, "\nUid:") : NULL;
	char *gid = s ? strstr(s, "\nGid:") : NULL;
	int u[4] = { 0 }, g[4] = { 0 };
	CHECK(uid && sscanf(uid, "\nUid: %d %d %d %d", &u[0], &u[1], &u[2], &u[3]) == 4);
	CHECK(gid && sscanf(gid, "\nGid: %d %d %d %d", &g[0], &g[1], &g[2], &g[3]) == 4);
	printf("status: uid=%d,%d,%d,%d gid=%d,%d,%d,%d capeff_zero=%d\n", u[0], u[1], u[2], u[3],
	       g[0], g[1], g[2], g[3], strstr(s, "CapEff:\t0000000000000000") != NULL);
	return 0;
}
