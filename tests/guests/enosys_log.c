/* For the ENOSYS log test (run under cryo only): calls, three times each,
 * two syscalls cryo does not implement (add_key, request_key), a number no
 * kernel has (9999), and an unsupported variant of one it does implement
 * (futex with operation 99). Prints each call's errno; cryo's debug log
 * must name each exactly once however often it is called. */
#include "common.h"
#include <sys/syscall.h>

int main(void)
{
	for (int i = 0; i < 3; i++) {
		EXPECT_ERR("add_key", syscall(SYS_add_key, "user", "cryo", "x", 1, 0));
		EXPECT_ERR("request_key", syscall(SYS_request_key, "user", "cryo", NULL, 0));
		EXPECT_ERR("syscall_9999", syscall(9999));
		int word = 0;
		EXPECT_ERR("futex_op_99", syscall(SYS_futex, &word, 99, 0, NULL, NULL, 0));
	}
	return 0;
}
