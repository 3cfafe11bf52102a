/* Who may signal whom (Linux's check_kill_permission), run as root: a
 * process whose uids are all 2000 cannot signal one whose uids are all
 * 1000 (kill, kill with signal 0, kill of its group, tgkill,
 * rt_sigqueueinfo, pidfd_send_signal: EPERM) but may send SIGCONT to it in
 * the same session and may signal a process with its own real uid; root
 * may signal anyone. */
#define _GNU_SOURCE
#include "common.h"
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static void become(uid_t uid)
{
	CHECK(setresgid(uid, uid, uid) == 0);
	CHECK(setresuid(uid, uid, uid) == 0);
}

/* A child of the given uid in its own process group, waiting to be
 * killed; `ready` gets a byte once it has changed ids. */
static pid_t sleeper(uid_t uid, int ready)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		CHECK(setpgid(0, 0) == 0);
		become(uid);
		signal(SIGUSR1, SIG_IGN);
		CHECK(write(ready, "r", 1) == 1);
		for (;;)
			pause();
	}
	return pid;
}

int main(void)
{
	int p[2];
	CHECK(pipe(p) == 0);
	pid_t victim = sleeper(1000, p[1]);
	pid_t peer = sleeper(2000, p[1]);
	char c;
	CHECK(read(p[0], &c, 1) == 1 && read(p[0], &c, 1) == 1);

	pid_t attacker = fork();
	CHECK(attacker >= 0);
	if (attacker == 0) {
		become(2000);
		EXPECT_ERR("kill_other_uid", kill(victim, SIGTERM));
		EXPECT_ERR("kill_other_uid_sig0", kill(victim, 0));
		EXPECT_ERR("kill_other_group", kill(-victim, SIGTERM));
		EXPECT_ERR("tgkill_other_uid", syscall(SYS_tgkill, victim, victim, SIGTERM));
		siginfo_t si;
		memset(&si, 0, sizeof si);
		si.si_signo = SIGUSR1;
		si.si_code = SI_QUEUE;
		EXPECT_ERR("sigqueueinfo_other_uid",
			   syscall(SYS_rt_sigqueueinfo, victim, SIGUSR1, &si));
		int pfd = (int)syscall(SYS_pidfd_open, victim, 0);
		CHECK(pfd >= 0);
		EXPECT_ERR("pidfd_other_uid", syscall(SYS_pidfd_send_signal, pfd, SIGTERM, NULL, 0));
		EXPECT_ERR("sigcont_same_session", kill(victim, SIGCONT));
		EXPECT_ERR("kill_same_uid", kill(peer, SIGUSR1));
		EXPECT_ERR("kill_missing", kill(999999, SIGTERM));
		fflush(stdout);
		_exit(0);
	}
	int st;
	CHECK(waitpid(attacker, &st, 0) == attacker);
	printf("attacker exit=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);

	/* The victim lived through it all; root ends both. */
	EXPECT_ERR("victim_alive", kill(victim, 0));
	EXPECT_ERR("root_kills_victim", kill(victim, SIGKILL));
	EXPECT_ERR("root_kills_peer_group", kill(-peer, SIGKILL));
	CHECK(waitpid(victim, &st, 0) == victim);
	printf("victim: signaled=%d sig=%d\n", WIFSIGNALED(st), WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	CHECK(waitpid(peer, &st, 0) == peer);
	printf("peer: signaled=%d sig=%d\n", WIFSIGNALED(st), WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return 0;
}
