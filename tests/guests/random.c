/* getrandom: 16 bytes, not all zero; two draws differ; GRND_NONBLOCK works
 * once the pool is initialised (always, at this point); bad flags are
 * EINVAL; a large request returns at least 256 bytes. Values are never
 * printed, only facts about them. */
#include "common.h"
#include <sys/random.h>

int main(void)
{
	unsigned char a[16] = { 0 }, b[16] = { 0 };
	printf("getrandom=%zd\n", getrandom(a, sizeof a, 0));
	int nonzero = 0;
	for (int i = 0; i < 16; i++)
		nonzero |= a[i];
	printf("not_all_zero=%d\n", nonzero != 0);
	printf("nonblock=%zd\n", getrandom(b, sizeof b, GRND_NONBLOCK));
	printf("draws_differ=%d\n", memcmp(a, b, sizeof a) != 0);
	printf("zero_len=%zd\n", getrandom(a, 0, 0));
	EXPECT_ERR("bad_flags", getrandom(a, sizeof a, 0x100));
	static unsigned char big[1 << 16];
	printf("large_at_least_256=%d\n", getrandom(big, sizeof big, 0) >= 256);
	return 0;
}
