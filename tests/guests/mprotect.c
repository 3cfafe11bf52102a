/* mprotect: changing protections on part of a mapping keeps the data,
 * PROT_NONE then back to read/write preserves contents, unaligned addresses
 * are EINVAL, unmapped ranges are ENOMEM. No fault is provoked: that needs
 * signals. /proc/self/maps is not read either (paths and addresses vary). */
#include "common.h"
#include <sys/mman.h>

int main(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char *a = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(a != MAP_FAILED);
	memset(a, 0x11, 4 * pg);

	printf("ro_middle=%d\n", mprotect(a + pg, 2 * pg, PROT_READ));
	printf("read_ro=%#x\n", a[pg + 5]);
	printf("none=%d\n", mprotect(a + pg, pg, PROT_NONE));
	printf("back_rw=%d\n", mprotect(a, 4 * pg, PROT_READ | PROT_WRITE));
	a[pg] = 0x22;
	printf("data_kept=%#x,%#x,%#x\n", a[0], a[pg], a[2 * pg]);

	/* PROT_EXEC on anonymous memory is allowed. */
	printf("exec=%d\n", mprotect(a, pg, PROT_READ | PROT_EXEC));
	printf("read_exec_page=%#x\n", a[1]);

	EXPECT_ERR("unaligned", mprotect(a + 1, pg, PROT_READ));
	EXPECT_ERR("bad_prot", mprotect(a, pg, 0x1000));
	CHECK(munmap(a, 4 * pg) == 0);
	EXPECT_ERR("unmapped", mprotect(a, pg, PROT_READ));
	printf("zero_len=%d\n", mprotect(a, 0, PROT_READ));
	return 0;
}
