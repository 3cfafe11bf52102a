/* A container's init to checkpoint and restore as a container:
 * ckpt_container [MiB=256]
 *
 * It sets up, once:
 *   - MiB mebibytes of known memory (every page a pattern of its index);
 *   - a pipe holding 16 unread bytes;
 *   - /tmp/ckpt-data, 8 KiB it wrote, kept open at offset 4096;
 *   - a shell (/bin/sh, the root's) whose children are two sleeps;
 *   - a SIGUSR1 handler that a periodic POSIX timer (CLOCK_MONOTONIC,
 *     every 20 ms) fires, and an ITIMER_REAL one hour away;
 * prints
 *   ready pid=P mib=N mem=HEX file=HEX sh=PID sleep1=PID sleep2=PID
 * and then every 100 ms
 *   tick=N mem=HEX pipe=ok off=4096 file=HEX sh=alive sleep=alive
 *        usr1=COUNT alarm_s=SECONDS mono_ms=MS
 * re-checking everything each time: the whole memory's checksum, the
 * pipe's 16 bytes (read and written back), the open file's next bytes at
 * its offset, /tmp/ckpt-data's checksum, the shell and its sleeps still
 * there with their pids, the handler still counting, the alarm still
 * pending, and the monotonic clock never going back (it CHECK-fails, exit
 * status 2, otherwise). */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

static volatile sig_atomic_t usr1;
static void on_usr1(int s)
{
	(void)s;
	usr1++;
}

static const char PIPE_DATA[16] = "pipe-data-0123\n";

static long long mono_ms(void)
{
	struct timespec ts;
	CHECK(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned long long mem_sum(const unsigned char *buf, size_t size)
{
	const uint64_t *w = (const uint64_t *)buf;
	unsigned long long h = FNV_INIT;
	for (size_t i = 0; i < size / 8; i++)
		h = (h ^ w[i]) * 1099511628211ULL;
	return h;
}

static unsigned long long file_sum(const char *path)
{
	unsigned char b[8192];
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	ssize_t n = read(fd, b, sizeof b);
	CHECK(n == (ssize_t)sizeof b);
	close(fd);
	return fnv1a(FNV_INIT, b, sizeof b);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 256;
	CHECK(mib > 0 && mib <= 4096);
	setvbuf(stdout, NULL, _IOLBF, 0);

	const size_t pg = 4096, size = (size_t)mib << 20, pages = size / pg;
	unsigned char *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	for (size_t p = 0; p < pages; p++)
		fill_pattern(buf + p * pg, pg, (unsigned)p + 1);
	const unsigned long long mem = mem_sum(buf, size);

	int pfd[2];
	CHECK(pipe(pfd) == 0);
	CHECK(write(pfd[1], PIPE_DATA, sizeof PIPE_DATA) == (ssize_t)sizeof PIPE_DATA);

	unsigned char data[8192];
	fill_pattern(data, sizeof data, 77);
	int wfd = open("/tmp/ckpt-data", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(wfd >= 0);
	CHECK(write(wfd, data, sizeof data) == (ssize_t)sizeof data);
	CHECK(close(wfd) == 0);
	const unsigned long long file = file_sum("/tmp/ckpt-data");
	int ofd = open("/tmp/ckpt-data", O_RDONLY);
	CHECK(ofd >= 0);
	CHECK(lseek(ofd, 4096, SEEK_SET) == 4096);

	unlink("/tmp/ckpt-sleep.pid");
	pid_t sh = fork();
	CHECK(sh >= 0);
	if (sh == 0) {
		execl("/bin/sh", "sh", "-c",
		      "sleep 100000 & a=$!; sleep 100000 & echo $a $! > /tmp/ckpt-sleep.pid.tmp && mv /tmp/ckpt-sleep.pid.tmp /tmp/ckpt-sleep.pid; wait",
		      (char *)NULL);
		_exit(127);
	}
	int sleep1 = 0, sleep2 = 0;
	for (int i = 0; i < 1000 && sleep2 <= 0; i++) {
		FILE *f = fopen("/tmp/ckpt-sleep.pid", "r");
		if (f) {
			if (fscanf(f, "%d %d", &sleep1, &sleep2) != 2)
				sleep2 = 0;
			fclose(f);
		}
		if (sleep2 <= 0)
			sleep_ms(10);
	}
	CHECK(sleep1 > 0 && sleep2 > 0 && sleep1 != sleep2);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	struct sigevent sev;
	memset(&sev, 0, sizeof sev);
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGUSR1;
	timer_t t;
	CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t) == 0);
	struct itimerspec its = { { 0, 20 * 1000000L }, { 0, 20 * 1000000L } };
	CHECK(timer_settime(t, 0, &its, NULL) == 0);
	struct itimerval alarm_in = { { 0, 0 }, { 3600, 0 } };
	CHECK(setitimer(ITIMER_REAL, &alarm_in, NULL) == 0);

	printf("ready pid=%d mib=%ld mem=%016llx file=%016llx sh=%d sleep1=%d sleep2=%d\n", (int)getpid(), mib,
	       mem, file, (int)sh, sleep1, sleep2);

	long long last_mono = mono_ms();
	long last_usr1 = 0, last_alarm = 3600;
	unsigned char got[64];
	for (long n = 0;; n++) {
		CHECK(mem_sum(buf, size) == mem);

		int avail = -1;
		CHECK(ioctl(pfd[0], FIONREAD, &avail) == 0);
		CHECK(avail == (int)sizeof PIPE_DATA);
		char pbuf[sizeof PIPE_DATA];
		CHECK(read(pfd[0], pbuf, sizeof pbuf) == (ssize_t)sizeof pbuf);
		CHECK(memcmp(pbuf, PIPE_DATA, sizeof pbuf) == 0);
		CHECK(write(pfd[1], pbuf, sizeof pbuf) == (ssize_t)sizeof pbuf);

		off_t off = lseek(ofd, 0, SEEK_CUR);
		CHECK(off == 4096);
		CHECK(read(ofd, got, sizeof got) == (ssize_t)sizeof got);
		CHECK(memcmp(got, data + 4096, sizeof got) == 0);
		CHECK(lseek(ofd, -(off_t)sizeof got, SEEK_CUR) == 4096);

		CHECK(file_sum("/tmp/ckpt-data") == file);
		int status;
		CHECK(waitpid(sh, &status, WNOHANG) == 0);
		CHECK(kill(sh, 0) == 0);
		CHECK(kill(sleep1, 0) == 0);
		CHECK(kill(sleep2, 0) == 0);

		struct itimerval left;
		CHECK(getitimer(ITIMER_REAL, &left) == 0);
		long alarm_s = left.it_value.tv_sec;
		CHECK(alarm_s > 0 && alarm_s <= last_alarm);
		last_alarm = alarm_s;

		long long now = mono_ms();
		CHECK(now >= last_mono);
		last_mono = now;
		long u = usr1;
		CHECK(u >= last_usr1);
		last_usr1 = u;

		printf("tick=%ld mem=%016llx pipe=ok off=%ld file=%016llx sh=alive sleep=alive usr1=%ld alarm_s=%ld mono_ms=%lld\n",
		       n, mem, (long)off, file, u, alarm_s, now);
		sleep_ms(100);
	}
}
