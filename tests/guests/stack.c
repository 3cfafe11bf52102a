/* Stack growth: recursion that touches ~1 MiB of stack below the initial
 * stack mapping must grow it transparently (the kernel extends the stack
 * VMA on fault, up to RLIMIT_STACK). Also a 256 KiB alloca-style frame. */
#include "common.h"

#define FRAME 1024

/* Each level keeps a 1 KiB array live across the recursive call, so the
 * compiler cannot turn it into a loop. */
static unsigned long recurse(int depth)
{
	volatile unsigned char frame[FRAME];
	for (int i = 0; i < FRAME; i += 64)
		frame[i] = (unsigned char)(depth + i);
	if (depth == 0)
		return frame[0];
	unsigned long below = recurse(depth - 1);
	return below + frame[64];
}

static unsigned long big_frame(void)
{
	volatile unsigned char big[256 * 1024];
	for (unsigned i = 0; i < sizeof big; i += 4096)
		big[i] = (unsigned char)i;
	big[sizeof big - 1] = 1;
	return big[sizeof big - 1] + big[4096];
}

int main(void)
{
	printf("recurse_1mib=%lu\n", recurse(1024));
	printf("big_frame=%lu\n", big_frame());
	/* Do it again: the grown stack stays usable. */
	printf("recurse_again=%lu\n", recurse(1024));
	return 0;
}
