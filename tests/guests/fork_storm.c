/* A fork bomb that never ends by itself, for the sandbox only (never run
 * natively): as an unprivileged user under RLIMIT_NPROC 64, init and every
 * worker fork without end, retrying at once on EAGAIN; a worker exits after
 * four children, so processes are born, orphaned to init, reaped and
 * replaced all the time while the limit is hit. Init prints "saturated"
 * after its first EAGAIN and goes on; only a kill from outside ends it. */
#include "common.h"
#include <sys/resource.h>
#include <sys/wait.h>

static void worker(void)
{
	int made = 0;
	for (;;) {
		pid_t c = fork();
		if (c == 0) {
			made = 0;
			continue;
		}
		if (c > 0 && ++made >= 4)
			_exit(0);
	}
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct rlimit rl = { 64, 64 };
	if (setrlimit(RLIMIT_NPROC, &rl) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
		printf("cannot become an unprivileged user: %s\n", errname(errno));
		return 1;
	}
	int said = 0;
	for (;;) {
		pid_t c = fork();
		if (c == 0)
			worker();
		if (c < 0 && !said) {
			printf("saturated: %s\n", errname(errno));
			said = 1;
		}
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
}
