/* TCP over the loopback, on 127.0.0.1 and on ::1: names, listen and
 * accept, data both ways with MSG_PEEK, MSG_DONTWAIT, MSG_WAITALL and
 * FIONREAD/SIOCOUTQ, half-close, resets, EPIPE and SIGPIPE, refused and
 * non-blocking connects, bind's EADDRINUSE rules (SO_REUSEADDR,
 * SO_REUSEPORT, TIME_WAIT), options, poll and epoll readiness, and
 * v4-mapped addresses with IPV6_V6ONLY. Ports are never printed.
 * Usage: inet_tcp */
#define _GNU_SOURCE
#include "inet_common.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#ifndef SIOCOUTQ
#define SIOCOUTQ TIOCOUTQ /* linux/sockios.h, which musl lacks */
#endif

static volatile int sigpipes;
static void on_sigpipe(int s)
{
	(void)s;
	sigpipes++;
}

static const char *fname(int fam)
{
	return fam == AF_INET ? "v4" : "v6";
}

static void names_and_data(int fam)
{
	char lab[64], buf[64], t1[64];
	int s = socket(fam, SOCK_STREAM, 0);
	snprintf(lab, sizeof lab, "%s fresh poll", fname(fam));
	print_revents(lab, revents(s));
	struct sockaddr_storage ss;
	socklen_t l = sizeof ss;
	getsockname(s, (struct sockaddr *)&ss, &l);
	printf("%s unbound name: len %u family ok %d port %u addr %s\n", fname(fam), l,
	       ss.ss_family == fam, port_of(&ss), addr_text(&ss, t1, sizeof t1));
	IEXPECT("getpeername unconnected", getpeername(s, (struct sockaddr *)&ss, &l));
	IEXPECT("recv unconnected", recv(s, buf, 1, MSG_DONTWAIT));
	IEXPECT("send unconnected", send(s, "x", 1, MSG_NOSIGNAL));
	IEXPECT("accept not listening", accept(s, NULL, NULL));
	IEXPECT("shutdown unconnected", shutdown(s, SHUT_RDWR));
	close(s);

	int lst = tcp_listener(fam, 4, 0);
	printf("%s listener: ok %d ephemeral %d acceptconn %d type %d domain ok %d proto %d\n",
	       fname(fam), lst >= 0, local_port(lst) >= 32768, intopt(lst, SOL_SOCKET, SO_ACCEPTCONN),
	       intopt(lst, SOL_SOCKET, SO_TYPE), intopt(lst, SOL_SOCKET, SO_DOMAIN) == fam,
	       intopt(lst, SOL_SOCKET, SO_PROTOCOL));
	snprintf(lab, sizeof lab, "%s idle listener poll", fname(fam));
	print_revents(lab, revents(lst));
	int c = tcp_client(fam, lst);
	snprintf(lab, sizeof lab, "%s listener with a connection poll", fname(fam));
	print_revents(lab, revents(lst));
	struct sockaddr_storage peer, cname, pname;
	socklen_t pl = sizeof peer, cl = sizeof cname, ql = sizeof pname;
	int a = accept4(lst, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
	getsockname(c, (struct sockaddr *)&cname, &cl);
	getpeername(c, (struct sockaddr *)&pname, &ql);
	printf("%s accepted %d: peer is the client %d, client name %s, client peer port is the listener's %d\n",
	       fname(fam), a >= 0, same_addr(&peer, &cname), addr_text(&cname, t1, sizeof t1),
	       port_of(&pname) == local_port(lst));
	printf("%s accepted flags: nonblock %d cloexec %d\n", fname(fam),
	       (fcntl(a, F_GETFL) & O_NONBLOCK) != 0, (fcntl(a, F_GETFD) & FD_CLOEXEC) != 0);
	snprintf(lab, sizeof lab, "%s connected idle poll", fname(fam));
	print_revents(lab, revents(a));
	IEXPECT("recv nothing yet", recv(a, buf, sizeof buf, 0));
	IEXPECT("send hello", send(c, "hello", 5, 0));
	int n = -1;
	ioctl(a, FIONREAD, &n);
	int out = -1;
	ioctl(c, SIOCOUTQ, &out);
	printf("%s FIONREAD %d SIOCOUTQ %d\n", fname(fam), n, out);
	snprintf(lab, sizeof lab, "%s with data poll", fname(fam));
	print_revents(lab, revents(a));
	ssize_t r = recv(a, buf, sizeof buf, MSG_PEEK);
	printf("%s peek %zd '%.*s'\n", fname(fam), r, (int)(r > 0 ? r : 0), buf);
	r = recv(a, buf, 3, 0);
	printf("%s read %zd '%.*s'\n", fname(fam), r, (int)(r > 0 ? r : 0), buf);
	r = read(a, buf, sizeof buf);
	printf("%s read %zd '%.*s'\n", fname(fam), r, (int)(r > 0 ? r : 0), buf);

	/* MSG_WAITALL gathers what a child writes in pieces. */
	pid_t ch = fork();
	if (ch == 0) {
		for (int i = 0; i < 3; i++) {
			usleep(20000);
			send(a, "abc", 3, 0);
		}
		_exit(0);
	}
	r = recv(c, buf, 9, MSG_WAITALL);
	waitpid(ch, NULL, 0);
	printf("%s waitall %zd '%.*s'\n", fname(fam), r, (int)(r > 0 ? r : 0), buf);

	/* Half-close. */
	shutdown(c, SHUT_WR);
	IEXPECT("read after the peer's SHUT_WR", read(a, buf, sizeof buf));
	snprintf(lab, sizeof lab, "%s half-closed poll", fname(fam));
	print_revents(lab, revents(a));
	IEXPECT("send back over the half-closed", send(a, "back", 4, 0));
	r = recv(c, buf, sizeof buf, 0);
	printf("%s got back %zd\n", fname(fam), r);
	IEXPECT("send after SHUT_WR (MSG_NOSIGNAL)", send(c, "x", 1, MSG_NOSIGNAL));
	sigpipes = 0;
	IEXPECT("write after SHUT_WR", write(c, "x", 1));
	printf("%s sigpipes %d\n", fname(fam), sigpipes);
	close(a);
	IEXPECT("read after the peer closed", recv(c, buf, sizeof buf, 0));
	snprintf(lab, sizeof lab, "%s closed both ways poll", fname(fam));
	print_revents(lab, revents(c));
	close(c);

	/* A close with unread data resets. */
	c = tcp_client(fam, lst);
	a = accept(lst, NULL, NULL);
	send(c, "unread", 6, 0);
	usleep(10000);
	close(a);
	snprintf(lab, sizeof lab, "%s reset poll", fname(fam));
	print_revents(lab, revents(c));
	IEXPECT("recv after a reset", recv(c, buf, sizeof buf, 0));
	IEXPECT("recv again after a reset", recv(c, buf, sizeof buf, 0));
	IEXPECT("send after a reset", send(c, "x", 1, MSG_NOSIGNAL));
	close(c);

	/* A graceful close: the next send passes, the one after is EPIPE. */
	c = tcp_client(fam, lst);
	a = accept(lst, NULL, NULL);
	close(a);
	IEXPECT("recv after a close", recv(c, buf, sizeof buf, 0));
	IEXPECT("first send after the peer closed", send(c, "x", 1, MSG_NOSIGNAL));
	usleep(10000);
	IEXPECT("second send after the peer closed", send(c, "x", 1, MSG_NOSIGNAL));
	printf("%s so_error after %d\n", fname(fam), intopt(c, SOL_SOCKET, SO_ERROR));
	close(c);

	/* SO_LINGER zero: an abortive close. */
	c = tcp_client(fam, lst);
	a = accept(lst, NULL, NULL);
	struct linger lg = { 1, 0 };
	IEXPECT("SO_LINGER", setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
	struct linger got = { -1, -1 };
	socklen_t gl = sizeof got;
	getsockopt(a, SOL_SOCKET, SO_LINGER, &got, &gl);
	printf("%s linger %d %d len %u\n", fname(fam), got.l_onoff, got.l_linger, gl);
	close(a);
	IEXPECT("recv after an abortive close", recv(c, buf, sizeof buf, 0));
	close(c);

	/* No descriptor free: accept is EMFILE and the connection stays. */
	c = tcp_client(fam, lst);
	{
		struct rlimit old, low;
		getrlimit(RLIMIT_NOFILE, &old);
		int top = dup(0);
		low.rlim_cur = top;
		low.rlim_max = old.rlim_max;
		close(top);
		/* Every descriptor below the limit taken. */
		int held[64], nh = 0;
		int x;
		while (nh < 64 && (x = dup(0)) >= 0 && x < top)
			held[nh++] = x;
		if (x >= top)
			close(x);
		setrlimit(RLIMIT_NOFILE, &low);
		IEXPECT("accept with no descriptor free", accept(lst, NULL, NULL));
		setrlimit(RLIMIT_NOFILE, &old);
		for (int i = 0; i < nh; i++)
			close(held[i]);
		a = accept(lst, NULL, NULL);
		IEXPECT("the connection is still there", send(c, "ok", 2, 0) == 2 && recv(a, buf, 2, 0) == 2 ? 0 : -1);
		close(a);
	}
	close(c);

	/* A listener closed with a connection it did not accept. */
	int l2 = tcp_listener(fam, 1, 0);
	c = tcp_client(fam, l2);
	close(l2);
	IEXPECT("recv after the listener closed", recv(c, buf, sizeof buf, 0));
	close(c);
	close(lst);
}

static void connects(int fam)
{
	char lab[64];
	struct sockaddr_storage ss;
	int tmp = tcp_listener(fam, 1, 0);
	unsigned dead = local_port(tmp);
	close(tmp);
	int c = socket(fam, SOCK_STREAM, 0);
	socklen_t l = lo_addr(fam, &ss, dead);
	IEXPECT("connect to a closed port", connect(c, (struct sockaddr *)&ss, l));
	close(c);
	c = socket(fam, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int r = connect(c, (struct sockaddr *)&ss, l);
	int e = errno;
	struct pollfd p = { c, POLLOUT, 0 };
	poll(&p, 1, 1000);
	printf("%s non-blocking refused: %s then so_error %s\n", fname(fam), r == 0 ? "OK" : iname(e),
	       iname(intopt(c, SOL_SOCKET, SO_ERROR)));
	snprintf(lab, sizeof lab, "%s refused poll", fname(fam));
	print_revents(lab, revents(c));
	char b1[4];
	IEXPECT("recv after a refused connect", recv(c, b1, sizeof b1, 0));
	IEXPECT("send after a refused connect", send(c, "x", 1, MSG_NOSIGNAL));
	close(c);
	c = socket(fam, SOCK_STREAM | SOCK_NONBLOCK, 0);
	connect(c, (struct sockaddr *)&ss, l);
	poll(&p, 1, 1000);
	IEXPECT("recv with the refusal pending", recv(c, b1, sizeof b1, 0));
	close(c);

	int lst = tcp_listener(fam, 4, 0);
	c = socket(fam, SOCK_STREAM | SOCK_NONBLOCK, 0);
	l = lo_addr(fam, &ss, local_port(lst));
	r = connect(c, (struct sockaddr *)&ss, l);
	e = errno;
	p.fd = c;
	poll(&p, 1, 1000);
	printf("%s non-blocking connect: %s, writable %d, so_error %s\n", fname(fam),
	       r == 0 ? "OK" : iname(e), (p.revents & POLLOUT) != 0,
	       iname(intopt(c, SOL_SOCKET, SO_ERROR)));
	IEXPECT("connect again", connect(c, (struct sockaddr *)&ss, l));
	IEXPECT("connect once more", connect(c, (struct sockaddr *)&ss, l));
	IEXPECT("listen on a connected socket", listen(c, 1));

	/* epoll sees the listener's connection. */
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 7 };
	epoll_ctl(ep, EPOLL_CTL_ADD, lst, &ev);
	struct epoll_event got[2];
	int ne = epoll_wait(ep, got, 2, 1000);
	printf("%s epoll: %d event(s), in %d tag %u\n", fname(fam), ne,
	       ne > 0 && (got[0].events & EPOLLIN) != 0, ne > 0 ? got[0].data.u32 : 0);
	int a = accept(lst, NULL, NULL);
	ev.events = EPOLLIN | EPOLLRDHUP;
	epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev);
	pid_t ch = fork();
	if (ch == 0) {
		usleep(30000);
		send(c, "wake", 4, 0);
		_exit(0);
	}
	ne = epoll_wait(ep, got, 2, 2000);
	waitpid(ch, NULL, 0);
	printf("%s epoll on data: %d in %d\n", fname(fam), ne, ne > 0 && (got[0].events & EPOLLIN));
	close(ep);
	close(a);
	close(c);
	close(lst);
}

static void ports(int fam)
{
	struct sockaddr_storage ss;
	int one = 1;
	int lst = tcp_listener(fam, 4, 1);
	unsigned port = local_port(lst);
	int b = socket(fam, SOCK_STREAM, 0);
	socklen_t l = lo_addr(fam, &ss, port);
	IEXPECT("bind a listening port", bind(b, (struct sockaddr *)&ss, l));
	setsockopt(b, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	IEXPECT("bind it with SO_REUSEADDR", bind(b, (struct sockaddr *)&ss, l));
	close(b);
	b = socket(fam, SOCK_STREAM, 0);
	l = any_addr(fam, &ss, port);
	IEXPECT("bind the wildcard on it", bind(b, (struct sockaddr *)&ss, l));
	close(b);

	/* Two SO_REUSEADDR sockets may share a port until one listens. */
	int x = socket(fam, SOCK_STREAM, 0), y = socket(fam, SOCK_STREAM, 0);
	setsockopt(x, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(y, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	l = lo_addr(fam, &ss, 0);
	bind(x, (struct sockaddr *)&ss, l);
	l = lo_addr(fam, &ss, local_port(x));
	IEXPECT("second SO_REUSEADDR bind", bind(y, (struct sockaddr *)&ss, l));
	IEXPECT("first listens", listen(x, 1));
	IEXPECT("second listens", listen(y, 1));
	close(x);
	close(y);

	/* SO_REUSEPORT: both bind and listen. */
	x = socket(fam, SOCK_STREAM, 0);
	y = socket(fam, SOCK_STREAM, 0);
	setsockopt(x, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	setsockopt(y, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	l = lo_addr(fam, &ss, 0);
	bind(x, (struct sockaddr *)&ss, l);
	l = lo_addr(fam, &ss, local_port(x));
	IEXPECT("SO_REUSEPORT bind", bind(y, (struct sockaddr *)&ss, l));
	IEXPECT("SO_REUSEPORT listens", listen(x, 1) == 0 && listen(y, 1) == 0 ? 0 : -1);
	close(x);
	close(y);

	/* TIME_WAIT: the server closes first; its port stays taken for a
	 * bind without SO_REUSEADDR. */
	int c = tcp_client(fam, lst);
	int a = accept(lst, NULL, NULL);
	close(a);
	char buf[8];
	recv(c, buf, sizeof buf, 0);
	close(c);
	close(lst);
	usleep(10000);
	b = socket(fam, SOCK_STREAM, 0);
	l = lo_addr(fam, &ss, port);
	IEXPECT("bind a port in TIME_WAIT", bind(b, (struct sockaddr *)&ss, l));
	setsockopt(b, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	IEXPECT("bind it with SO_REUSEADDR", bind(b, (struct sockaddr *)&ss, l));
	close(b);
}

static void options(int fam)
{
	int s = socket(fam, SOCK_STREAM, 0);
	int v = 4096;
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
	printf("%s rcvbuf set 4096 -> %d\n", fname(fam), intopt(s, SOL_SOCKET, SO_RCVBUF));
	v = 1;
	setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
	printf("%s sndbuf set 1 -> %d\n", fname(fam), intopt(s, SOL_SOCKET, SO_SNDBUF));
	printf("%s nodelay %d", fname(fam), intopt(s, IPPROTO_TCP, TCP_NODELAY));
	v = 1;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v);
	printf(" -> %d\n", intopt(s, IPPROTO_TCP, TCP_NODELAY));
	printf("%s keepalive %d idle %d intvl %d cnt %d maxseg %d\n", fname(fam),
	       intopt(s, SOL_SOCKET, SO_KEEPALIVE), intopt(s, IPPROTO_TCP, TCP_KEEPIDLE),
	       intopt(s, IPPROTO_TCP, TCP_KEEPINTVL), intopt(s, IPPROTO_TCP, TCP_KEEPCNT),
	       intopt(s, IPPROTO_TCP, TCP_MAXSEG));
	v = 30;
	IEXPECT("TCP_KEEPIDLE 30", setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof v));
	v = 0;
	IEXPECT("TCP_KEEPCNT 0", setsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof v));
	v = 1;
	IEXPECT("SO_KEEPALIVE", setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v));
	printf("%s keepalive %d idle %d\n", fname(fam), intopt(s, SOL_SOCKET, SO_KEEPALIVE),
	       intopt(s, IPPROTO_TCP, TCP_KEEPIDLE));
	v = 0x10;
	IEXPECT("IP_TOS", setsockopt(s, IPPROTO_IP, IP_TOS, &v, sizeof v));
	printf("%s tos %#x ttl %d\n", fname(fam), intopt(s, IPPROTO_IP, IP_TOS), intopt(s, IPPROTO_IP, IP_TTL));
	printf("%s v6only %d reuseaddr %d\n", fname(fam), intopt(s, IPPROTO_IPV6, IPV6_V6ONLY),
	       intopt(s, SOL_SOCKET, SO_REUSEADDR));
	struct timeval tv = { 2, 500000 }, back = { 0, 0 };
	socklen_t tl = sizeof back;
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &back, &tl);
	printf("%s rcvtimeo %ld.%06ld\n", fname(fam), (long)back.tv_sec, (long)back.tv_usec);
	printf("%s unknown option %d\n", fname(fam), intopt(s, SOL_SOCKET, 9999) == -ENOPROTOOPT);
	printf("%s unknown tcp option %d\n", fname(fam), intopt(s, IPPROTO_TCP, 9999) == -ENOPROTOOPT);
	v = 1;
	IEXPECT("short option", setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, 2));
	close(s);

	/* SO_RCVTIMEO ends a blocking recv with EAGAIN. */
	int lst = tcp_listener(fam, 1, 0);
	int c = tcp_client(fam, lst);
	struct timeval shortt = { 0, 50000 };
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &shortt, sizeof shortt);
	char buf[4];
	IEXPECT("recv with SO_RCVTIMEO", recv(c, buf, sizeof buf, 0));
	close(c);
	close(lst);
}

static void mapped(void)
{
	char t[64];
	int l6 = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_storage ss;
	socklen_t l = any_addr(AF_INET6, &ss, 0);
	bind(l6, (struct sockaddr *)&ss, l);
	listen(l6, 2);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	l = lo_addr(AF_INET, &ss, local_port(l6));
	IEXPECT("v4 connect to a dual-stack listener", connect(c, (struct sockaddr *)&ss, l));
	struct sockaddr_storage peer;
	socklen_t pl = sizeof peer;
	int a = accept(l6, (struct sockaddr *)&peer, &pl);
	printf("mapped peer: family v6 %d len %u addr %s\n", peer.ss_family == AF_INET6, pl,
	       addr_text(&peer, t, sizeof t));
	l = sizeof ss;
	getsockname(a, (struct sockaddr *)&ss, &l);
	printf("mapped name: %s\n", addr_text(&ss, t, sizeof t));
	close(a);
	close(c);
	close(l6);

	int s6 = socket(AF_INET6, SOCK_STREAM, 0);
	int one = 1;
	IEXPECT("IPV6_V6ONLY", setsockopt(s6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one));
	l = any_addr(AF_INET6, &ss, 0);
	bind(s6, (struct sockaddr *)&ss, l);
	IEXPECT("IPV6_V6ONLY once bound", setsockopt(s6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one));
	listen(s6, 2);
	c = socket(AF_INET, SOCK_STREAM, 0);
	l = lo_addr(AF_INET, &ss, local_port(s6));
	IEXPECT("v4 connect to a v6-only listener", connect(c, (struct sockaddr *)&ss, l));
	close(c);
	/* The v4 port beside a v6-only one is free. */
	int s4 = socket(AF_INET, SOCK_STREAM, 0);
	l = lo_addr(AF_INET, &ss, local_port(s6));
	IEXPECT("v4 bind beside a v6-only socket", bind(s4, (struct sockaddr *)&ss, l));
	close(s4);
	close(s6);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, on_sigpipe);
	int fams[] = { AF_INET, AF_INET6 };
	for (int i = 0; i < 2; i++) {
		printf("== %s\n", fname(fams[i]));
		names_and_data(fams[i]);
		connects(fams[i]);
		ports(fams[i]);
		options(fams[i]);
	}
	printf("== mapped\n");
	mapped();
	return 0;
}
