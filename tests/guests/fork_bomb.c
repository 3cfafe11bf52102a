/* A fork bomb, for the sandbox only (never run natively): as an
 * unprivileged user under RLIMIT_NPROC 64, every child forks too, until
 * fork fails; the first failure's errno is reported up the tree; then
 * init kills everything and reaps it.
 * Prints "fork failed with EAGAIN" and "all reaped". */
#include "common.h"
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

int main(void)
{
	struct rlimit rl = { 64, 64 };
	if (setrlimit(RLIMIT_NPROC, &rl) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
		printf("cannot become an unprivileged user: %s\n", errname(errno));
		return 1;
	}
	int p[2];
	if (pipe(p) != 0)
		return 1;
	pid_t top = getpid();
	int made = 0;
	for (;;) {
		pid_t c = fork();
		if (c < 0) {
			int e = errno;
			if (write(p[1], &e, sizeof e) != sizeof e)
				_exit(1);
			break;
		}
		if (c > 0)
			made++;
		/* Parent and child both go on forking. */
	}
	if (getpid() != top) {
		for (;;)
			pause();
	}
	int e = 0;
	if (read(p[0], &e, sizeof e) != sizeof e)
		return 1;
	printf("fork failed with %s\n", errname(e));
	/* Others may still be forking: kill until nothing is left. */
	int n = 0;
	for (;;) {
		kill(-1, SIGKILL);
		pid_t r = waitpid(-1, NULL, WNOHANG);
		if (r < 0)
			break;
		if (r == 0)
			usleep(10000);
		else
			n++;
	}
	printf("all reaped: %s, more than 10 processes: %d\n", errname(errno), n > 10 && made > 0);
	return 0;
}
