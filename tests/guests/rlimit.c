/* getrlimit/setrlimit/prlimit64: soft <= hard for the common limits,
 * RLIMIT_STACK is at least 1 MiB, lowering RLIMIT_NOFILE's soft limit is
 * enforced by dup2/F_DUPFD, raising soft above hard is EINVAL, and prlimit64
 * on ourselves (pid 0) reads back what was set. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static void show(const char *label, int res)
{
	struct rlimit r;
	CHECK(getrlimit(res, &r) == 0);
	printf("%s: soft_le_hard=%d soft_nonzero=%d\n", label,
	       r.rlim_max == RLIM_INFINITY || (r.rlim_cur != RLIM_INFINITY && r.rlim_cur <= r.rlim_max),
	       r.rlim_cur != 0);
}

int main(void)
{
	show("stack", RLIMIT_STACK);
	show("nofile", RLIMIT_NOFILE);
	show("as", RLIMIT_AS);
	show("data", RLIMIT_DATA);

	struct rlimit r;
	CHECK(getrlimit(RLIMIT_STACK, &r) == 0);
	printf("stack_at_least_1mib=%d\n", r.rlim_cur == RLIM_INFINITY || r.rlim_cur >= (1 << 20));
	CHECK(getrlimit(RLIMIT_NOFILE, &r) == 0);
	printf("nofile_at_least_64=%d\n", r.rlim_cur >= 64);

	/* Lower the soft NOFILE limit to 16. */
	struct rlimit lim = { 16, r.rlim_max };
	struct rlimit old;
	CHECK(syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, &lim, &old) == 0);
	printf("prlimit_old_matches_getrlimit=%d\n", old.rlim_cur == r.rlim_cur && old.rlim_max == r.rlim_max);
	CHECK(getrlimit(RLIMIT_NOFILE, &r) == 0);
	printf("nofile_now=%lu\n", (unsigned long)r.rlim_cur);
	printf("dup2_below_limit=%d\n", dup2(0, 15));
	EXPECT_ERR("dup2_at_limit", dup2(0, 16));
	EXPECT_ERR("dupfd_at_limit", fcntl(0, F_DUPFD, 16));
	close(15);

	/* Soft above hard is refused. */
	struct rlimit bad = { r.rlim_max, r.rlim_max };
	if (bad.rlim_max != RLIM_INFINITY) {
		bad.rlim_cur = bad.rlim_max;
		bad.rlim_max = bad.rlim_max - 1;
	} else {
		bad.rlim_cur = RLIM_INFINITY;
		bad.rlim_max = 100;
	}
	EXPECT_ERR("soft_above_hard", setrlimit(RLIMIT_NOFILE, &bad));
	EXPECT_ERR("bad_resource", getrlimit(999, &r));

	/* RLIMIT_CORE can always be lowered to 0. */
	struct rlimit core = { 0, 0 };
	CHECK(getrlimit(RLIMIT_CORE, &old) == 0);
	core.rlim_max = old.rlim_max;
	printf("core_to_zero=%d\n", setrlimit(RLIMIT_CORE, &core));
	CHECK(getrlimit(RLIMIT_CORE, &r) == 0);
	printf("core_now=%lu\n", (unsigned long)r.rlim_cur);
	return 0;
}
