/* uname: sysname is "Linux", machine "x86_64", release and version are
 * non-empty and look like a kernel version (cryo reports 4.4.0; the host
 * something else, so the value itself is never printed). sethostname as an
 * unprivileged-in-sandbox call is not tested. */
#include "common.h"
#include <ctype.h>
#include <sys/utsname.h>

int main(void)
{
	struct utsname u;
	CHECK(uname(&u) == 0);
	printf("sysname=%s\n", u.sysname);
	printf("machine=%s\n", u.machine);
	printf("release_nonempty=%d release_starts_with_digit=%d release_has_dot=%d\n",
	       u.release[0] != 0, isdigit((unsigned char)u.release[0]) != 0, strchr(u.release, '.') != NULL);
	printf("version_nonempty=%d nodename_nonempty=%d\n", u.version[0] != 0, u.nodename[0] != 0);
	/* gethostname agrees with uname's nodename. */
	char host[256];
	CHECK(gethostname(host, sizeof host) == 0);
	printf("gethostname_matches=%d\n", strcmp(host, u.nodename) == 0);
	return 0;
}
