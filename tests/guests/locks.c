/* Advisory locks within one process, compared with Linux: OFD locks of two
 * open file descriptions of one file conflict with each other and with
 * the process's POSIX locks; F_GETLK and F_OFD_GETLK report the conflict
 * (l_pid -1 for an OFD lock, the range as SEEK_SET with l_len 0 to EOF);
 * POSIX locks split and merge and go when the process closes ANY
 * descriptor of the file; an OFD lock goes when the last descriptor of
 * its description closes; flock(2) is per description and apart from
 * record locks; the errors (EBADF, EINVAL, EFAULT, EAGAIN) are Linux's;
 * F_OFD_SETLKW and flock block until the lock is free, and a handled
 * signal ends the wait with EINTR. */
#define _GNU_SOURCE
#include "common.h"
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <time.h>

static const char *type_name(short t)
{
	switch (t) {
	case F_RDLCK: return "RDLCK";
	case F_WRLCK: return "WRLCK";
	case F_UNLCK: return "UNLCK";
	default: return "?";
	}
}

static int lk(int fd, int cmd, short type, short whence, off_t start, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = whence, .l_start = start, .l_len = len };
	return fcntl(fd, cmd, &fl) == 0 ? 0 : errno;
}

/* Prints what F_GETLK-style `cmd` on fd says of a write lock of the range. */
static void show(const char *what, int fd, int cmd, off_t start, off_t len)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	if (fcntl(fd, cmd, &fl) != 0) {
		printf("%s: %s\n", what, errname(errno));
		return;
	}
	if (fl.l_type == F_UNLCK) {
		printf("%s: UNLCK\n", what);
		return;
	}
	printf("%s: %s start %lld len %lld pid %s whence %d\n", what, type_name(fl.l_type),
	       (long long)fl.l_start, (long long)fl.l_len,
	       fl.l_pid == -1 ? "-1" : (fl.l_pid == getpid() ? "self" : "other"), fl.l_whence);
}

static int sigfd = -1;
static pthread_t main_thread;
static void on_usr1(int s) { (void)s; }

static void *interrupt_later(void *arg)
{
	(void)arg;
	struct timespec d = { 0, 150 * 1000 * 1000 };
	nanosleep(&d, NULL);
	pthread_kill(main_thread, SIGUSR1);
	return NULL;
}

static void *unlock_later(void *arg)
{
	struct timespec d = { 0, 150 * 1000 * 1000 };
	nanosleep(&d, NULL);
	CHECK(lk(*(int *)arg, F_OFD_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0);
	return NULL;
}

static void *flock_unlock_later(void *arg)
{
	struct timespec d = { 0, 150 * 1000 * 1000 };
	nanosleep(&d, NULL);
	CHECK(flock(*(int *)arg, LOCK_UN) == 0);
	return NULL;
}

int main(void)
{
	char path[] = "/tmp/cryo-locks-XXXXXX";
	int a = mkstemp(path);
	CHECK(a >= 0);
	char buf[100] = { 0 };
	CHECK(write(a, buf, sizeof buf) == sizeof buf);
	int b = open(path, O_RDWR);
	int ro = open(path, O_RDONLY);
	int wo = open(path, O_WRONLY);
	CHECK(b >= 0 && ro >= 0 && wo >= 0);
	main_thread = pthread_self();
	struct sigaction sa = { .sa_handler = on_usr1 };
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

	/* Errors. */
	printf("write lock on O_RDONLY: %s\n", errname(lk(ro, F_SETLK, F_WRLCK, SEEK_SET, 0, 1)));
	printf("read lock on O_WRONLY: %s\n", errname(lk(wo, F_SETLK, F_RDLCK, SEEK_SET, 0, 1)));
	printf("unlock on O_RDONLY: %s\n", errname(lk(ro, F_SETLK, F_UNLCK, SEEK_SET, 0, 1)));
	printf("bad l_type: %s\n", errname(lk(a, F_SETLK, 7, SEEK_SET, 0, 1)));
	printf("bad l_whence: %s\n", errname(lk(a, F_SETLK, F_WRLCK, 9, 0, 1)));
	printf("negative start: %s\n", errname(lk(a, F_SETLK, F_WRLCK, SEEK_SET, -1, 1)));
	printf("negative len before 0: %s\n", errname(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 2, -3)));
	printf("GETLK of F_UNLCK: %s\n", errname(lk(a, F_GETLK, F_UNLCK, SEEK_SET, 0, 1)));
	printf("bad pointer: %s\n", fcntl(a, F_SETLK, (void *)8) == 0 ? "OK" : errname(errno));
	printf("bad fd: %s\n", errname(lk(999, F_SETLK, F_WRLCK, SEEK_SET, 0, 1)));
	{
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_len = 1, .l_pid = 1 };
		printf("OFD with l_pid: %s\n", fcntl(a, F_OFD_SETLK, &fl) == 0 ? "OK" : errname(errno));
		printf("OFD GETLK with l_pid: %s\n", fcntl(a, F_OFD_GETLK, &fl) == 0 ? "OK" : errname(errno));
	}

	/* OFD locks of two descriptions conflict. */
	printf("OFD write 0..9 on a: %s\n", errname(lk(a, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 10)));
	printf("OFD write 5 on b: %s\n", errname(lk(b, F_OFD_SETLK, F_WRLCK, SEEK_SET, 5, 1)));
	printf("OFD read 10.. on b: %s\n", errname(lk(b, F_OFD_SETLK, F_RDLCK, SEEK_SET, 10, 0)));
	show("OFD GETLK b 0..", b, F_OFD_GETLK, 0, 0);
	show("OFD GETLK a 0..", a, F_OFD_GETLK, 0, 0);
	show("POSIX GETLK 0..", a, F_GETLK, 0, 0);
	printf("POSIX write 3 (vs OFD): %s\n", errname(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 3, 1)));
	CHECK(lk(a, F_OFD_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0);
	CHECK(lk(b, F_OFD_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0);
	show("after OFD unlocks", b, F_OFD_GETLK, 0, 0);

	/* POSIX: split and merge, seen from another description. */
	CHECK(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 0, 100) == 0);
	CHECK(lk(a, F_SETLK, F_UNLCK, SEEK_SET, 40, 20) == 0);
	show("own POSIX lock via F_GETLK", b, F_GETLK, 0, 0);
	show("split 0..", b, F_OFD_GETLK, 0, 0);
	show("split 40..59", b, F_OFD_GETLK, 40, 20);
	show("split 60..", b, F_OFD_GETLK, 60, 0);
	CHECK(lk(a, F_SETLK, F_RDLCK, SEEK_SET, 40, 20) == 0);
	show("read hole 45", b, F_OFD_GETLK, 45, 1);
	CHECK(lk(a, F_SETLK, F_WRLCK, SEEK_SET, 30, 40) == 0);
	show("merged 0..", b, F_OFD_GETLK, 0, 0);
	/* SEEK_END and SEEK_CUR with negative lengths. */
	CHECK(lk(a, F_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0);
	CHECK(lk(a, F_SETLK, F_WRLCK, SEEK_END, -10, 0) == 0);
	show("SEEK_END -10 len 0", b, F_OFD_GETLK, 0, 0);
	CHECK(lseek(a, 50, SEEK_SET) == 50);
	CHECK(lk(a, F_SETLK, F_RDLCK, SEEK_CUR, 0, -20) == 0);
	show("SEEK_CUR len -20", b, F_OFD_GETLK, 0, 0);
	/* Closing ANY descriptor of the file drops the process's locks. */
	int c = open(path, O_RDONLY);
	CHECK(c >= 0);
	CHECK(close(c) == 0);
	show("after closing another fd", b, F_OFD_GETLK, 0, 0);

	/* An OFD lock lives while a descriptor of its description does. */
	CHECK(lk(a, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 1) == 0);
	int a2 = dup(a);
	CHECK(a2 >= 0);
	CHECK(close(a) == 0);
	show("OFD after closing one dup", b, F_OFD_GETLK, 0, 0);
	CHECK(close(a2) == 0);
	show("OFD after closing the last", b, F_OFD_GETLK, 0, 0);
	a = open(path, O_RDWR);
	CHECK(a >= 0);

	/* flock: per description, apart from record locks. */
	printf("flock EX a: %s\n", flock(a, LOCK_EX) == 0 ? "OK" : errname(errno));
	printf("flock EX|NB b: %s\n", flock(b, LOCK_EX | LOCK_NB) == 0 ? "OK" : errname(errno));
	printf("flock SH|NB b: %s\n", flock(b, LOCK_SH | LOCK_NB) == 0 ? "OK" : errname(errno));
	printf("OFD write on b beside flock: %s\n", errname(lk(b, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 0)));
	CHECK(lk(b, F_OFD_SETLK, F_UNLCK, SEEK_SET, 0, 0) == 0);
	printf("flock bad op: %s\n", flock(a, 0) == 0 ? "OK" : errname(errno));
	printf("flock bad fd: %s\n", flock(999, LOCK_SH) == 0 ? "OK" : errname(errno));
	int ad = dup(a);
	printf("flock UN via dup: %s\n", flock(ad, LOCK_UN) == 0 ? "OK" : errname(errno));
	printf("flock EX|NB b now: %s\n", flock(b, LOCK_EX | LOCK_NB) == 0 ? "OK" : errname(errno));
	printf("flock SH|NB ro: %s\n", flock(ro, LOCK_SH | LOCK_NB) == 0 ? "OK" : errname(errno));
	CHECK(close(ad) == 0);

	/* Blocking: flock waits for b's unlock from another thread. */
	pthread_t th;
	CHECK(pthread_create(&th, NULL, flock_unlock_later, &b) == 0);
	printf("flock EX a waits: %s\n", flock(a, LOCK_EX) == 0 ? "OK" : errname(errno));
	CHECK(pthread_join(th, NULL) == 0);
	/* A signal ends a blocked flock with EINTR. */
	CHECK(pthread_create(&th, NULL, interrupt_later, NULL) == 0);
	printf("flock EX b interrupted: %s\n", flock(b, LOCK_EX) == 0 ? "OK" : errname(errno));
	CHECK(pthread_join(th, NULL) == 0);
	CHECK(flock(a, LOCK_UN) == 0);

	/* F_OFD_SETLKW: waits for the unlock, or ends with EINTR. */
	CHECK(lk(a, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 0) == 0);
	CHECK(pthread_create(&th, NULL, unlock_later, &a) == 0);
	printf("OFD SETLKW waits: %s\n", errname(lk(b, F_OFD_SETLKW, F_WRLCK, SEEK_SET, 0, 0)));
	CHECK(pthread_join(th, NULL) == 0);
	show("b holds it", a, F_OFD_GETLK, 0, 0);
	CHECK(pthread_create(&th, NULL, interrupt_later, NULL) == 0);
	printf("OFD SETLKW interrupted: %s\n", errname(lk(a, F_OFD_SETLKW, F_RDLCK, SEEK_SET, 7, 1)));
	CHECK(pthread_join(th, NULL) == 0);
	/* POSIX F_SETLKW against the OFD lock is interrupted too. */
	CHECK(pthread_create(&th, NULL, interrupt_later, NULL) == 0);
	printf("POSIX SETLKW interrupted: %s\n", errname(lk(a, F_SETLKW, F_RDLCK, SEEK_SET, 7, 1)));
	CHECK(pthread_join(th, NULL) == 0);
	(void)sigfd;
	CHECK(unlink(path) == 0);
	return 0;
}
