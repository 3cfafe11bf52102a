/* Checkpoint workload for the vDSO's clock (not compared with a native
 * run: it prints raw times). Reads CLOCK_MONOTONIC through the vDSO found
 * with getauxval(AT_SYSINFO_EHDR) in a tight loop, never sleeping, and
 * every 100 ms of that clock prints
 *   n=N mono=NS reads=R back=B worst_ns=W
 * where B counts reads that were below the one before (across a
 * checkpoint and restore too: the previous reading is in memory), by at
 * most W ns. The
 * restored program's vDSO is the same code at the same address; its data
 * page is the restoring Sentry's. */
#include "common.h"
#include <elf.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <time.h>

typedef int (*cgt_fn)(clockid_t, struct timespec *);

/* __vdso_clock_gettime through DT_HASH, as musl finds it. */
static cgt_fn find_cgt(void)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)getauxval(AT_SYSINFO_EHDR);
	if (!eh)
		return NULL;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)((const char *)eh + eh->e_phoff);
	uintptr_t bias = 0;
	const Elf64_Dyn *dyn = NULL;
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD && !bias)
			bias = (uintptr_t)eh + ph[i].p_offset - ph[i].p_vaddr;
		if (ph[i].p_type == PT_DYNAMIC)
			dyn = (const Elf64_Dyn *)((const char *)eh + ph[i].p_offset);
	}
	const Elf64_Sym *sym = NULL;
	const char *str = NULL;
	const uint32_t *hash = NULL;
	for (; dyn && dyn->d_tag != DT_NULL; dyn++) {
		uintptr_t p = bias + dyn->d_un.d_ptr;
		if (dyn->d_tag == DT_SYMTAB)
			sym = (const Elf64_Sym *)p;
		else if (dyn->d_tag == DT_STRTAB)
			str = (const char *)p;
		else if (dyn->d_tag == DT_HASH)
			hash = (const uint32_t *)p;
	}
	if (!sym || !str || !hash)
		return NULL;
	for (uint32_t i = 0; i < hash[1]; i++)
		if (sym[i].st_shndx != SHN_UNDEF &&
		    strcmp(str + sym[i].st_name, "__vdso_clock_gettime") == 0)
			return (cgt_fn)(bias + sym[i].st_value);
	return NULL;
}

int main(void)
{
	cgt_fn cgt = find_cgt();
	CHECK(cgt != NULL);
	struct timespec t;
	CHECK(cgt(CLOCK_MONOTONIC, &t) == 0);
	long long prev = (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
	long long next = prev;
	long back = 0;
	long long worst = 0;
	for (long n = 0;; n++) {
		long reads = 0;
		do {
			CHECK(cgt(CLOCK_MONOTONIC, &t) == 0);
			long long now = (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
			if (now < prev) {
				back++;
				if (prev - now > worst)
					worst = prev - now;
			}
			prev = now;
			reads++;
		} while (prev < next);
		printf("n=%ld mono=%lld reads=%ld back=%ld worst_ns=%lld\n", n, prev, reads, back,
		       worst);
		fflush(stdout);
		next = prev + 100 * 1000 * 1000;
	}
}
