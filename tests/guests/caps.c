/* Capabilities as credentials (capabilities(7)), run as root: capget and
 * capset with their three header versions and EPERM rules; each privilege
 * dropped in turn and what it stood for refused (chown: EPERM, a 0600
 * file of another uid: EACCES, kill of another uid: EPERM, bind of port
 * 80: EACCES, sethostname: EPERM); the bounding and ambient sets,
 * keepcaps and securebits through prctl; the setuid family's effect on
 * the sets; and execve's (root regains its bounding set, a non-root user
 * keeps only its ambient set, no_new_privs gains nothing). Every case runs
 * in a child of its own so that no drop leaks into the next.
 * Usage: caps [--report] (the exec'd form prints its sets and exits). */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_IS_SET 1
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_LOWER 3
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#define SECBIT_NOROOT (1 << 0)
#define SECBIT_NOROOT_LOCKED (1 << 1)
#define SECBIT_KEEP_CAPS (1 << 4)

static char dir[64];
static const char *self;

static const char *at(const char *name)
{
	static char buf[128];
	snprintf(buf, sizeof buf, "%s/%s", dir, name);
	return buf;
}

static int get_caps(int version, struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = { .version = version, .pid = 0 };
	memset(d, 0, 2 * sizeof *d);
	return (int)syscall(SYS_capget, &h, d);
}

static int set_caps(unsigned long long eff, unsigned long long prm, unsigned long long inh)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2] = {
		{ (unsigned)eff, (unsigned)prm, (unsigned)inh },
		{ (unsigned)(eff >> 32), (unsigned)(prm >> 32), (unsigned)(inh >> 32) },
	};
	return (int)syscall(SYS_capset, &h, d);
}

static unsigned long long eff_now(void)
{
	struct __user_cap_data_struct d[2];
	CHECK(get_caps(_LINUX_CAPABILITY_VERSION_3, d) == 0);
	return d[0].effective | (unsigned long long)d[1].effective << 32;
}

static unsigned long long prm_now(void)
{
	struct __user_cap_data_struct d[2];
	CHECK(get_caps(_LINUX_CAPABILITY_VERSION_3, d) == 0);
	return d[0].permitted | (unsigned long long)d[1].permitted << 32;
}

#define BIT(c) (1ULL << (c))

/* Drops `caps` from the effective set only (they stay permitted). */
static void drop_eff(unsigned long long caps)
{
	CHECK(set_caps(eff_now() & ~caps, prm_now(), 0) == 0);
}

/* The Cap* and NoNewPrivs lines of /proc/self/status, prefixed. */
static void status(const char *label)
{
	FILE *f = fopen("/proc/self/status", "r");
	CHECK(f != NULL);
	char line[256];
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs", 10))
			printf("%s %s", label, line);
	fclose(f);
}

/* Runs fn in a child and prints how it ended. */
static void in_child(const char *label, void (*fn)(void))
{
	fflush(stdout);
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		fn();
		fflush(stdout);
		_exit(0);
	}
	int st;
	CHECK(waitpid(c, &st, 0) == c);
	printf("%s: exit=%d\n", label, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* Execs this program with --report from the child, which prints its sets. */
static void exec_report(void)
{
	fflush(stdout);
	char *argv[] = { (char *)self, "--report", NULL };
	execv(self, argv);
	printf("execv: %s\n", errname(errno));
	fflush(stdout);
	_exit(3);
}

static void header_versions(void)
{
	struct __user_cap_header_struct h = { .version = 0x12345678, .pid = 0 };
	struct __user_cap_data_struct d[2];
	EXPECT_ERR("capget_bad_version", syscall(SYS_capget, &h, d));
	printf("preferred version=%#x\n", h.version);
	h.version = 0x12345678;
	EXPECT_ERR("capget_probe_null_data", syscall(SYS_capget, &h, NULL));
	printf("probe version=%#x\n", h.version);
	EXPECT_ERR("capget_v1", get_caps(_LINUX_CAPABILITY_VERSION_1, d));
	printf("v1: eff_low_eq_prm_low=%d upper_untouched=%d\n",
	       d[0].effective == d[0].permitted, d[1].effective == 0 && d[1].permitted == 0);
	EXPECT_ERR("capget_v2", get_caps(_LINUX_CAPABILITY_VERSION_2, d));
	EXPECT_ERR("capget_v3", get_caps(_LINUX_CAPABILITY_VERSION_3, d));
	printf("v3: eff_eq_prm=%d inh=%u\n",
	       d[0].effective == d[0].permitted && d[1].effective == d[1].permitted,
	       d[0].inheritable | d[1].inheritable);
	h.version = _LINUX_CAPABILITY_VERSION_3;
	h.pid = -1;
	EXPECT_ERR("capget_negative_pid", syscall(SYS_capget, &h, d));
	h.pid = 999999;
	EXPECT_ERR("capget_missing_pid", syscall(SYS_capget, &h, d));
	h.pid = getppid() == 1 ? 1 : getppid();
	EXPECT_ERR("capset_other_pid", syscall(SYS_capset, &h, d));
}

static void capset_rules(void)
{
	unsigned long long prm = prm_now();
	EXPECT_ERR("capset_eff_beyond_prm", set_caps(BIT(CAP_CHOWN), 0, 0));
	EXPECT_ERR("capset_drop_prm_chown", set_caps(prm & ~BIT(CAP_CHOWN), prm & ~BIT(CAP_CHOWN), 0));
	EXPECT_ERR("capset_regain_prm_chown", set_caps(prm, prm, 0));
	EXPECT_ERR("capset_inh_from_prm", set_caps(0, prm & ~BIT(CAP_CHOWN), BIT(CAP_KILL)));
	EXPECT_ERR("capset_inh_not_prm_no_setpcap", set_caps(0, BIT(CAP_KILL), BIT(CAP_KILL) | BIT(CAP_FOWNER)));
	status("after_capset");
}

static void chown_without_cap(void)
{
	EXPECT_ERR("chown_with_cap", chown(at("f"), 1234, -1));
	drop_eff(BIT(CAP_CHOWN));
	EXPECT_ERR("chown_without_cap", chown(at("f"), 4321, -1));
	EXPECT_ERR("chgrp_without_cap", chown(at("f"), -1, 4321));
	CHECK(set_caps(prm_now(), prm_now(), 0) == 0);
	EXPECT_ERR("chown_raised_again", chown(at("f"), 0, 0));
}

static void dac_without_cap(void)
{
	/* secret: uid 1000, mode 0600; dir700: uid 1000, mode 0700. */
	int fd = open(at("secret"), O_RDWR);
	printf("open_rw_with_dac_override: %s\n", fd >= 0 ? "OK" : errname(errno));
	if (fd >= 0)
		close(fd);
	drop_eff(BIT(CAP_DAC_OVERRIDE));
	fd = open(at("secret"), O_RDONLY);
	printf("open_ro_with_read_search: %s\n", fd >= 0 ? "OK" : errname(errno));
	if (fd >= 0)
		close(fd);
	fd = open(at("secret"), O_WRONLY);
	printf("open_wo_with_read_search: %s\n", fd >= 0 ? "OK" : errname(errno));
	EXPECT_ERR("stat_in_dir700_read_search", access(at("dir700/x"), F_OK));
	drop_eff(BIT(CAP_DAC_READ_SEARCH));
	fd = open(at("secret"), O_RDONLY);
	printf("open_ro_without_dac: %s\n", fd >= 0 ? "OK" : errname(errno));
	struct stat st;
	EXPECT_ERR("stat_in_dir700_without_dac", stat(at("dir700/x"), &st));
	/* Without CAP_FOWNER, root is not the owner of uid 1000's file. */
	EXPECT_ERR("chmod_with_fowner", chmod(at("secret"), 0600));
	drop_eff(BIT(CAP_FOWNER));
	EXPECT_ERR("chmod_without_fowner", chmod(at("secret"), 0644));
}

static void kill_without_cap(void)
{
	int p[2];
	CHECK(pipe(p) == 0);
	pid_t v = fork();
	CHECK(v >= 0);
	if (v == 0) {
		CHECK(setresuid(1000, 1000, 1000) == 0);
		CHECK(write(p[1], "r", 1) == 1);
		for (;;)
			pause();
	}
	char c;
	CHECK(read(p[0], &c, 1) == 1);
	EXPECT_ERR("kill_with_cap_sig0", kill(v, 0));
	drop_eff(BIT(CAP_KILL));
	EXPECT_ERR("kill_without_cap", kill(v, SIGTERM));
	CHECK(set_caps(prm_now(), prm_now(), 0) == 0);
	EXPECT_ERR("kill_raised_again", kill(v, SIGKILL));
	int st;
	CHECK(waitpid(v, &st, 0) == v);
	printf("victim: sig=%d\n", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void bind_and_hostname_without_cap(void)
{
	drop_eff(BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_SYS_ADMIN));
	int s = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(s >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(80) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	EXPECT_ERR("bind_80_without_cap", bind(s, (struct sockaddr *)&a, sizeof a));
	a.sin_port = 0;
	EXPECT_ERR("bind_any_port_without_cap", bind(s, (struct sockaddr *)&a, sizeof a));
	close(s);
	EXPECT_ERR("sethostname_without_cap", sethostname("caps-guest", 10));
	EXPECT_ERR("setdomainname_without_cap", setdomainname("caps-guest", 10));
	static char long_name[100];
	memset(long_name, 'x', sizeof long_name);
	EXPECT_ERR("sethostname_too_long_without_cap", sethostname(long_name, sizeof long_name));
}

static void bounding_set(void)
{
	EXPECT_ERR("bset_read_sys_admin", prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0));
	EXPECT_ERR("bset_read_invalid", prctl(PR_CAPBSET_READ, 999, 0, 0, 0));
	EXPECT_ERR("bset_drop_sys_admin", prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0));
	EXPECT_ERR("bset_read_after_drop", prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0));
	EXPECT_ERR("bset_drop_invalid", prctl(PR_CAPBSET_DROP, 999, 0, 0, 0));
	/* Still effective until execve, which rebuilds from the bounding set. */
	printf("sys_admin_still_effective=%d\n", (eff_now() & BIT(CAP_SYS_ADMIN)) != 0);
	drop_eff(BIT(CAP_SETPCAP));
	EXPECT_ERR("bset_drop_without_setpcap", prctl(PR_CAPBSET_DROP, CAP_KILL, 0, 0, 0));
	/* Root's execve: permitted = effective = bounding, whatever it dropped. */
	exec_report();
}

static void ambient_set(void)
{
	EXPECT_ERR("ambient_is_set", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0));
	EXPECT_ERR("ambient_raise_not_inheritable",
		   prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0));
	unsigned long long prm = prm_now();
	CHECK(set_caps(prm, prm, BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_KILL)) == 0);
	EXPECT_ERR("ambient_raise", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0));
	EXPECT_ERR("ambient_raise_kill", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_KILL, 0, 0));
	EXPECT_ERR("ambient_is_set_after", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0));
	EXPECT_ERR("ambient_lower_kill", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, CAP_KILL, 0, 0));
	EXPECT_ERR("ambient_bad_op", prctl(PR_CAP_AMBIENT, 99, CAP_KILL, 0, 0));
	EXPECT_ERR("ambient_bad_cap", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, 999, 0, 0));
	EXPECT_ERR("ambient_clear_extra_arg", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 1, 0, 0));
	status("ambient");
	/* Dropping inheritable drops it from ambient too. */
	CHECK(set_caps(prm, prm, BIT(CAP_NET_BIND_SERVICE)) == 0);
	EXPECT_ERR("ambient_still_set", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0));
	/* A non-root user keeping caps (keepcaps), then exec: only ambient. */
	CHECK(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == 0);
	CHECK(setresuid(1000, 1000, 1000) == 0);
	EXPECT_ERR("ambient_after_setuid_cleared",
		   prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0));
	CHECK(set_caps(BIT(CAP_NET_BIND_SERVICE), prm_now(), BIT(CAP_NET_BIND_SERVICE)) == 0);
	CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) == 0);
	status("before_exec_user");
	exec_report();
}

static void keepcaps_and_setuid(void)
{
	EXPECT_ERR("get_keepcaps", prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));
	EXPECT_ERR("set_keepcaps_bad", prctl(PR_SET_KEEPCAPS, 2, 0, 0, 0));
	/* seteuid away from 0 and back: effective cleared, then restored. */
	CHECK(setresuid(-1, 1000, -1) == 0);
	printf("euid1000: eff=%llx prm_kept=%d\n", eff_now(), prm_now() != 0);
	CHECK(setresuid(-1, 0, -1) == 0);
	printf("euid0_again: eff_eq_prm=%d\n", eff_now() == prm_now());
	/* keepcaps over a full setuid: permitted kept, effective cleared. */
	CHECK(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == 0);
	EXPECT_ERR("get_keepcaps_set", prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));
	EXPECT_ERR("securebits_show_keepcaps", prctl(PR_GET_SECUREBITS, 0, 0, 0, 0));
	CHECK(setresuid(1000, 1000, 1000) == 0);
	printf("keepcaps_setuid: eff=%llx prm_kept=%d\n", eff_now(), prm_now() != 0);
	EXPECT_ERR("setuid0_without_eff", setuid(0));
	/* Raise CAP_SETUID from the kept permitted set: now setuid(0) works. */
	CHECK(set_caps(BIT(CAP_SETUID), prm_now(), 0) == 0);
	EXPECT_ERR("setuid0_with_setuid_cap", setresuid(0, 0, 0));
	printf("back_to_root: eff_eq_prm=%d\n", eff_now() == prm_now());
	/* Without keepcaps, all caps go. */
	CHECK(prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) == 0);
	CHECK(setresuid(2000, 2000, 2000) == 0);
	printf("plain_setuid: eff=%llx prm=%llx\n", eff_now(), prm_now());
	status("plain_setuid");
	EXPECT_ERR("setuid_back_refused", setuid(0));
	EXPECT_ERR("setgroups_refused", setgroups(0, NULL));
	EXPECT_ERR("capset_regain_refused", set_caps(BIT(CAP_CHOWN), BIT(CAP_CHOWN), 0));
	EXPECT_ERR("bind_80_as_user", ({
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(80) };
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		bind(s, (struct sockaddr *)&a, sizeof a);
	}));
}

static void securebits(void)
{
	EXPECT_ERR("get_securebits", prctl(PR_GET_SECUREBITS, 0, 0, 0, 0));
	EXPECT_ERR("set_unknown_bit", prctl(PR_SET_SECUREBITS, 1 << 20, 0, 0, 0));
	EXPECT_ERR("set_noroot_locked", prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0));
	EXPECT_ERR("get_after", prctl(PR_GET_SECUREBITS, 0, 0, 0, 0));
	EXPECT_ERR("clear_locked_noroot", prctl(PR_SET_SECUREBITS, SECBIT_NOROOT_LOCKED, 0, 0, 0));
	EXPECT_ERR("release_lock", prctl(PR_SET_SECUREBITS, SECBIT_NOROOT, 0, 0, 0));
	EXPECT_ERR("add_keepcaps", prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS, 0, 0, 0));
	/* SECBIT_NOROOT: root's execve gives nothing. */
	CHECK(prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0) == 0);
	exec_report();
}

static void no_new_privs_exec(void)
{
	/* Drop CAP_KILL from permitted, then under no_new_privs root's exec
	 * cannot regain it from the bounding set. */
	unsigned long long prm = prm_now() & ~BIT(CAP_KILL);
	CHECK(set_caps(prm, prm, 0) == 0);
	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	exec_report();
}

static void root_exec_after_drop(void)
{
	/* Without no_new_privs root's exec regains what it dropped. */
	unsigned long long prm = prm_now() & ~BIT(CAP_KILL);
	CHECK(set_caps(0, prm, 0) == 0);
	exec_report();
}

int main(int argc, char **argv)
{
	self = argv[0];
	if (argc > 1 && !strcmp(argv[1], "--report")) {
		status("exec");
		printf("exec: uid=%u euid=%u eff_eq_prm=%d\n", getuid(), geteuid(), eff_now() == prm_now());
		return 0;
	}
	CHECK(geteuid() == 0);
	status("start");
	make_tmpdir("caps", dir, sizeof dir);
	int fd = open(at("f"), O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0);
	close(fd);
	fd = open(at("secret"), O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	close(fd);
	CHECK(chown(at("secret"), 1000, 1000) == 0);
	CHECK(mkdir(at("dir700"), 0700) == 0);
	fd = open(at("dir700/x"), O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0);
	close(fd);
	CHECK(chown(at("dir700"), 1000, 1000) == 0);

	in_child("header_versions", header_versions);
	in_child("capset_rules", capset_rules);
	in_child("chown", chown_without_cap);
	in_child("dac", dac_without_cap);
	in_child("kill", kill_without_cap);
	in_child("bind_hostname", bind_and_hostname_without_cap);
	in_child("bounding", bounding_set);
	in_child("ambient", ambient_set);
	in_child("keepcaps", keepcaps_and_setuid);
	in_child("securebits", securebits);
	in_child("no_new_privs", no_new_privs_exec);
	in_child("root_exec", root_exec_after_drop);

	unlink(at("dir700/x"));
	rmdir(at("dir700"));
	unlink(at("secret"));
	unlink(at("f"));
	rmdir(dir);
	return 0;
}
