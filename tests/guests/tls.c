/* arch_prctl and set_tid_address: the C library set up the FS base for TLS
 * at startup (ARCH_GET_FS is non-zero and equals the thread pointer), a
 * __thread variable works, ARCH_SET_FS to the same value is harmless,
 * set_tid_address returns the caller's tid. ARCH_GET_GS reads 0. */
#define _GNU_SOURCE
#include "common.h"
#include <asm/prctl.h>
#include <sys/syscall.h>

static __thread int counter = 41;
static __thread char name[16] = "tls-init";

int main(void)
{
	unsigned long fs = 0, gs = 1;
	long r = syscall(SYS_arch_prctl, ARCH_GET_FS, &fs);
	printf("get_fs=%ld nonzero=%d\n", r, fs != 0);
	void *tp;
	__asm__("mov %%fs:0, %0" : "=r"(tp));
	printf("fs_is_thread_pointer=%d\n", (unsigned long)tp == fs);
	printf("set_fs_same=%ld\n", syscall(SYS_arch_prctl, ARCH_SET_FS, fs));
	r = syscall(SYS_arch_prctl, ARCH_GET_GS, &gs);
	printf("get_gs=%ld value=%lu\n", r, gs);
	EXPECT_ERR("bad_code", syscall(SYS_arch_prctl, 0x9999, &fs));

	counter++;
	printf("tls_counter=%d tls_name=%s\n", counter, name);
	printf("tls_addr_in_fs_block=%d\n", (unsigned long)&counter < fs);

	static int tid_word;
	long tid = syscall(SYS_set_tid_address, &tid_word);
	printf("set_tid_address_is_tid=%d\n", tid == syscall(SYS_gettid));
	return 0;
}
