/* argv, envp and the auxiliary vector as set up by the loader: argc and
 * argv (basename of argv[0] only: the path differs), a chosen environment
 * variable, AT_PAGESZ, AT_RANDOM (non-null, 16 readable bytes), AT_EXECFN's
 * basename, AT_PHDR/AT_ENTRY non-zero, AT_UID/AT_EUID match getuid,
 * AT_SECURE 0, and the stack layout: envp follows argv's NULL. */
#include "common.h"
#include <sys/auxv.h>

static const char *base(const char *p)
{
	const char *s = p ? strrchr(p, '/') : NULL;
	return s ? s + 1 : p ? p : "(null)";
}

int main(int argc, char **argv, char **envp)
{
	printf("argc=%d\n", argc);
	printf("argv0_base=%s\n", base(argv[0]));
	for (int i = 1; i < argc; i++)
		printf("argv[%d]=%s\n", i, argv[i]);
	printf("argv_null_terminated=%d\n", argv[argc] == NULL);
	printf("envp_follows_argv=%d\n", envp == argv + argc + 1);
	const char *v = getenv("CRYO_GUEST_VAR");
	printf("CRYO_GUEST_VAR=%s\n", v ? v : "(unset)");
	printf("NOT_SET=%s\n", getenv("CRYO_GUEST_NOT_SET") ? "set" : "(unset)");

	printf("AT_PAGESZ=%lu\n", getauxval(AT_PAGESZ));
	unsigned char *rnd = (unsigned char *)getauxval(AT_RANDOM);
	int nz = 0;
	for (int i = 0; rnd && i < 16; i++)
		nz |= rnd[i];
	printf("AT_RANDOM_nonnull=%d not_all_zero=%d\n", rnd != NULL, nz != 0);
	printf("AT_EXECFN_base=%s\n", base((const char *)getauxval(AT_EXECFN)));
	printf("AT_PHDR_nonzero=%d AT_PHNUM_nonzero=%d AT_PHENT=%lu\n", getauxval(AT_PHDR) != 0,
	       getauxval(AT_PHNUM) != 0, getauxval(AT_PHENT));
	printf("AT_ENTRY_nonzero=%d\n", getauxval(AT_ENTRY) != 0);
	printf("AT_UID_matches=%d AT_EUID_matches=%d AT_GID_matches=%d\n", getauxval(AT_UID) == getuid(),
	       getauxval(AT_EUID) == geteuid(), getauxval(AT_GID) == getgid());
	printf("AT_SECURE=%lu\n", getauxval(AT_SECURE));
	return argc == 4 ? 0 : 1;
}
