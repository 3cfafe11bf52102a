/* Ten thousand sockets: 5,000 socketpairs (RLIMIT_NOFILE raised to fit)
 * each carrying a byte both ways, 1,000 connections queued at one
 * listener and accepted, then everything closed; socket(2) past the
 * descriptor limit is EMFILE. */
#define _GNU_SOURCE
#include "sock_common.h"
#include <sys/resource.h>

#define PAIRS 5000
#define CONNS 1000

static int fds[2 * PAIRS + 2 * CONNS + 16];

int main(void)
{
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	rl.rlim_cur = 2 * PAIRS + 2 * CONNS + 64;
	if (rl.rlim_max < rl.rlim_cur)
		rl.rlim_max = rl.rlim_cur;
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	int ok = 0;
	for (int i = 0; i < PAIRS; i++) {
		CHECK(socketpair(AF_UNIX, i % 2 ? SOCK_DGRAM : SOCK_STREAM, 0, &fds[2 * i]) == 0);
		char c = (char)i, d = 0;
		if (write(fds[2 * i], &c, 1) == 1 && read(fds[2 * i + 1], &d, 1) == 1 && d == c &&
		    write(fds[2 * i + 1], &c, 1) == 1 && read(fds[2 * i], &d, 1) == 1 && d == c)
			ok++;
	}
	printf("pairs=%d ok=%d\n", PAIRS, ok);
	struct sockaddr_un a;
	socklen_t al = abstract_addr(&a, "cryo-many");
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(l >= 0 && bind(l, (struct sockaddr *)&a, al) == 0 && listen(l, CONNS) == 0);
	int connected = 0, accepted = 0;
	for (int i = 0; i < CONNS; i++) {
		int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
		CHECK(c >= 0);
		fds[2 * PAIRS + i] = c;
		if (connect(c, (struct sockaddr *)&a, al) == 0)
			connected++;
	}
	for (int i = 0; i < CONNS; i++) {
		int s = accept(l, NULL, NULL);
		if (s >= 0) {
			accepted++;
			fds[2 * PAIRS + CONNS + i] = s;
		}
	}
	printf("connected=%d accepted=%d\n", connected, accepted);
	/* The descriptor limit. */
	rl.rlim_cur = 2 * PAIRS + 2 * CONNS + 4;
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	int more = 0;
	errno = 0;
	while (socket(AF_UNIX, SOCK_DGRAM, 0) >= 0)
		more++;
	printf("then_stops_with=%s\n", serrname(errno));
	for (int i = 0; i < 2 * PAIRS + 2 * CONNS; i++)
		close(fds[i]);
	close(l);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	printf("after_closing_all=%d\n", s >= 0);
	return 0;
}
