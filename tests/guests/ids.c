/* getpid/gettid/getppid/getuid/geteuid/getgid/getegid/getpgrp/getsid:
 * only relations are printed (pids differ: cryo's init task is pid 1 and
 * its parent is 0). The ids are those of the caller in both worlds. */
#define _GNU_SOURCE
#include "common.h"
#include <sys/syscall.h>

int main(void)
{
	pid_t pid = getpid();
	printf("pid_positive=%d\n", pid > 0);
	printf("tid_eq_pid=%d\n", (pid_t)syscall(SYS_gettid) == pid);
	printf("ppid_nonnegative=%d ppid_differs=%d\n", getppid() >= 0, getppid() != pid);
	printf("pid_stable=%d\n", getpid() == pid);
	printf("uid_eq_euid=%d gid_eq_egid=%d\n", getuid() == geteuid(), getgid() == getegid());
	uid_t r, e, s;
	CHECK(getresuid(&r, &e, &s) == 0);
	printf("getresuid_consistent=%d\n", r == getuid() && e == geteuid() && s == geteuid());
	gid_t gr, ge, gs;
	CHECK(getresgid(&gr, &ge, &gs) == 0);
	printf("getresgid_consistent=%d\n", gr == getgid() && ge == getegid() && gs == getegid());
	printf("getgroups_nonnegative=%d\n", getgroups(0, NULL) >= 0);
	printf("pgrp_positive=%d sid_nonnegative=%d\n", getpgrp() > 0, getsid(0) >= 0);
	EXPECT_ERR("getsid_missing", getsid(0x3fffffff));
	return 0;
}
