/* Unknown syscall numbers return -1/ENOSYS (cryo's rule: unimplemented is
 * explicit, never passed through), and the process carries on. */
#include "common.h"
#include <sys/syscall.h>

int main(void)
{
	EXPECT_ERR("syscall_9999", syscall(9999));
	EXPECT_ERR("syscall_500", syscall(500, 1, 2, 3));
	EXPECT_ERR("syscall_100000", syscall(100000));
	/* Still alive and able to make ordinary calls. */
	printf("getpid_after=%d\n", getpid() > 0);
	return 0;
}
