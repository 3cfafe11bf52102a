/* UDP over the loopback, on 127.0.0.1 and on ::1: datagrams keep their
 * boundaries and their senders' addresses, MSG_PEEK, MSG_TRUNC and
 * FIONREAD, connect's default peer and its disconnect, refused ports
 * seen by a connected sender, EDESTADDRREQ and EMSGSIZE, SO_REUSEADDR
 * port sharing, shutdown and poll readiness. Ports are never printed.
 * Usage: inet_udp */
#define _GNU_SOURCE
#include "inet_common.h"
#include <sys/ioctl.h>

static const char *fname(int fam)
{
	return fam == AF_INET ? "v4" : "v6";
}

static int udp_bound(int fam)
{
	int s = socket(fam, SOCK_DGRAM, 0);
	struct sockaddr_storage ss;
	socklen_t l = lo_addr(fam, &ss, 0);
	if (bind(s, (struct sockaddr *)&ss, l) != 0)
		return -1;
	return s;
}

static void run(int fam)
{
	char lab[64], buf[64];
	struct sockaddr_storage ss, from;
	socklen_t l, fl;
	int a = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	snprintf(lab, sizeof lab, "%s fresh poll", fname(fam));
	print_revents(lab, revents(a));
	printf("%s type %d proto %d\n", fname(fam), intopt(a, SOL_SOCKET, SO_TYPE),
	       intopt(a, SOL_SOCKET, SO_PROTOCOL));
	int b = udp_bound(fam);
	l = lo_addr(fam, &ss, local_port(b));
	IEXPECT("sendto one", sendto(a, "one", 3, 0, (struct sockaddr *)&ss, l));
	printf("%s autobound %d\n", fname(fam), local_port(a) >= 32768);
	IEXPECT("sendto second", sendto(a, "second", 6, 0, (struct sockaddr *)&ss, l));
	IEXPECT("sendto empty", sendto(a, "", 0, 0, (struct sockaddr *)&ss, l));
	snprintf(lab, sizeof lab, "%s with datagrams poll", fname(fam));
	print_revents(lab, revents(b));
	int n = -1;
	ioctl(b, FIONREAD, &n);
	printf("%s FIONREAD %d\n", fname(fam), n);
	fl = sizeof from;
	ssize_t r = recvfrom(b, buf, sizeof buf, MSG_PEEK, (struct sockaddr *)&from, &fl);
	printf("%s peek %zd '%.*s' from the sender %d len %u\n", fname(fam), r, (int)(r > 0 ? r : 0),
	       buf, port_of(&from) == local_port(a), fl);
	r = recvfrom(b, buf, sizeof buf, 0, NULL, NULL);
	printf("%s got %zd '%.*s'\n", fname(fam), r, (int)(r > 0 ? r : 0), buf);
	struct iovec iov = { buf, 3 };
	struct msghdr m = { .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1 };
	r = recvmsg(b, &m, 0);
	printf("%s recvmsg %zd '%.*s' flags trunc %d name %u\n", fname(fam), r, (int)(r > 0 ? r : 0), buf,
	       (m.msg_flags & MSG_TRUNC) != 0, m.msg_namelen);
	r = recv(b, buf, sizeof buf, 0);
	printf("%s empty datagram %zd\n", fname(fam), r);
	IEXPECT("recv nothing left", recv(b, buf, sizeof buf, MSG_DONTWAIT));
	sendto(a, "truncated", 9, 0, (struct sockaddr *)&ss, l);
	IEXPECT("recv MSG_TRUNC", recv(b, buf, 4, MSG_TRUNC));

	/* sendmmsg and recvmmsg: one datagram per entry. */
	{
		struct iovec v[3] = { { "m1", 2 }, { "mm2", 3 }, { "mmm3", 4 } };
		struct mmsghdr out[3];
		memset(out, 0, sizeof out);
		for (int i = 0; i < 3; i++) {
			out[i].msg_hdr.msg_iov = &v[i];
			out[i].msg_hdr.msg_iovlen = 1;
			out[i].msg_hdr.msg_name = &ss;
			out[i].msg_hdr.msg_namelen = l;
		}
		IEXPECT("sendmmsg", sendmmsg(a, out, 3, 0));
		char bufs[3][8];
		struct iovec iv[3];
		struct mmsghdr in[3];
		memset(in, 0, sizeof in);
		for (int i = 0; i < 3; i++) {
			iv[i].iov_base = bufs[i];
			iv[i].iov_len = sizeof bufs[i];
			in[i].msg_hdr.msg_iov = &iv[i];
			in[i].msg_hdr.msg_iovlen = 1;
		}
		int got = recvmmsg(b, in, 3, MSG_DONTWAIT, NULL);
		printf("%s recvmmsg %d:", fname(fam), got);
		for (int i = 0; i < got; i++)
			printf(" %.*s(%u)", (int)in[i].msg_len, bufs[i], in[i].msg_len);
		printf("\n");
	}

	/* Errors of sending. */
	IEXPECT("send with no destination", send(a, "x", 1, 0));
	static char big[65600];
	IEXPECT("oversized datagram", sendto(a, big, fam == AF_INET ? 65508 : 65528, 0, (struct sockaddr *)&ss, l));
	IEXPECT("largest datagram", sendto(a, big, fam == AF_INET ? 65507 : 65527, 0, (struct sockaddr *)&ss, l));
	recv(b, big, sizeof big, 0);

	/* connect: the default peer, and only its datagrams. */
	struct sockaddr_storage bs;
	socklen_t bl = lo_addr(fam, &bs, local_port(b));
	IEXPECT("connect", connect(a, (struct sockaddr *)&bs, bl));
	struct sockaddr_storage pn;
	socklen_t pnl = sizeof pn;
	getpeername(a, (struct sockaddr *)&pn, &pnl);
	printf("%s peer is b %d\n", fname(fam), same_addr(&pn, &bs));
	IEXPECT("send to the default peer", send(a, "dflt", 4, 0));
	r = recv(b, buf, sizeof buf, 0);
	printf("%s b got %zd '%.*s'\n", fname(fam), r, (int)(r > 0 ? r : 0), buf);
	int c = udp_bound(fam);
	struct sockaddr_storage as;
	socklen_t al = lo_addr(fam, &as, local_port(a));
	sendto(c, "stranger", 8, 0, (struct sockaddr *)&as, al);
	sendto(b, "peer", 4, 0, (struct sockaddr *)&as, al);
	r = recv(a, buf, sizeof buf, 0);
	printf("%s connected a got %zd '%.*s'\n", fname(fam), r, (int)(r > 0 ? r : 0), buf);
	IEXPECT("nothing from the stranger", recv(a, buf, sizeof buf, 0));
	close(c);

	/* A connected sender to a port nobody has: ECONNREFUSED. */
	int dead = udp_bound(fam);
	struct sockaddr_storage ds;
	socklen_t dl = lo_addr(fam, &ds, local_port(dead));
	close(dead);
	int d = socket(fam, SOCK_DGRAM, 0);
	connect(d, (struct sockaddr *)&ds, dl);
	IEXPECT("send to a closed port", send(d, "x", 1, 0));
	usleep(10000);
	IEXPECT("recv after it", recv(d, buf, sizeof buf, MSG_DONTWAIT));
	IEXPECT("recv again", recv(d, buf, sizeof buf, MSG_DONTWAIT));
	close(d);

	/* Disconnect with AF_UNSPEC. */
	struct sockaddr un = { .sa_family = AF_UNSPEC };
	char t1[64];
	struct sockaddr_storage nm;
	socklen_t nml = sizeof nm;
	getsockname(a, (struct sockaddr *)&nm, &nml);
	printf("%s connected name %s\n", fname(fam), addr_text(&nm, t1, sizeof t1));
	IEXPECT("disconnect", connect(a, &un, sizeof un));
	IEXPECT("getpeername after it", getpeername(a, (struct sockaddr *)&pn, &pnl));
	nml = sizeof nm;
	getsockname(a, (struct sockaddr *)&nm, &nml);
	printf("%s disconnected name %s port kept %d\n", fname(fam), addr_text(&nm, t1, sizeof t1),
	       port_of(&nm) != 0);
	/* A socket bound to the wildcard, connected then disconnected. */
	int w = socket(fam, SOCK_DGRAM, 0);
	l = any_addr(fam, &ss, 0);
	bind(w, (struct sockaddr *)&ss, l);
	connect(w, (struct sockaddr *)&bs, bl);
	nml = sizeof nm;
	getsockname(w, (struct sockaddr *)&nm, &nml);
	printf("%s wildcard connected name %s\n", fname(fam), addr_text(&nm, t1, sizeof t1));
	connect(w, &un, sizeof un);
	nml = sizeof nm;
	getsockname(w, (struct sockaddr *)&nm, &nml);
	printf("%s wildcard disconnected name %s\n", fname(fam), addr_text(&nm, t1, sizeof t1));
	close(w);

	/* SO_REUSEADDR on both: two sockets on one port. */
	int one = 1;
	int x = socket(fam, SOCK_DGRAM, 0), y = socket(fam, SOCK_DGRAM, 0);
	setsockopt(x, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(y, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	l = lo_addr(fam, &ss, 0);
	bind(x, (struct sockaddr *)&ss, l);
	l = lo_addr(fam, &ss, local_port(x));
	IEXPECT("shared UDP port", bind(y, (struct sockaddr *)&ss, l));
	int z = socket(fam, SOCK_DGRAM, 0);
	IEXPECT("without SO_REUSEADDR", bind(z, (struct sockaddr *)&ss, l));
	close(x);
	close(y);
	close(z);

	/* shutdown. */
	int u = socket(fam, SOCK_DGRAM, 0);
	IEXPECT("shutdown unconnected", shutdown(u, SHUT_RD));
	snprintf(lab, sizeof lab, "%s shut for reading poll", fname(fam));
	print_revents(lab, revents(u));
	close(u);
	connect(b, (struct sockaddr *)&as, al);
	IEXPECT("shutdown connected", shutdown(b, SHUT_WR));
	IEXPECT("send after SHUT_WR", send(b, "x", 1, 0));
	close(a);
	close(b);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	run(AF_INET);
	run(AF_INET6);
	/* A v4 datagram to a dual-stack v6 socket shows a mapped sender. */
	int s6 = socket(AF_INET6, SOCK_DGRAM, 0);
	struct sockaddr_storage ss, from;
	socklen_t l = any_addr(AF_INET6, &ss, 0);
	bind(s6, (struct sockaddr *)&ss, l);
	int s4 = socket(AF_INET, SOCK_DGRAM, 0);
	l = lo_addr(AF_INET, &ss, local_port(s6));
	sendto(s4, "mapped", 6, 0, (struct sockaddr *)&ss, l);
	socklen_t fl = sizeof from;
	char buf[16], t[64];
	ssize_t r = recvfrom(s6, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
	printf("mapped: %zd from %s\n", r, addr_text(&from, t, sizeof t));
	return 0;
}
