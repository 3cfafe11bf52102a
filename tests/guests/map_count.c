/* The map-count limit (vm.max_map_count): one-page mappings with
 * alternating protections, which cannot merge, until mmap refuses; the
 * total (those plus the mappings the process started with) and what
 * refuses at the limit: splitting a mapping in two by munmap or mprotect
 * of its middle, and what still works there (unmapping a whole mapping,
 * mapping next to one that it merges with). */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define PAGE 4096L

/* Mappings the process has: lines of /proc/self/maps but [vsyscall],
 * which is no mapping of the process's own (Linux does not count it). */
static long mappings(void)
{
	int fd = open("/proc/self/maps", O_RDONLY);
	CHECK(fd >= 0);
	static char buf[1 << 16];
	static const char gate[] = "[vsyscall]";
	long lines = 0, n;
	unsigned k = 0;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		for (long i = 0; i < n; i++) {
			char c = buf[i];
			lines += c == '\n';
			k = c == gate[k] ? k + 1 : c == gate[0];
			if (k == sizeof gate - 1) {
				lines--;
				k = 0;
			}
		}
	close(fd);
	return lines;
}

static long max_map_count(void)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	long v = -1;
	CHECK(f);
	CHECK(fscanf(f, "%ld", &v) == 1);
	fclose(f);
	return v;
}

static void say(const char *what, int ok)
{
	printf("%s: %s\n", what, ok ? "OK" : errname(errno));
}

int main(void)
{
	long limit = max_map_count();
	/* Natively the host's (65530 by default, 1048576 on some
	 * distributions: both quick); under cryo the sandbox's. */
	CHECK(limit > 1000 && limit <= 1L << 22);
	long before = mappings();
	/* Room for them all, reserved and given back: a three-page mapping
	 * at its start, then one-page mappings, read-only and read-write in
	 * turn so that none merges with its neighbours. */
	long room = limit + 100;
	char *base = mmap(NULL, (room + 3) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(base != MAP_FAILED);
	CHECK(munmap(base, (room + 3) * PAGE) == 0);
	CHECK(mmap(base, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == base);
	char *small = base + 3 * PAGE;
	long made = 0;
	int err = 0;
	for (; made < room; made++) {
		int prot = made % 2 ? PROT_READ | PROT_WRITE : PROT_READ;
		void *p = mmap(small + made * PAGE, PAGE, prot,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (p == MAP_FAILED) {
			err = errno;
			break;
		}
	}
	printf("mmap refused: %s\n", errname(err));
	long total = before + 1 + made;
	/* Linux refuses once there are more than max_map_count. */
	printf("mappings at the limit: max_map_count %+ld\n", total - limit);
	printf("/proc/self/maps: %s\n", mappings() == total ? "all of them" : "differs");
	say("another mmap", mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED);
	long brk = syscall(SYS_brk, 0);
	printf("brk at the limit: %s\n", syscall(SYS_brk, brk + 64 * PAGE) == brk ? "unchanged" : "moved");
	/* What would make two mappings of one: refused. */
	say("munmap middle", munmap(base + PAGE, PAGE) == 0);
	say("mprotect middle", mprotect(base + PAGE, PAGE, PROT_READ) == 0);
	say("mprotect first page", mprotect(base, PAGE, PROT_READ) == 0);
	/* Moving needs room for three more. */
	say("mremap move", mremap(small, PAGE, 2 * PAGE, MREMAP_MAYMOVE) != MAP_FAILED);
	/* What leaves as many: allowed. */
	say("munmap end", munmap(base + 2 * PAGE, PAGE) == 0);
	say("mprotect whole", mprotect(small + PAGE, PAGE, PROT_READ | PROT_EXEC) == 0);
	/* One mapping fewer makes room for one (as it was: merging with a
	 * neighbour would make room for more). */
	say("munmap one", munmap(small + (made - 1) * PAGE, PAGE) == 0);
	int prot = (made - 1) % 2 ? PROT_READ | PROT_WRITE : PROT_READ;
	say("mmap after", mmap(small + (made - 1) * PAGE, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED);
	say("mmap after that", mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED);
	CHECK(munmap(base, (room + 3) * PAGE) == 0);
	printf("unmapped: %s\n", mappings() == before ? "as before" : "differs");
	char *p = mmap(NULL, 3 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	say("munmap middle after", munmap(p + PAGE, PAGE) == 0);
	say("brk after", syscall(SYS_brk, brk + 64 * PAGE) == brk + 64 * PAGE);
	return 0;
}
