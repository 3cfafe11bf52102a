/* brk via sbrk and the raw syscall: the break grows by what was asked, the
 * new memory is zeroed and writable, shrinking works, and a raw brk(0)
 * returns the current break (the raw syscall never fails: it returns the
 * old break when it cannot move). */
#include "common.h"
#include <sys/syscall.h>

int main(void)
{
	char *start = sbrk(0);
	CHECK(start != (char *)-1);
	char *raw = (char *)syscall(SYS_brk, 0);
	printf("raw_brk0_matches=%d\n", raw == start);

	const long grow = 1 << 20;
	char *old = sbrk(grow);
	CHECK(old != (char *)-1);
	char *now = sbrk(0);
	printf("grew_by=%ld\n", (long)(now - old));
	int zero = 1;
	for (long i = 0; i < grow; i += 512)
		zero &= old[i] == 0;
	memset(old, 0xab, grow);
	printf("zeroed=%d writable=%d\n", zero, (unsigned char)old[grow - 1] == 0xab);

	/* Shrink by half, then grow again: the re-grown half is zero again. */
	CHECK(sbrk(-grow / 2) != (char *)-1);
	printf("shrunk_by_half=%d\n", sbrk(0) == old + grow / 2);
	CHECK(sbrk(grow / 2) != (char *)-1);
	printf("regrown_zero=%d kept_low_half=%d\n", old[grow - 1] == 0, (unsigned char)old[10] == 0xab);

	/* Asking for a break below the start of the heap is refused: the
	 * kernel leaves the break where it was. */
	char *cur = sbrk(0);
	char *r = (char *)syscall(SYS_brk, (char *)16);
	printf("too_low_refused=%d\n", r == cur);

	/* Back to the start. */
	CHECK(brk(start) == 0);
	printf("back_to_start=%d\n", sbrk(0) == start);
	return 0;
}
