/* A syscall through `int $0x80` (the i386 ABI) from 64-bit code. Linux
 * runs it from the i386 table: 39 is mkdir there (getpid in the x86_64
 * table). cryo implements only the x86_64 ABI and, as gVisor, refuses the
 * i386 one with ENOSYS: nothing of the x86_64 table may run for it (the
 * result is not the pid, no directory appears). argv[1] is the path;
 * the path lives below 4 GiB, where the i386 ABI's 32-bit ebx reaches. */
#define _GNU_SOURCE
#include "common.h"
#include <sys/mman.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
	CHECK(argc == 2 && strlen(argv[1]) < 4000);
	char *path = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	CHECK(path != MAP_FAILED);
	strcpy(path, argv[1]);
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(39L), "b"(path), "c"(0755L)
			 : "memory");
	printf("int80 mkdir: %s\n", ret < 0 ? errname((int)-ret) : (ret == 0 ? "OK" : "positive"));
	printf("result is the pid: %s\n", ret == getpid() ? "yes" : "no");
	struct stat st;
	printf("created: %s\n", stat(path, &st) == 0 ? "yes" : "no");
	/* The 64-bit table still works afterwards. */
	printf("syscall getpid works: %s\n", getpid() > 0 ? "yes" : "no");
	return 0;
}
