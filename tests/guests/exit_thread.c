/* SYS_exit (thread exit) in a single-threaded process ends the process,
 * and its status is the exit status seen by the parent: 7. */
#include "common.h"
#include <sys/syscall.h>

int main(void)
{
	printf("about to exit(7) via SYS_exit\n");
	fflush(stdout);
	syscall(SYS_exit, 7);
	printf("unreachable\n");
	return 0;
}
