/* Processes always being born, for the sandbox only: init starts four
 * walkers, each of which forks and exits, its child doing the same,
 * without end; so some process is nearly always in the middle of a fork.
 * Init reaps the orphans and prints a line at every 1000 it reaps; only a
 * kill from outside ends it. */
#include "common.h"
#include <sys/wait.h>

static void walk(void)
{
	for (;;) {
		pid_t c = fork();
		if (c != 0)
			_exit(c < 0 ? 1 : 0);
	}
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < 4; i++)
		if (fork() == 0)
			walk();
	for (long reaped = 1;; reaped++) {
		if (waitpid(-1, NULL, 0) < 0) {
			printf("the walks ended: %s\n", errname(errno));
			return 1;
		}
		if (reaped % 1000 == 0)
			printf("reaped %ld\n", reaped);
	}
}
