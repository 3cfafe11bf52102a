/* The vDSO, found as a program finds it: AT_SYSINFO_EHDR in the auxiliary
 * vector, its dynamic symbols through DT_HASH and their LINUX_2.6 version
 * (as musl looks them up), its soname, its [vdso] and [vvar] mappings.
 * Then its calls: clock_gettime(MONOTONIC) never goes back over a million
 * reads interleaved with raw clock_gettime system calls, realtime agrees
 * with time(), gettimeofday and the system call, getcpu agrees with the
 * system call on a pinned CPU, and all of it still works in a forked child
 * and after an exec (which maps a fresh vDSO); the data page cannot be
 * made writable. Prints only relations. */
#define _GNU_SOURCE
#include "common.h"
#include <elf.h>
#include <sched.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

struct vdso {
	uintptr_t bias;
	const Elf64_Sym *symtab;
	const char *strtab;
	const uint32_t *hash;
	const Elf64_Versym *versym;
	const Elf64_Verdef *verdef;
	const char *soname;
	int has_gnu_hash;
};

static int vdso_open(struct vdso *v)
{
	memset(v, 0, sizeof(*v));
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)getauxval(AT_SYSINFO_EHDR);
	if (!eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
		return 0;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)((const char *)eh + eh->e_phoff);
	const Elf64_Dyn *dyn = NULL;
	int have_load = 0;
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD && !have_load) {
			v->bias = (uintptr_t)eh + ph[i].p_offset - ph[i].p_vaddr;
			have_load = 1;
		} else if (ph[i].p_type == PT_DYNAMIC) {
			dyn = (const Elf64_Dyn *)((const char *)eh + ph[i].p_offset);
		}
	}
	if (!have_load || !dyn)
		return 0;
	uintptr_t soname = 0;
	for (; dyn->d_tag != DT_NULL; dyn++) {
		uintptr_t p = v->bias + dyn->d_un.d_ptr;
		switch (dyn->d_tag) {
		case DT_SYMTAB: v->symtab = (const Elf64_Sym *)p; break;
		case DT_STRTAB: v->strtab = (const char *)p; break;
		case DT_HASH: v->hash = (const uint32_t *)p; break;
		case DT_GNU_HASH: v->has_gnu_hash = 1; break;
		case DT_VERSYM: v->versym = (const Elf64_Versym *)p; break;
		case DT_VERDEF: v->verdef = (const Elf64_Verdef *)p; break;
		case DT_SONAME: soname = dyn->d_un.d_val; break;
		}
	}
	if (!v->symtab || !v->strtab || !v->hash)
		return 0;
	v->soname = v->strtab + soname;
	return 1;
}

/* The name of version index `ndx`. */
static const char *version_name(const struct vdso *v, unsigned ndx)
{
	const Elf64_Verdef *d = v->verdef;
	while (d) {
		if ((d->vd_flags & VER_FLG_BASE) == 0 && (d->vd_ndx & 0x7fff) == ndx) {
			const Elf64_Verdaux *a = (const Elf64_Verdaux *)((const char *)d + d->vd_aux);
			return v->strtab + a->vda_name;
		}
		if (!d->vd_next)
			break;
		d = (const Elf64_Verdef *)((const char *)d + d->vd_next);
	}
	return "";
}

static void *vdso_sym(const struct vdso *v, const char *name)
{
	uint32_t nsyms = v->hash[1];
	for (uint32_t i = 0; i < nsyms; i++) {
		const Elf64_Sym *s = &v->symtab[i];
		if (ELF64_ST_TYPE(s->st_info) != STT_FUNC || s->st_shndx == SHN_UNDEF)
			continue;
		if (strcmp(v->strtab + s->st_name, name) != 0)
			continue;
		if (v->versym && strcmp(version_name(v, v->versym[i] & 0x7fff), "LINUX_2.6") != 0)
			continue;
		return (void *)(v->bias + s->st_value);
	}
	return NULL;
}

typedef int (*cgt_fn)(clockid_t, struct timespec *);
typedef int (*gtod_fn)(struct timeval *, void *);
typedef time_t (*time_fn)(time_t *);
typedef long (*getcpu_fn)(unsigned *, unsigned *, void *);

static cgt_fn vcgt;
static gtod_fn vgtod;
static time_fn vtime;
static getcpu_fn vgetcpu;

static long long ts_ns(struct timespec t)
{
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long sys_ns(clockid_t c)
{
	struct timespec t;
	CHECK(syscall(SYS_clock_gettime, c, &t) == 0);
	return ts_ns(t);
}

static long long vdso_ns(clockid_t c)
{
	struct timespec t;
	CHECK(vcgt(c, &t) == 0);
	return ts_ns(t);
}

/* Monotonic over `n` vDSO reads with a system call read every `every`. */
static int monotonic_ok(long n, long every)
{
	long long prev = vdso_ns(CLOCK_MONOTONIC);
	for (long i = 0; i < n; i++) {
		long long now = (i % every == 0) ? sys_ns(CLOCK_MONOTONIC) : vdso_ns(CLOCK_MONOTONIC);
		if (now < prev) {
			fprintf(stderr, "monotonic went back by %lld ns at read %ld\n", prev - now, i);
			return 0;
		}
		prev = now;
	}
	return 1;
}

/* Realtime from the vDSO, libc, gettimeofday, time() and the system call
 * agree, in the order they were read. */
static int realtime_ok(void)
{
	time_t t0 = vtime(NULL);
	long long a = vdso_ns(CLOCK_REALTIME);
	struct timespec lts;
	CHECK(clock_gettime(CLOCK_REALTIME, &lts) == 0);
	long long b = ts_ns(lts);
	struct timeval tv;
	CHECK(vgtod(&tv, NULL) == 0);
	long long c = (long long)tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL;
	long long d = sys_ns(CLOCK_REALTIME);
	time_t t1 = time(NULL);
	time_t t2 = 0;
	vtime(&t2);
	/* gettimeofday drops the sub-microsecond part. Linux's time() reads
	 * the coarse clock, up to a tick behind: each time() lies within a
	 * second of the precise clock's readings around it. */
	int ordered = a <= b && b <= c + 1000 && c <= d;
	long long lo = a / 1000000000LL - 1, hi = d / 1000000000LL + 1;
	int seconds = t0 >= lo && t0 <= hi && t1 >= lo && t1 <= hi && t2 >= lo && t2 <= hi;
	int after_2020 = t0 > 1577836800;
	if (!(ordered && seconds && after_2020))
		fprintf(stderr, "realtime: %ld %lld %lld %lld %lld %ld %ld\n", (long)t0, a, b, c, d,
			(long)t1, (long)t2);
	return ordered && seconds && after_2020;
}

static int pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

/* vDSO getcpu and the system call say the same on a pinned CPU. */
static int getcpu_agrees(int cpu)
{
	CHECK(pin(cpu) == 0);
	unsigned vc = 99, vn = 99, sc = 98, sn = 98;
	CHECK(vgetcpu(&vc, &vn, NULL) == 0);
	CHECK(syscall(SYS_getcpu, &sc, &sn, NULL) == 0);
	int lib = sched_getcpu();
	return vc == (unsigned)cpu && sc == vc && vn == sn && lib == cpu;
}

static int maps_has(const char *name, uintptr_t *start)
{
	FILE *f = fopen("/proc/self/maps", "r");
	CHECK(f != NULL);
	char line[512];
	int found = 0;
	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(line);
		if (n && line[n - 1] == '\n')
			line[--n] = 0;
		size_t k = strlen(name);
		if (n >= k && strcmp(line + n - k, name) == 0) {
			found = 1;
			if (start)
				*start = strtoul(line, NULL, 16);
			break;
		}
	}
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	int after_exec = argc > 1 && strcmp(argv[1], "exec") == 0;
	struct vdso v;
	int found = vdso_open(&v);
	printf("%sAT_SYSINFO_EHDR_found=%d\n", after_exec ? "exec: " : "", found);
	if (!found)
		return 1;
	vcgt = (cgt_fn)vdso_sym(&v, "__vdso_clock_gettime");
	vgtod = (gtod_fn)vdso_sym(&v, "__vdso_gettimeofday");
	vtime = (time_fn)vdso_sym(&v, "__vdso_time");
	vgetcpu = (getcpu_fn)vdso_sym(&v, "__vdso_getcpu");
	printf("symbols: clock_gettime=%d gettimeofday=%d time=%d getcpu=%d\n", vcgt != NULL,
	       vgtod != NULL, vtime != NULL, vgetcpu != NULL);
	if (!vcgt || !vgtod || !vtime || !vgetcpu)
		return 1;
	if (after_exec) {
		printf("exec: monotonic_ok=%d realtime_ok=%d\n", monotonic_ok(10000, 100),
		       realtime_ok());
		return 0;
	}
	printf("aliases: clock_gettime=%d gettimeofday=%d time=%d getcpu=%d\n",
	       vdso_sym(&v, "clock_gettime") == (void *)vcgt,
	       vdso_sym(&v, "gettimeofday") == (void *)vgtod, vdso_sym(&v, "time") == (void *)vtime,
	       vdso_sym(&v, "getcpu") == (void *)vgetcpu);
	printf("soname=%s gnu_hash=%d\n", v.soname, v.has_gnu_hash);
	uintptr_t vdso_start = 0, vvar_start = 0;
	int vdso_mapped = maps_has("[vdso]", &vdso_start);
	int vvar_mapped = maps_has("[vvar]", &vvar_start);
	printf("maps: vdso=%d vvar=%d ehdr_at_vdso_start=%d\n", vdso_mapped, vvar_mapped,
	       vdso_start == getauxval(AT_SYSINFO_EHDR));
	/* The data page is the kernel's: never writable by the program. */
	errno = 0;
	int r = mprotect((void *)vvar_start, 4096, PROT_READ | PROT_WRITE);
	printf("vvar_mprotect_rw=%s\n", r == 0 ? "OK" : errname(errno));

	printf("monotonic_ok=%d\n", monotonic_ok(1000000, 100));
	struct timespec raw, boot;
	CHECK(vcgt(CLOCK_MONOTONIC_RAW, &raw) == 0 && vcgt(CLOCK_BOOTTIME, &boot) == 0);
	printf("raw_and_boottime_positive=%d\n", ts_ns(raw) > 0 && ts_ns(boot) > 0);
	printf("realtime_ok=%d\n", realtime_ok());
	struct timespec bad;
	errno = 0;
	printf("unknown_clock=%s\n", vcgt(12345, &bad) == 0 ? "OK" : errname(-vcgt(12345, &bad)));

	printf("getcpu_cpu0=%d\n", getcpu_agrees(0));
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	printf("getcpu_cpu1=%d\n", cpus < 2 || getcpu_agrees(1));

	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* The child's copy of the vDSO, at the same address. */
		_exit(monotonic_ok(10000, 100) && realtime_ok() ? 0 : 1);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	printf("fork_child_ok=%d\n", WIFEXITED(status) && WEXITSTATUS(status) == 0);
	fflush(stdout);
	char *args[] = { argv[0], "exec", NULL };
	execv("/proc/self/exe", args);
	printf("exec failed: %s\n", errname(errno));
	return 1;
}
