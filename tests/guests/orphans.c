/* Orphans go to the nearest subreaper (PR_SET_CHILD_SUBREAPER), whose
 * wait then reaps them; PR_GET_CHILD_SUBREAPER reads it back; clone with
 * CLONE_SETTLS and a kernel address is EPERM, as Linux. */
#define _GNU_SOURCE
#include "common.h"
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	pid_t top = getpid();
	printf("subreaper set: %d\n", prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
	int on = 0;
	prctl(PR_GET_CHILD_SUBREAPER, &on);
	printf("subreaper read back: %d\n", on);
	int p[2];
	if (pipe(p) != 0)
		return 1;
	pid_t a = fork();
	if (a == 0) {
		pid_t g = fork();
		if (g == 0) {
			pid_t was = getppid();
			close(p[0]);
			char ok = 0;
			if (write(p[1], &ok, 1) != 1)
				_exit(1);
			/* Wait for the middle process to go. */
			while (getppid() == was)
				usleep(1000);
			_exit(getppid() == top ? 21 : 22);
		}
		char c;
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			_exit(1);
		_exit(3);
	}
	close(p[0]);
	close(p[1]);
	int st;
	int waited = waitpid(a, &st, 0) == a;
	printf("middle exited: %d code %d\n", waited, WEXITSTATUS(st));
	pid_t g = wait(&st);
	printf("grandchild reaped by the subreaper: %d code %d\n", g > 0, WEXITSTATUS(st));
	printf("then: %s\n", wait(&st) < 0 ? errname(errno) : "more");

	long r = syscall(SYS_clone, CLONE_SETTLS | SIGCHLD, 0, 0, 0, 0xffff800000000000UL);
	if (r == 0)
		_exit(0);
	printf("CLONE_SETTLS kernel address: %s\n", r < 0 ? errname(errno) : "accepted");
	if (r > 0)
		waitpid((pid_t)r, &st, 0);
	return 0;
}
