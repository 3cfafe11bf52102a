/* Unix sockets across a checkpoint: a socketpair that always holds two
 * unread lines, a worker child answering over a stream connection (it is
 * blocked in recv at the checkpoint), a listener bound to a path and one
 * bound to an abstract name, each with a connection not yet accepted, and
 * a pipe's read end in flight in an SCM_RIGHTS datagram. Each tick prints
 * a line that depends on the tick alone, so a restored run prints what an
 * uninterrupted one does; at the end the queued connections are accepted,
 * the names take new connections and the file in flight is received.
 * Usage: ckpt_unix TICKS */
#define _GNU_SOURCE
#include "sock_common.h"
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int read_line(int fd, char *buf, size_t n)
{
	size_t i = 0;
	while (i + 1 < n) {
		ssize_t r = read(fd, buf + i, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r != 1)
			return -1;
		if (buf[i] == '\n')
			break;
		i++;
	}
	buf[i] = 0;
	return 0;
}

static const char *PATH = "/tmp/cryo-ckpt-unix.sock";

int main(int argc, char **argv)
{
	int ticks = argc > 1 ? atoi(argv[1]) : 10;
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);

	/* The worker: echoes "w<n>" for each request, blocked in recv between. */
	int wk[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, wk) == 0);
	pid_t w = fork();
	CHECK(w >= 0);
	if (w == 0) {
		close(wk[0]);
		char req[16];
		int k = 0;
		ssize_t n;
		while ((n = recv(wk[1], req, sizeof req, 0)) > 0)
			dprintf(wk[1], "w%d\n", k++);
		_exit(n == 0 ? 0 : 4);
	}
	close(wk[1]);

	/* A pair that always holds two unread lines. */
	int q[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, q) == 0);
	int next = 0;
	for (; next < 2; next++)
		dprintf(q[0], "q%d\n", next);

	/* Listeners with a connection each that nobody accepts yet. */
	unlink(PATH);
	struct sockaddr_un pa, aa;
	socklen_t pl = path_addr(&pa, PATH);
	socklen_t al = abstract_addr(&aa, "cryo-ckpt-unix");
	int lp = socket(AF_UNIX, SOCK_STREAM, 0), la = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	CHECK(lp >= 0 && la >= 0);
	CHECK(bind(lp, (struct sockaddr *)&pa, pl) == 0 && listen(lp, 4) == 0);
	CHECK(bind(la, (struct sockaddr *)&aa, al) == 0 && listen(la, 4) == 0);
	int cp = socket(AF_UNIX, SOCK_STREAM, 0), ca = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	CHECK(connect(cp, (struct sockaddr *)&pa, pl) == 0);
	CHECK(connect(ca, (struct sockaddr *)&aa, al) == 0);
	CHECK(send(cp, "queued on the path", 18, 0) == 18);
	CHECK(send(ca, "queued record", 13, 0) == 13);

	/* A pipe's read end in flight, the only reference to it. */
	int d[2], p[2];
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, d) == 0);
	CHECK(pipe(p) == 0);
	CHECK(write(p[1], "in the pipe in flight", 21) == 21);
	close(p[1]);
	{
		char ctl[CMSG_SPACE(sizeof(int))];
		memset(ctl, 0, sizeof ctl);
		struct iovec iov = { "rights", 6 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				    .msg_controllen = sizeof ctl };
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &p[0], sizeof(int));
		CHECK(sendmsg(d[0], &m, 0) == 6);
	}
	close(p[0]);

	for (int i = 0; i < ticks; i++) {
		char line[64], ans[64];
		if (read_line(q[1], line, sizeof line) != 0) {
			printf("tick %d: the pair failed\n", i);
			return 3;
		}
		dprintf(q[0], "q%d\n", next++);
		if (send(wk[0], "r", 1, 0) != 1 || read_line(wk[0], ans, sizeof ans) != 0) {
			printf("tick %d: the worker failed\n", i);
			return 3;
		}
		printf("tick %d read %s worker %s\n", i, line, ans);
		sleep_ms(150);
	}

	/* The queued connections, and the names still work. */
	char buf[64];
	int sp = accept(lp, NULL, NULL);
	ssize_t n = recv(sp, buf, sizeof buf, 0);
	printf("path listener: accepted %d got %.*s\n", sp >= 0, (int)(n > 0 ? n : 0), buf);
	int sa = accept(la, NULL, NULL);
	n = recv(sa, buf, sizeof buf, 0);
	printf("abstract listener: accepted %d got %.*s\n", sa >= 0, (int)(n > 0 ? n : 0), buf);
	int c2 = socket(AF_UNIX, SOCK_STREAM, 0), c3 = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	printf("new connections: path %d abstract %d\n",
	       connect(c2, (struct sockaddr *)&pa, pl) == 0, connect(c3, (struct sockaddr *)&aa, al) == 0);
	CHECK(send(sp, "answer", 6, 0) == 6);
	n = recv(cp, buf, sizeof buf, 0);
	printf("answer over the restored connection: %.*s\n", (int)(n > 0 ? n : 0), buf);

	/* The file in flight. */
	char ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { buf, sizeof buf };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = sizeof ctl };
	n = recvmsg(d[1], &m, 0);
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	int got = -1;
	if (c && c->cmsg_type == SCM_RIGHTS)
		memcpy(&got, CMSG_DATA(c), sizeof got);
	char pbuf[64];
	ssize_t pn = got >= 0 ? read(got, pbuf, sizeof pbuf) : -1;
	printf("in flight: %zd bytes, a file %d, pipe says %.*s\n", n, got >= 0,
	       (int)(pn > 0 ? pn : 0), pbuf);

	/* The pair still holds its two lines; the worker ends at EOF. */
	int left = 0;
	while (left < 2 && read_line(q[1], buf, sizeof buf) == 0)
		left++;
	printf("pair lines left %d\n", left);
	close(wk[0]);
	int st;
	CHECK(waitpid(w, &st, 0) == w);
	printf("worker exit %d\n", WEXITSTATUS(st));
	unlink(PATH);
	return 0;
}
