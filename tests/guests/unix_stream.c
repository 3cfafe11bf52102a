/* AF_UNIX stream sockets: socketpair, a named listener with accept,
 * partial reads, MSG_PEEK, MSG_WAITALL, MSG_DONTWAIT, shutdown halves,
 * EOF, EPIPE with SIGPIPE (a handler counts it) and without
 * (MSG_NOSIGNAL), ECONNRESET when closed with unread data, poll bits,
 * FIONREAD/TIOCOUTQ, socket options, fstat and /proc/self/fd links, and a
 * full send buffer. */
#define _GNU_SOURCE
#include "sock_common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

static volatile int sigpipes;
static void on_pipe(int s) { (void)s; sigpipes++; }

static void show_poll(const char *label, int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP };
	int n = poll(&p, 1, 0);
	printf("%s: n=%d in=%d out=%d hup=%d rdhup=%d err=%d\n", label, n,
	       !!(p.revents & POLLIN), !!(p.revents & POLLOUT),
	       !!(p.revents & POLLHUP), !!(p.revents & POLLRDHUP),
	       !!(p.revents & POLLERR));
}

static int getint(int fd, int opt)
{
	int v = -7;
	socklen_t l = sizeof v;
	if (getsockopt(fd, SOL_SOCKET, opt, &v, &l) != 0)
		return -errno;
	return v;
}

int main(void)
{
	signal(SIGPIPE, on_pipe);
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	printf("cloexec=%d nonblock=%d accmode=%d\n", fcntl(sv[0], F_GETFD),
	       !!(fcntl(sv[0], F_GETFL) & O_NONBLOCK), fcntl(sv[0], F_GETFL) & O_ACCMODE);
	struct stat st;
	CHECK(fstat(sv[0], &st) == 0);
	printf("fstat_sock=%d\n", S_ISSOCK(st.st_mode));
	char link[64], want[64];
	ssize_t ln = readlink("/proc/self/fd/3", link, sizeof link - 1);
	if (ln > 0) {
		link[ln] = 0;
		snprintf(want, sizeof want, "socket:[%lu]", (unsigned long)st.st_ino);
		printf("fd_link_is_socket=%d\n", strcmp(link, want) == 0 || sv[0] != 3);
	} else {
		printf("fd_link_is_socket=%s\n", errname(errno));
	}
	printf("type=%d domain=%d protocol=%d acceptconn=%d error=%d passcred=%d\n",
	       getint(sv[0], SO_TYPE), getint(sv[0], SO_DOMAIN), getint(sv[0], SO_PROTOCOL),
	       getint(sv[0], SO_ACCEPTCONN), getint(sv[0], SO_ERROR), getint(sv[0], SO_PASSCRED));
	printf("sndbuf_default=%d\n", getint(sv[0], SO_SNDBUF));
	int v = 10000;
	CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == 0);
	printf("sndbuf_10000=%d\n", getint(sv[0], SO_SNDBUF));
	v = 1;
	CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == 0);
	printf("sndbuf_min=%d\n", getint(sv[0], SO_SNDBUF));
	v = 212992;
	CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == 0);
	SEXPECT("getsockopt_bad_level", getsockopt(sv[0], 6 /* SOL_TCP */, 1, &v, &(socklen_t){4}));
	SEXPECT("getsockopt_unknown", getsockopt(sv[0], SOL_SOCKET, 9999, &v, &(socklen_t){4}));
	SEXPECT("setsockopt_short", setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &v, 2));
	struct ucred uc;
	socklen_t ul = sizeof uc;
	CHECK(getsockopt(sv[0], SOL_SOCKET, SO_PEERCRED, &uc, &ul) == 0);
	printf("peercred_pid_is_me=%d uid=%u gid=%u len=%u\n", uc.pid == getpid(), uc.uid,
	       uc.gid, ul);
	show_poll("fresh_pair", sv[0]);

	/* Data both ways, partial reads, peek. */
	printf("write=%zd\n", write(sv[0], "hello world", 11));
	int q = -1;
	CHECK(ioctl(sv[1], FIONREAD, &q) == 0);
	printf("fionread=%d\n", q);
	CHECK(ioctl(sv[0], TIOCOUTQ, &q) == 0);
	/* Linux counts the buffers' overhead too: only "some" is the same. */
	printf("outq_some=%d\n", q >= 11);
	show_poll("with_data", sv[1]);
	char buf[64];
	ssize_t n = recv(sv[1], buf, 5, MSG_PEEK);
	printf("peek=%zd %.*s\n", n, (int)n, buf);
	n = read(sv[1], buf, 5);
	printf("read=%zd %.*s\n", n, (int)n, buf);
	n = recv(sv[1], buf, sizeof buf, 0);
	printf("recv=%zd %.*s\n", n, (int)n, buf);
	CHECK(ioctl(sv[0], TIOCOUTQ, &q) == 0);
	printf("outq_after=%d\n", q);
	SEXPECT("recv_dontwait_empty", recv(sv[1], buf, sizeof buf, MSG_DONTWAIT));
	/* Two writes are read as one stream. */
	CHECK(send(sv[1], "ab", 2, 0) == 2);
	CHECK(send(sv[1], "cd", 2, 0) == 2);
	n = recv(sv[0], buf, sizeof buf, 0);
	printf("merged=%zd %.*s\n", n, (int)n, buf);
	SEXPECT("lseek", lseek(sv[0], 0, SEEK_SET));

	/* MSG_WAITALL from a child that writes in pieces. */
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		for (int i = 0; i < 4; i++) {
			usleep(20000);
			if (write(sv[1], "0123", 4) != 4)
				_exit(1);
		}
		_exit(0);
	}
	n = recv(sv[0], buf, 16, MSG_WAITALL);
	printf("waitall=%zd %.*s\n", n, (int)n, buf);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);

	/* Half-close: SHUT_WR on one side is EOF on the other, which can
	 * still write back. */
	CHECK(shutdown(sv[0], SHUT_WR) == 0);
	show_poll("after_shut_wr_peer", sv[1]);
	n = read(sv[1], buf, sizeof buf);
	printf("eof_after_shut_wr=%zd\n", n);
	SEXPECT("write_after_shut_wr_nosignal", send(sv[0], "x", 1, MSG_NOSIGNAL));
	printf("sigpipes=%d\n", sigpipes);
	SEXPECT("write_after_shut_wr", write(sv[0], "x", 1));
	printf("sigpipes=%d\n", sigpipes);
	printf("write_back=%zd\n", write(sv[1], "back", 4));
	n = read(sv[0], buf, sizeof buf);
	printf("read_back=%zd\n", n);
	SEXPECT("shutdown_bad", shutdown(sv[0], 7));
	close(sv[0]);
	show_poll("peer_closed", sv[1]);
	SEXPECT("write_peer_closed", send(sv[1], "x", 1, MSG_NOSIGNAL));
	close(sv[1]);

	/* Closed with data unread: the peer sees ECONNRESET (SO_ERROR, or
	 * a read once the data is gone). */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(write(sv[0], "zz", 2) == 2);
	CHECK(write(sv[1], "unread", 6) == 6);
	close(sv[1]);
	show_poll("reset", sv[0]);
	printf("so_error_reset=%s\n", serrname(getint(sv[0], SO_ERROR)));
	n = read(sv[0], buf, sizeof buf);
	printf("read_after_reset=%zd\n", n);
	close(sv[0]);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(write(sv[0], "zz", 2) == 2);
	CHECK(write(sv[1], "unread", 6) == 6);
	close(sv[1]);
	n = read(sv[0], buf, sizeof buf);
	printf("data_before_reset=%zd\n", n);
	SEXPECT("read_reset", read(sv[0], buf, sizeof buf));
	SEXPECT("read_after_reset_eof", read(sv[0], buf, sizeof buf));
	close(sv[0]);

	/* A full send buffer: non-blocking writes stop with EAGAIN, all
	 * the bytes arrive. */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	v = 8192;
	CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == 0);
	static char big[4096];
	size_t sent = 0;
	while ((n = write(sv[0], big, sizeof big)) > 0)
		sent += (size_t)n;
	printf("fill_stops_with=%s bounded=%d\n", errname(errno), sent > 0 && sent < 1000000);
	show_poll("full_writer", sv[0]);
	size_t got = 0;
	while ((n = read(sv[1], big, sizeof big)) > 0)
		got += (size_t)n;
	printf("drained_all=%d\n", got == sent);
	show_poll("drained_writer", sv[0]);
	close(sv[0]);
	close(sv[1]);

	/* epoll: IN when data comes, RDHUP then HUP as the peer shuts down
	 * and closes, and a blocked epoll_wait woken by a child's write. */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u32 = 7 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) == 0);
	struct epoll_event out;
	int en = epoll_wait(ep, &out, 1, 0);
	printf("epoll_idle=%d events=%x\n", en, en > 0 ? out.events : 0);
	ev.events = EPOLLIN | EPOLLRDHUP;
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, sv[0], &ev) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		usleep(30000);
		_exit(write(sv[1], "wake", 4) == 4 ? 0 : 1);
	}
	en = epoll_wait(ep, &out, 1, 5000);
	printf("epoll_woken=%d events=%x data=%u\n", en, en > 0 ? out.events : 0, out.data.u32);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(read(sv[0], buf, sizeof buf) == 4);
	CHECK(shutdown(sv[1], SHUT_WR) == 0);
	en = epoll_wait(ep, &out, 1, 0);
	printf("epoll_shut_wr=%d events=%x\n", en, en > 0 ? out.events : 0);
	close(sv[1]);
	en = epoll_wait(ep, &out, 1, 0);
	printf("epoll_closed=%d events=%x\n", en, en > 0 ? out.events : 0);
	close(ep);
	close(sv[0]);

	/* SO_RCVTIMEO: a blocking read gives up with EAGAIN. */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	struct timeval tv = { 0, 50000 }, tv2 = { 9, 9 };
	CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
	socklen_t tl = sizeof tv2;
	CHECK(getsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv2, &tl) == 0);
	/* Linux rounds to its clock tick: only "about 50 ms" is the same. */
	long us = (long)tv2.tv_sec * 1000000 + (long)tv2.tv_usec;
	printf("rcvtimeo_about_50ms=%d len=%u\n", us >= 50000 && us <= 60000, tl);
	SEXPECT("read_timeout", read(sv[0], buf, sizeof buf));
	tv.tv_usec = 2000000;
	SEXPECT("rcvtimeo_bad_usec", setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
	SEXPECT("rcvtimeo_short", setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, 4));
	close(sv[0]);
	close(sv[1]);

	/* A fresh unconnected socket. */
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(s >= 0);
	show_poll("unconnected", s);
	SEXPECT("read_unconnected", read(s, buf, 1));
	SEXPECT("write_unconnected", send(s, "x", 1, MSG_NOSIGNAL));
	SEXPECT("getpeername_unconnected", getpeername(s, (struct sockaddr *)&(struct sockaddr_un){0}, &(socklen_t){sizeof(struct sockaddr_un)}));
	SEXPECT("accept_unlistening", accept(s, NULL, NULL));
	SEXPECT("listen_unbound", listen(s, 1));
	close(s);
	return 0;
}
