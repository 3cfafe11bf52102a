/* What a checkpoint must carry beyond memory and registers: file locks
 * (an OFD lock, a POSIX lock and a flock lock, each seen from a second
 * open file description), the thread's name, the nice value, and the CPU
 * time used so far (it must not start again from zero). Prints one status
 * line every 200 ms, forever; the test checkpoints and restores it and
 * reads the lines the restored sandbox prints. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>

static long long cpu_ns(void)
{
	struct timespec t;
	CHECK(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t) == 0);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static const char *ofd_view(int fd, off_t start)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = 1 };
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
		return errname(errno);
	if (fl.l_type == F_UNLCK)
		return "free";
	return fl.l_pid == -1 ? (fl.l_type == F_WRLCK ? "ofd-write" : "ofd-read")
			      : (fl.l_type == F_WRLCK ? "posix-write" : "posix-read");
}

int main(void)
{
	char path[] = "/tmp/cryo-ckpt-attrs-XXXXXX";
	int a = mkstemp(path);
	CHECK(a >= 0);
	char buf[64] = { 0 };
	CHECK(write(a, buf, sizeof buf) == sizeof buf);
	int b = open(path, O_RDWR);
	CHECK(b >= 0);
	struct flock ofd = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10 };
	CHECK(fcntl(a, F_OFD_SETLK, &ofd) == 0);
	struct flock posix = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 20, .l_len = 10 };
	CHECK(fcntl(a, F_SETLK, &posix) == 0);
	CHECK(flock(a, LOCK_EX) == 0);
	CHECK(prctl(PR_SET_NAME, "ckpt-attrs") == 0);
	CHECK(setpriority(PRIO_PROCESS, 0, 7) == 0);
	volatile unsigned long sink = 0;
	while (cpu_ns() < 300000000LL)
		for (int i = 0; i < 100000; i++)
			sink += i;
	for (long n = 0;; n++) {
		char name[16];
		CHECK(prctl(PR_GET_NAME, name) == 0);
		int fl = flock(b, LOCK_EX | LOCK_NB) == 0 ? 0 : errno;
		if (fl == 0)
			CHECK(flock(b, LOCK_UN) == 0);
		printf("tick %ld name=%s nice=%d byte0=%s byte25=%s byte40=%s flock=%s cpu>=300ms=%s\n", n,
		       name, getpriority(PRIO_PROCESS, 0), ofd_view(b, 0), ofd_view(b, 25),
		       ofd_view(b, 40), fl ? errname(fl) : "free", cpu_ns() >= 300000000LL ? "yes" : "no");
		fflush(stdout);
		struct timespec d = { 0, 200 * 1000 * 1000 };
		nanosleep(&d, NULL);
	}
}
