/* Resource limits enforced, compared with Linux: RLIMIT_FSIZE (writes cut
 * at the limit, EFBIG and SIGXFSZ past it, truncate too), RLIMIT_AS and
 * RLIMIT_DATA (mmap and brk get ENOMEM), RLIMIT_CORE stored, prlimit64 on
 * pid 0 and an unknown pid, raising a hard limit without privilege, and
 * RLIMIT_CPU (SIGXCPU at the soft limit, then SIGKILL at the hard one:
 * argv[1] "cpu" runs only that, which ends killed). */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>

static volatile sig_atomic_t xfsz;
static void on_xfsz(int s) { (void)s; xfsz++; }

static void on_xcpu(int s)
{
	(void)s;
	static const char msg[] = "SIGXCPU\n";
	CHECK(write(1, msg, sizeof msg - 1) == sizeof msg - 1);
}

static const char *r(long v)
{
	static char buf[32];
	if (v < 0)
		return errname(errno);
	snprintf(buf, sizeof buf, "%ld", v);
	return buf;
}

static void setlim(int res, rlim_t cur, rlim_t max)
{
	struct rlimit l = { cur, max };
	CHECK(setrlimit(res, &l) == 0);
}

static int cpu_limit(void)
{
	struct sigaction sa = { .sa_handler = on_xcpu };
	CHECK(sigaction(SIGXCPU, &sa, NULL) == 0);
	setlim(RLIMIT_CPU, 1, 2);
	printf("burning CPU under RLIMIT_CPU 1s/2s\n");
	fflush(stdout);
	volatile unsigned long spin = 0;
	for (;;)
		spin++;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "cpu") == 0)
		return cpu_limit();

	/* RLIMIT_FSIZE. */
	struct sigaction sa = { .sa_handler = on_xfsz };
	CHECK(sigaction(SIGXFSZ, &sa, NULL) == 0);
	char path[] = "/tmp/cryo-rlimits-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	setlim(RLIMIT_FSIZE, 100, RLIM_INFINITY);
	char buf[150];
	memset(buf, 'x', sizeof buf);
	printf("write 150 under 100: %s\n", r(write(fd, buf, 150)));
	const char *res = r(write(fd, buf, 10));
	printf("write past the limit: %s, SIGXFSZ %d\n", res, xfsz);
	res = r(write(fd, buf, 0));
	printf("empty write past it: %s, SIGXFSZ %d\n", res, xfsz);
	printf("pwrite 100 at 50: %s\n", r(pwrite(fd, buf, 100, 50)));
	struct iovec iov[2] = { { buf, 30 }, { buf, 30 } };
	printf("pwritev 60 at 70: %s\n", r(pwritev(fd, iov, 2, 70)));
	res = r(ftruncate(fd, 200));
	printf("ftruncate 200: %s, SIGXFSZ %d\n", res, xfsz);
	printf("ftruncate 50: %s\n", r(ftruncate(fd, 50)));
	res = r(truncate(path, 101));
	printf("truncate 101: %s, SIGXFSZ %d\n", res, xfsz);
	int p[2];
	CHECK(pipe(p) == 0);
	printf("pipe write of 150 ignores it: %s\n", r(write(p[1], buf, 150)));
	int ap = open(path, O_WRONLY | O_APPEND);
	CHECK(ap >= 0);
	printf("append 80 at 50: %s\n", r(write(ap, buf, 80)));
	setlim(RLIMIT_FSIZE, RLIM_INFINITY, RLIM_INFINITY);
	CHECK(unlink(path) == 0);

	/* RLIMIT_AS and RLIMIT_DATA. */
	setlim(RLIMIT_AS, 256 << 20, RLIM_INFINITY);
	void *m = mmap(NULL, 512 << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	printf("mmap 512 MiB under AS 256 MiB: %s\n", m == MAP_FAILED ? errname(errno) : "OK");
	m = mmap(NULL, 16 << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	printf("mmap 16 MiB: %s\n", m == MAP_FAILED ? errname(errno) : "OK");
	void *big = mremap(m, 16 << 20, 400 << 20, MREMAP_MAYMOVE);
	printf("mremap to 400 MiB: %s\n", big == MAP_FAILED ? errname(errno) : "OK");
	CHECK(munmap(m, 16 << 20) == 0);
	void *brk0 = sbrk(0);
	printf("sbrk 300 MiB under AS: %s\n", sbrk(300 << 20) == (void *)-1 ? errname(errno) : "OK");
	printf("break unchanged: %s\n", sbrk(0) == brk0 ? "yes" : "no");
	setlim(RLIMIT_AS, RLIM_INFINITY, RLIM_INFINITY);

	setlim(RLIMIT_DATA, 32 << 20, RLIM_INFINITY);
	m = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	printf("private writable 64 MiB under DATA 32 MiB: %s\n", m == MAP_FAILED ? errname(errno) : "OK");
	m = mmap(NULL, 64 << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	printf("read-only 64 MiB: %s\n", m == MAP_FAILED ? errname(errno) : "OK");
	if (m != MAP_FAILED)
		CHECK(munmap(m, 64 << 20) == 0);
	m = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	printf("shared writable 64 MiB: %s\n", m == MAP_FAILED ? errname(errno) : "OK");
	if (m != MAP_FAILED)
		CHECK(munmap(m, 64 << 20) == 0);
	printf("sbrk 64 MiB under DATA: %s\n", sbrk(64 << 20) == (void *)-1 ? errname(errno) : "OK");
	printf("sbrk 1 MiB: %s\n", sbrk(1 << 20) == (void *)-1 ? errname(errno) : "OK");
	setlim(RLIMIT_DATA, RLIM_INFINITY, RLIM_INFINITY);

	/* RLIMIT_CORE is kept; prlimit64 on pid 0 and an unknown pid. */
	setlim(RLIMIT_CORE, 0, RLIM_INFINITY);
	struct rlimit old, now = { 4096, RLIM_INFINITY };
	printf("prlimit self: %s\n", r(syscall(SYS_prlimit64, 0, RLIMIT_CORE, &now, &old)));
	printf("old core %lu\n", (unsigned long)old.rlim_cur);
	CHECK(getrlimit(RLIMIT_CORE, &old) == 0);
	printf("core now %lu\n", (unsigned long)old.rlim_cur);
	printf("prlimit unknown pid: %s\n", r(syscall(SYS_prlimit64, 0x3ffffff0, RLIMIT_CORE, NULL, &old)));
	printf("prlimit own pid: %s\n", r(syscall(SYS_prlimit64, getpid(), RLIMIT_CORE, NULL, &old)));
	printf("soft above hard: %s\n", r(syscall(SYS_prlimit64, 0, RLIMIT_CORE, &(struct rlimit){ 10, 5 }, NULL)));
	printf("bad resource: %s\n", r(syscall(SYS_prlimit64, 0, 99, NULL, &old)));
	/* Without privilege a hard limit only goes down. */
	setlim(RLIMIT_CORE, 0, 1000);
	CHECK(setresuid(1000, 1000, 1000) == 0);
	printf("raise hard unprivileged: %s\n", r(setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 2000 })));
	printf("lower hard unprivileged: %s\n", r(setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 500 })));
	return 0;
}
