/* Attacks on the Sentry from inside the sandbox. Each runs in a child of
 * its own, so an attack that gets its attacker killed does not stop the
 * rest, and prints one line "<name>: <outcome>" where the outcome is an
 * errno name, "killed <signal>", or what the attack saw. argv[1] is a
 * host path prefix the attacks try to create files at (the test checks
 * none appears on the host); argv[2] how many mappings to make at most.
 * The guest ends with "done" and status 0:
 * under cryo that means the Sentry survived all of it. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char *prefix;
static long mappings;

/* A path below 4 GiB, where the i386 ABI's 32-bit registers reach. */
static char *low_path(const char *suffix)
{
	char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	CHECK(p != MAP_FAILED);
	snprintf(p, 4096, "%s%s", prefix, suffix);
	return p;
}

static long outcome(long ret)
{
	return ret < 0 ? -errno : ret;
}

static void say(const char *name, long ret)
{
	if (ret < 0)
		printf("%s: %s\n", name, errname((int)-ret));
	else
		printf("%s: returned %ld\n", name, ret);
}

static void int80_creat(void)
{
	char *path = low_path("-int80");
	long ret;
	/* creat is 8 in the i386 table. */
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(8L), "b"(path), "c"(0644L) : "memory");
	say("int80 creat", ret);
}

static void sysenter(void)
{
	char *path = low_path("-sysenter");
	long ret;
	/* In 64-bit mode sysenter is invalid on AMD and Intel alike. */
	__asm__ volatile("sysenter" : "=a"(ret) : "a"(8L), "b"(path), "c"(0644L) : "memory", "r11");
	say("sysenter creat", ret);
}

static void x32(void)
{
	char *path = low_path("-x32");
	/* creat (85) with the x32 bit. */
	long ret = outcome(syscall(0x40000000L | 85, path, 0644));
	say("x32 creat", ret);
	say("x32 getpid", outcome(syscall(0x40000000L | SYS_getpid)));
}

static void out_of_range(void)
{
	long nrs[] = {1000, 0x3fffffffL, 0x7fffffffL, -1L, 0x80000000L | 2};
	for (unsigned i = 0; i < sizeof nrs / sizeof *nrs; i++) {
		char name[64];
		snprintf(name, sizeof name, "syscall %#lx", nrs[i]);
		say(name, outcome(syscall(nrs[i], 0, 0, 0, 0, 0, 0)));
	}
}

static void proc_self_mem(void)
{
	static volatile int target = 1;
	int fd = open("/proc/self/mem", O_RDWR);
	if (fd < 0) {
		say("/proc/self/mem write", -errno);
		return;
	}
	int two = 2;
	/* Its own memory: allowed by Linux; it must change only that. */
	long n = outcome(pwrite(fd, &two, sizeof two, (off_t)(unsigned long)&target));
	if (n == sizeof two)
		printf("/proc/self/mem write: own memory %s\n", target == 2 ? "changed" : "unchanged");
	else
		say("/proc/self/mem write", n);
	/* An address no mapping covers: an error, nothing else. */
	say("/proc/self/mem write unmapped",
	    outcome(pwrite(fd, &two, sizeof two, (off_t)0x1000)));
	close(fd);
}

static void read_host_thing(const char *name, const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		say(name, -errno);
		return;
	}
	char buf[4096];
	long total = 0, n;
	int kernel_symbol = 0;
	while ((n = read(fd, buf, sizeof buf - 1)) > 0) {
		buf[n] = 0;
		/* A host kernel symbol with its real (nonzero) address. */
		if (strstr(buf, " T startup_64") && !strstr(buf, "0000000000000000 T startup_64"))
			kernel_symbol = 1;
		total += n;
	}
	close(fd);
	printf("%s: read %s%s\n", name, total ? "some bytes" : "nothing",
	       kernel_symbol ? " with kernel addresses" : "");
}

static void many_mappings(void)
{
	long made = 0, err = 0;
	for (; made < mappings; made++) {
		/* Alternating protections so that no two merge. */
		int prot = made % 2 ? PROT_READ : PROT_READ | PROT_WRITE;
		void *p = mmap(NULL, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			err = errno;
			break;
		}
	}
	if (err)
		printf("mappings: %s after some\n", errname((int)err));
	else
		printf("mappings: all made\n");
}

static void *idle(void *arg)
{
	pause();
	return arg;
}

static void thread_storm(void)
{
	long made = 0;
	int err = 0;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 << 10);
	for (; made < 5000; made++) {
		pthread_t t;
		err = pthread_create(&t, &attr, idle, NULL);
		if (err)
			break;
	}
	/* Linux gives EAGAIN at a task limit; so must the sandbox. */
	if (err)
		printf("thread storm: %s after some\n", errname(err));
	else
		printf("thread storm: all made\n");
	fflush(stdout);
	_exit(0);
}

static volatile sig_atomic_t got;
static void on_signal(int sig)
{
	(void)sig;
	got++;
}

static void signal_storm(void)
{
	signal(SIGUSR1, on_signal);
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		for (;;)
			pause();
	}
	long refused = 0;
	union sigval v = {0};
	for (int i = 0; i < 20000; i++) {
		kill(getpid(), SIGUSR1);
		kill(child, SIGUSR1);
		/* Real-time signals queue: until the queue limit refuses. */
		if (sigqueue(child, SIGRTMIN, v) < 0)
			refused++;
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	printf("signal storm: handled %s, queue %s\n", got > 0 ? "some" : "none",
	       refused ? "refused some" : "took all");
}

static void run(const char *name, void (*attack)(void))
{
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		attack();
		fflush(stdout);
		_exit(0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status))
		printf("%s: killed %s\n", name, strsignal(WTERMSIG(status)));
	else if (WEXITSTATUS(status) != 0)
		printf("%s: exit %d\n", name, WEXITSTATUS(status));
}

static void kallsyms(void) { read_host_thing("/proc/kallsyms", "/proc/kallsyms"); }
static void environ1(void) { read_host_thing("/proc/1/environ", "/proc/1/environ"); }
static void devmem(void) { read_host_thing("/dev/mem", "/dev/mem"); }
static void firmware(void) { read_host_thing("/sys/firmware", "/sys/firmware/dmi/tables/DMI"); }

int main(int argc, char **argv)
{
	CHECK(argc == 3 && strlen(argv[1]) < 2000);
	prefix = argv[1];
	mappings = atol(argv[2]);
	run("int80 creat", int80_creat);
	run("sysenter creat", sysenter);
	run("x32", x32);
	run("out of range", out_of_range);
	run("/proc/self/mem", proc_self_mem);
	run("/proc/kallsyms", kallsyms);
	run("/proc/1/environ", environ1);
	run("/dev/mem", devmem);
	run("/sys/firmware", firmware);
	run("mappings", many_mappings);
	run("thread storm", thread_storm);
	run("signal storm", signal_storm);
	printf("done\n");
	return 0;
}
