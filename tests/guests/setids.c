/* The uid/gid setters on the sandbox's own credentials, with Linux's
 * permission rules: as root every change is allowed; once no id is 0
 * only the process's own real/effective/saved ids may be taken; setfsuid
 * and setfsgid return the old id and change it only when allowed;
 * setgroups needs the capability. The guest must start as root (the
 * tests run as root); otherwise it says so and checks the unprivileged
 * rules only. Raw syscalls: glibc's wrappers would also run each call in
 * every thread, which this single-threaded guest does not need. */
#define _GNU_SOURCE
#include "common.h"
#include <grp.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>

static void show(const char *what)
{
	uid_t r, e, s;
	gid_t gr, ge, gs;
	CHECK(getresuid(&r, &e, &s) == 0);
	CHECK(getresgid(&gr, &ge, &gs) == 0);
	long fsu = syscall(SYS_setfsuid, -1);
	long fsg = syscall(SYS_setfsgid, -1);
	printf("%-28s uid %u/%u/%u fsuid %ld gid %u/%u/%u fsgid %ld\n", what, r, e, s, fsu, gr, ge, gs, fsg);
}

static const char *res(long r)
{
	return r == 0 ? "OK" : errname(errno);
}

int main(void)
{
	if (geteuid() != 0) {
		printf("not root: only the unprivileged rules are checked\n");
		printf("setuid(0): %s\n", res(syscall(SYS_setuid, 0)));
		return 0;
	}
	show("start");
	gid_t list[] = { 30, 10, 20 };
	printf("setgroups: %s\n", res(syscall(SYS_setgroups, 3, list)));
	gid_t got[8];
	int n = getgroups(8, got);
	printf("groups:");
	for (int i = 0; i < n; i++)
		printf(" %u", got[i]);
	printf("\n");
	printf("setgroups bad pointer: %s\n", res(syscall(SYS_setgroups, 2, (void *)8)));
	printf("setresgid(100,200,300): %s\n", res(syscall(SYS_setresgid, 100, 200, 300)));
	show("after setresgid");
	printf("setregid(-1,400): %s\n", res(syscall(SYS_setregid, -1, 400)));
	show("after setregid");
	printf("setgid(500): %s\n", res(syscall(SYS_setgid, 500)));
	show("after setgid");
	printf("setfsgid(600) returns %ld\n", syscall(SYS_setfsgid, 600));
	show("after setfsgid");
	printf("setuid(-1): %s\n", res(syscall(SYS_setuid, -1)));
	printf("setresuid(1000,1001,0): %s\n", res(syscall(SYS_setresuid, 1000, 1001, 0)));
	show("after setresuid");
	/* Unprivileged now (euid 1001): only own ids. */
	printf("setgid(7) unprivileged: %s\n", res(syscall(SYS_setgid, 7)));
	printf("setgroups unprivileged: %s\n", res(syscall(SYS_setgroups, 0, NULL)));
	printf("setfsuid(5) returns %ld\n", syscall(SYS_setfsuid, 5));
	printf("setfsuid(1000) returns %ld\n", syscall(SYS_setfsuid, 1000));
	show("after setfsuid");
	printf("setuid(0) (saved 0): %s\n", res(syscall(SYS_setuid, 0)));
	show("after setuid(0)");
	/* euid 0 again: privileged. */
	printf("setreuid(2000,2001): %s\n", res(syscall(SYS_setreuid, 2000, 2001)));
	show("after setreuid");
	printf("setuid(0) unprivileged: %s\n", res(syscall(SYS_setuid, 0)));
	printf("setreuid(-1,2000): %s\n", res(syscall(SYS_setreuid, -1, 2000)));
	show("after setreuid(-1,2000)");
	printf("setreuid(2001,-1): %s\n", res(syscall(SYS_setreuid, 2001, -1)));
	printf("setreuid(3,-1): %s\n", res(syscall(SYS_setreuid, 3, -1)));
	printf("setresuid(-1,-1,2000): %s\n", res(syscall(SYS_setresuid, -1, -1, 2000)));
	printf("setresuid(9,-1,-1): %s\n", res(syscall(SYS_setresuid, 9, -1, -1)));
	printf("setuid(2001): %s\n", res(syscall(SYS_setuid, 2001)));
	show("end");
	return 0;
}
