/* What CPU the program sees: cpuid [report|tick N|high N]
 *
 * report (the default): executes cpuid and prints the leaves a program
 * reads to pick its code paths, with the machine-specific parts left out
 * (leaf 1 EBX's APIC id, leaf 7's subleaf count, leaf 0xD's sizes):
 *   cpuid 0x0: eax=... ebx=... ecx=... edx=...      (max leaf, vendor)
 *   cpuid 0x1: eax=... ecx=... edx=...
 *   cpuid 0x7.0: ebx=... ecx=... edx=...
 *   cpuid 0xd.0: eax=... edx=...                    (XSAVE components)
 *   cpuid 0x80000001: ecx=... edx=...
 * then what a second thread's cpuid says and what the program's libraries
 * concluded:
 *   thread avx2=B                       (leaf 7 EBX bit 5, on a new thread)
 *   avx2 cpuid=B gcc=B glibc=B          (leaf 7 EBX bit 5,
 *                                        __builtin_cpu_supports("avx2"),
 *                                        glibc's CPU_FEATURE_ACTIVE(AVX2):
 *                                        what its IFUNCs select by)
 *   avx cpuid=B glibc=B
 *   sse4_2 cpuid=B glibc=B
 *   avx512f cpuid=B glibc=B
 *   hwcap=HEX hwcap2=HEX                (the auxv's AT_HWCAP: leaf 1
 *                                        EDX; AT_HWCAP2: FSGSBASE)
 *   arch_prctl get_cpuid=1              (cpuid answers the program)
 *   cpuinfo avx2=B sse4_2=B avx512f=B   (/proc/cpuinfo's flags)
 *
 * tick N: the report, then "tick=K avx2=B" every 100 ms up to N, each
 * time executing cpuid again (a checkpoint lands between ticks, so a
 * restored program's cpuid answers are seen to stay what they were).
 * high N: like tick, after mapping one page at 2^40 with a hint
 * (MAP_FIXED_NOREPLACE): the program's own mapping above what a 39-bit
 * host gives user space; prints "high=ADDR" once it is mapped. */
#include "common.h"
#include <cpuid.h>
#include <pthread.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/platform/x86.h>
#include <sys/syscall.h>
#include <time.h>

static void leaf(unsigned l, unsigned s, unsigned r[4])
{
	__cpuid_count(l, s, r[0], r[1], r[2], r[3]);
}

static int avx2_bit(void)
{
	unsigned r[4];
	leaf(7, 0, r);
	return (r[1] >> 5) & 1;
}

/* A second thread's cpuid answers as the first's. */
static void *avx2_on_a_thread(void *arg)
{
	(void)arg;
	return (void *)(long)avx2_bit();
}

/* Whether /proc/cpuinfo's first flags line names `flag`. */
static int cpuinfo_has(const char *flags, const char *flag)
{
	size_t n = strlen(flag);
	for (const char *p = flags; (p = strstr(p, flag)) != NULL; p += n) {
		int starts = p == flags || p[-1] == ' ' || p[-1] == '\t';
		int ends = p[n] == ' ' || p[n] == '\n' || p[n] == '\0';
		if (starts && ends)
			return 1;
	}
	return 0;
}

/* The kernel's auxv entry (glibc's getauxval(AT_HWCAP) on x86_64 answers
 * glibc's own HWCAP_X86_* bits instead): the auxv follows the initial
 * environment's NULL, found before anything changes environ. */
static unsigned long *auxv;

static unsigned long auxv_value(unsigned long type)
{
	for (unsigned long *a = auxv; a[0] != AT_NULL; a += 2)
		if (a[0] == type)
			return a[1];
	return 0;
}

static void report(void)
{
	unsigned r[4];
	leaf(0, 0, r);
	printf("cpuid 0x0: eax=%08x ebx=%08x ecx=%08x edx=%08x\n", r[0], r[1], r[2], r[3]);
	unsigned max = r[0];
	leaf(1, 0, r);
	printf("cpuid 0x1: eax=%08x ecx=%08x edx=%08x\n", r[0], r[2], r[3]);
	unsigned ecx1 = r[2];
	if (max >= 7) {
		leaf(7, 0, r);
		printf("cpuid 0x7.0: ebx=%08x ecx=%08x edx=%08x\n", r[1], r[2], r[3]);
	}
	if (max >= 0xd) {
		leaf(0xd, 0, r);
		printf("cpuid 0xd.0: eax=%08x edx=%08x\n", r[0], r[3]);
	}
	leaf(0x80000001, 0, r);
	printf("cpuid 0x80000001: ecx=%08x edx=%08x\n", r[2], r[3]);

	pthread_t t;
	void *bit;
	CHECK(pthread_create(&t, NULL, avx2_on_a_thread, NULL) == 0);
	CHECK(pthread_join(t, &bit) == 0);
	printf("thread avx2=%d\n", (int)(long)bit);
	printf("avx2 cpuid=%d gcc=%d glibc=%d\n", avx2_bit(),
	       __builtin_cpu_supports("avx2") ? 1 : 0, CPU_FEATURE_ACTIVE(AVX2) ? 1 : 0);
	printf("avx cpuid=%d glibc=%d\n", (ecx1 >> 28) & 1, CPU_FEATURE_ACTIVE(AVX) ? 1 : 0);
	printf("sse4_2 cpuid=%d glibc=%d\n", (ecx1 >> 20) & 1, CPU_FEATURE_ACTIVE(SSE4_2) ? 1 : 0);
	leaf(7, 0, r);
	printf("avx512f cpuid=%d glibc=%d\n", max >= 7 ? (r[1] >> 16) & 1 : 0,
	       CPU_FEATURE_ACTIVE(AVX512F) ? 1 : 0);
	printf("hwcap=%lx hwcap2=%lx\n", auxv_value(AT_HWCAP), auxv_value(AT_HWCAP2));
	printf("arch_prctl get_cpuid=%ld\n", syscall(SYS_arch_prctl, 0x1011 /* ARCH_GET_CPUID */, 0));

	static char buf[1 << 16];
	FILE *f = fopen("/proc/cpuinfo", "r");
	CHECK(f != NULL);
	char *flags = NULL;
	while (fgets(buf, sizeof buf, f) != NULL) {
		if (strncmp(buf, "flags", 5) == 0) {
			flags = buf;
			break;
		}
	}
	fclose(f);
	CHECK(flags != NULL);
	printf("cpuinfo avx2=%d sse4_2=%d avx512f=%d\n", cpuinfo_has(flags, "avx2"),
	       cpuinfo_has(flags, "sse4_2"), cpuinfo_has(flags, "avx512f"));
}

int main(int argc, char **argv)
{
	extern char **environ;
	char **e = environ;
	while (*e != NULL)
		e++;
	auxv = (unsigned long *)(e + 1);
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *mode = argc > 1 ? argv[1] : "report";
	report();
	if (strcmp(mode, "report") == 0)
		return 0;
	CHECK(argc > 2);
	int n = atoi(argv[2]);
	if (strcmp(mode, "high") == 0) {
		void *want = (void *)(1UL << 40);
		void *p = mmap(want, 4096, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		CHECK(p == want);
		*(volatile int *)p = 42;
		printf("high=%p\n", p);
	} else {
		CHECK(strcmp(mode, "tick") == 0);
	}
	for (int i = 1; i <= n; i++) {
		struct timespec req = { 0, 100 * 1000 * 1000 };
		while (nanosleep(&req, &req) != 0 && errno == EINTR)
			;
		printf("tick=%d avx2=%d\n", i, avx2_bit());
	}
	return 0;
}
