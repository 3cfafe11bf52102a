/* exit_group with a status of 3: output buffered by stdio must be flushed
 * by exit(), and the raw exit_group syscall ends the process with that
 * status (only the low 8 bits count: 259 & 0xff == 3). */
#include "common.h"
#include <sys/syscall.h>

int main(void)
{
	printf("about to exit_group(259)\n");
	fflush(stdout);
	syscall(SYS_exit_group, 259);
	printf("unreachable\n");
	return 0;
}
