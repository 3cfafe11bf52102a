/* Mappings of files with no name across a checkpoint: a memfd whose only
 * holder is a MAP_SHARED mapping a forked child shares; a memfd both open
 * and mapped (write(2) and the mapping see one file, its inode number
 * stays), mapped again with a page past the file's end; an O_TMPFILE file in /tmp
 * mapped shared; a /dev/shm file mapped shared and a /var/tmp file mapped
 * private, both unlinked while mapped (the private one with a page never
 * touched, read from the file only after the checkpoint, and a third page
 * past the file's end). Each tick prints a line that depends on the tick
 * alone; at the end every mapping's bytes, its /proc/self/maps name (the
 * same as before the ticks), the sharing, and the SIGBUS a touch past the
 * end of a file still is are printed.
 * Usage: ckpt_unnamed_map TICKS */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <setjmp.h>
#include <signal.h>
#include <time.h>

#define PAGE 4096

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The name /proc/self/maps shows for the mapping starting at `at`. */
static void maps_name(void *at, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[4096];
	CHECK(f != NULL);
	out[0] = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long start = strtoul(line, NULL, 16);
		if (start != (unsigned long)at)
			continue;
		char *p = line;
		/* Five fields, then the name after the padding. */
		for (int i = 0; i < 5 && p; i++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (p) {
			p += strspn(p, " ");
			p[strcspn(p, "\n")] = 0;
			snprintf(out, len, "%s", p);
		}
		break;
	}
	fclose(f);
}

static sigjmp_buf jump;
static volatile sig_atomic_t got_signo, got_code;

static void on_bus(int signo, siginfo_t *si, void *uc)
{
	(void)uc;
	got_signo = signo;
	got_code = si->si_code;
	siglongjmp(jump, 1);
}

/* Reads the byte at `p`: what a SIGBUS handler saw, or the byte. */
static void probe(const char *what, volatile char *p)
{
	if (sigsetjmp(jump, 1) == 0) {
		char c = *p;
		printf("%s: read %d\n", what, c);
		return;
	}
	printf("%s: %s code %s\n", what, got_signo == SIGBUS ? "SIGBUS" : "signal",
	       got_code == BUS_ADRERR ? "BUS_ADRERR" : "other");
}

static int ends_with(const char *s, const char *tail)
{
	size_t a = strlen(s), b = strlen(tail);
	return a >= b && strcmp(s + a - b, tail) == 0;
}

static char *map(int fd, size_t len, int flags)
{
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);
	CHECK(m != MAP_FAILED);
	return m;
}

int main(int argc, char **argv)
{
	int ticks = argc > 1 ? atoi(argv[1]) : 10;
	setvbuf(stdout, NULL, _IOLBF, 0);
	char names[5][512];

	/* A memfd only its mapping holds, shared with a child. */
	int only = (int)syscall(SYS_memfd_create, "only-map", 0);
	CHECK(only >= 0);
	CHECK(ftruncate(only, 2 * PAGE) == 0);
	char *a = map(only, 2 * PAGE, MAP_SHARED);
	CHECK(close(only) == 0);
	strcpy(a, "only: before");
	strcpy(a + PAGE, "only: page two");
	maps_name(a, names[0], sizeof names[0]);
	int go[2], back[2];
	CHECK(pipe(go) == 0 && pipe(back) == 0);
	pid_t kid = fork();
	CHECK(kid >= 0);
	if (kid == 0) {
		char c;
		CHECK(read(go[0], &c, 1) == 1);
		printf("child sees: %s | %s\n", a, a + PAGE);
		strcpy(a + PAGE, "only: the child wrote");
		CHECK(write(back[1], "k", 1) == 1);
		_exit(0);
	}

	/* A memfd open and mapped. */
	int both = (int)syscall(SYS_memfd_create, "open-and-mapped", MFD_CLOEXEC);
	CHECK(both >= 0);
	CHECK(ftruncate(both, PAGE) == 0);
	char *b = map(both, PAGE, MAP_SHARED);
	/* A second mapping of it, its second page past the end of the file. */
	char *b2 = map(both, 2 * PAGE, MAP_SHARED);
	strcpy(b, "both: before");
	struct stat before, after;
	CHECK(fstat(both, &before) == 0);
	maps_name(b, names[1], sizeof names[1]);

	/* O_TMPFILE, mapped shared, its descriptor closed. */
	int tmp = open("/tmp", O_TMPFILE | O_RDWR, 0600);
	CHECK(tmp >= 0);
	CHECK(write(tmp, "tmpfile: written", 16) == 16);
	CHECK(ftruncate(tmp, PAGE) == 0);
	char *c = map(tmp, PAGE, MAP_SHARED);
	CHECK(close(tmp) == 0);
	maps_name(c, names[2], sizeof names[2]);

	/* /dev/shm, mapped shared, then unlinked and closed. */
	char shm_path[64] = "/dev/shm/cryo-unnamed-map-XXXXXX";
	int shm = mkstemp(shm_path);
	CHECK(shm >= 0);
	CHECK(ftruncate(shm, PAGE) == 0);
	char *d = map(shm, PAGE, MAP_SHARED);
	strcpy(d, "shm: mapped, then unlinked");
	CHECK(unlink(shm_path) == 0);
	CHECK(close(shm) == 0);
	maps_name(d, names[3], sizeof names[3]);

	/* /var/tmp, mapped private: page one written (a private copy), page
	 * two never touched before the checkpoint. */
	char var_path[64] = "/var/tmp/cryo-unnamed-map-XXXXXX";
	int var = mkstemp(var_path);
	CHECK(var >= 0);
	char page[PAGE] = "var: the file's page one";
	CHECK(write(var, page, PAGE) == PAGE);
	snprintf(page, sizeof page, "var: the file's page two");
	CHECK(write(var, page, PAGE) == PAGE);
	/* Its third page is past the end of the file. */
	char *e = map(var, 3 * PAGE, MAP_PRIVATE);
	strcpy(e, "var: private copy");
	CHECK(unlink(var_path) == 0);
	CHECK(close(var) == 0);
	maps_name(e, names[4], sizeof names[4]);

	printf("names: %s | %s\n", names[0], names[1]);
	printf("tmpfile name in /tmp, deleted: %d\n",
	       strncmp(names[2], "/tmp/", 5) == 0 && ends_with(names[2], " (deleted)"));
	char want[128];
	snprintf(want, sizeof want, "%s (deleted)", shm_path);
	printf("shm name is its path, deleted: %d\n", strcmp(names[3], want) == 0);
	snprintf(want, sizeof want, "%s (deleted)", var_path);
	printf("var name is its path, deleted: %d\n", strcmp(names[4], want) == 0);

	for (int i = 1; i <= ticks; i++) {
		printf("tick %d\n", i);
		sleep_ms(100);
	}

	char now[512];
	void *maps[5] = { a, b, c, d, e };
	for (int i = 0; i < 5; i++) {
		maps_name(maps[i], now, sizeof now);
		printf("mapping %d keeps its name: %d\n", i, strcmp(now, names[i]) == 0);
	}

	strcpy(a, "only: the parent wrote");
	CHECK(write(go[1], "g", 1) == 1);
	char k;
	CHECK(read(back[0], &k, 1) == 1);
	printf("parent sees: %s | %s\n", a, a + PAGE);
	int st;
	CHECK(waitpid(kid, &st, 0) == kid);
	printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);

	printf("both maps: %s\n", b);
	CHECK(pwrite(both, "both: fd wrote", 14, 0) == 14);
	printf("the map sees the fd: %.14s\n", b);
	strcpy(b + 100, "both: the map wrote");
	char buf[32] = { 0 };
	CHECK(pread(both, buf, 19, 100) == 19);
	printf("the fd sees the map: %s\n", buf);
	CHECK(fstat(both, &after) == 0);
	printf("same inode: %d size %ld\n", before.st_ino == after.st_ino && before.st_dev == after.st_dev,
	       (long)after.st_size);

	printf("tmpfile maps: %s\n", c);
	printf("shm maps: %s\n", d);
	strcpy(d, "shm: written after");
	printf("shm maps now: %s\n", d);
	printf("var maps: %s | %s\n", e, e + PAGE);
	struct sigaction sa = { 0 };
	sa.sa_sigaction = on_bus;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	CHECK(sigaction(SIGBUS, &sa, NULL) == 0);
	probe("both past the end", b2 + PAGE);
	probe("var past the end", e + 2 * PAGE);
	printf("done\n");
	return 0;
}
