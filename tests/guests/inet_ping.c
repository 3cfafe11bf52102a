/* ICMP echo ("ping") sockets over loopback and who may open them:
 * net.ipv4.ping_group_range (a new network namespace's "1 0" refuses
 * everyone, root too: EACCES), the echo request's checks, the reply
 * (type 0, the socket's identifier, the sequence and payload echoed, a
 * valid checksum, from the address pinged), readiness, and SOCK_RAW's
 * EPERM without CAP_NET_RAW. Natively it runs in a fresh network
 * namespace with lo up (the test arranges it), so writing the sysctl
 * touches no host setting. No identifier is printed, only whether they
 * match. */
#define _GNU_SOURCE
#include "inet_common.h"
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/ip_icmp.h>
#include <sys/syscall.h>

static const char RANGE[] = "/proc/sys/net/ipv4/ping_group_range";

static void show_range(void)
{
	char buf[64] = {0};
	int fd = open(RANGE, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
	if (n < 0)
		printf("range: %s\n", iname(errno));
	else
		printf("range: %s", buf);
	if (fd >= 0)
		close(fd);
}

static void set_range(const char *v)
{
	int fd = open(RANGE, O_WRONLY);
	errno = 0;
	ssize_t n = fd < 0 ? -1 : write(fd, v, strlen(v));
	printf("write '%s': %s\n", v, n < 0 ? iname(errno) : "OK");
	if (fd >= 0)
		close(fd);
}

static unsigned short csum(const unsigned char *b, size_t n)
{
	unsigned long s = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (unsigned)b[i] << 8 | b[i + 1];
	if (n & 1)
		s += (unsigned)b[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (unsigned short)~s;
}

static struct sockaddr_in to4(const char *ip)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static size_t request(unsigned char *m, unsigned char type, unsigned seq, const char *payload)
{
	memset(m, 0, 8);
	m[0] = type;
	m[6] = seq >> 8;
	m[7] = seq & 0xff;
	strcpy((char *)m + 8, payload);
	return 8 + strlen(payload);
}

static void show_reply(int s, unsigned short ident)
{
	unsigned char buf[128];
	struct sockaddr_in from;
	socklen_t fl = sizeof from;
	struct pollfd p = {.fd = s, .events = POLLIN};
	printf("poll: %d revents=%#x\n", poll(&p, 1, 5000), p.revents);
	ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
	if (n < 0) {
		printf("recvfrom: %s\n", iname(errno));
		return;
	}
	char ip[32];
	inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
	printf("reply: %zd bytes type=%u code=%u id matches=%d seq=%u csum ok=%d "
	       "payload='%.*s' from %s port %u len %u\n",
	       n, buf[0], buf[1], (buf[4] << 8 | buf[5]) == ident, buf[6] << 8 | buf[7],
	       csum(buf, n) == 0, (int)(n - 8), buf + 8, ip, ntohs(from.sin_port), fl);
}

static unsigned short ident_of(int s)
{
	struct sockaddr_in me;
	socklen_t l = sizeof me;
	if (getsockname(s, (struct sockaddr *)&me, &l) < 0)
		return 0;
	return ntohs(me.sin_port);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	show_range();
	IEXPECT("ping socket, no group", socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP));
	IEXPECT("raw protocol 0", socket(AF_INET, SOCK_RAW, 0));
	set_range("0 zero");
	set_range("0 1 2");
	set_range("5 3");
	show_range();
	set_range("0 0\n");
	show_range();

	int s = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
	printf("ping socket: %s\n", s < 0 ? iname(errno) : "OK");
	if (s < 0)
		return 1;
	int v;
	socklen_t vl = sizeof v;
	getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &vl);
	printf("SO_TYPE dgram=%d\n", v == SOCK_DGRAM);
	getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &v, &vl);
	printf("SO_PROTOCOL icmp=%d\n", v == IPPROTO_ICMP);
	printf("unbound ident=%u\n", ident_of(s));

	unsigned char m[64];
	struct sockaddr_in lo = to4("127.0.0.1"), far = to4("10.1.2.3");
	size_t n = request(m, ICMP_ECHO, 7, "hello cryo");
	IEXPECT("short", sendto(s, m, 4, 0, (struct sockaddr *)&lo, sizeof lo));
	IEXPECT("no destination", send(s, m, n, 0));
	IEXPECT("short name", sendto(s, m, n, 0, (struct sockaddr *)&lo, 8));
	struct sockaddr_in unspec = lo;
	unspec.sin_family = AF_UNSPEC;
	IEXPECT("AF_UNSPEC name", sendto(s, m, n, 0, (struct sockaddr *)&unspec, sizeof unspec));
	IEXPECT("off lo", sendto(s, m, n, 0, (struct sockaddr *)&far, sizeof far));
	unsigned char ts[16];
	size_t tn = request(ts, ICMP_TIMESTAMP, 1, "");
	IEXPECT("timestamp request", sendto(s, ts, tn, 0, (struct sockaddr *)&lo, sizeof lo));
	m[1] = 3;
	IEXPECT("code 3", sendto(s, m, n, 0, (struct sockaddr *)&lo, sizeof lo));
	m[1] = 0;
	IEXPECT("nothing yet", recv(s, m + 32, 16, MSG_DONTWAIT));

	IEXPECT("echo", sendto(s, m, n, 0, (struct sockaddr *)&lo, sizeof lo));
	unsigned short ident = ident_of(s);
	printf("autobound ident nonzero=%d\n", ident != 0);
	show_reply(s, ident);

	/* Connected: the reply comes from the address pinged. */
	struct sockaddr_in lo2 = to4("127.0.0.2");
	IEXPECT("connect 127.0.0.2", connect(s, (struct sockaddr *)&lo2, sizeof lo2));
	n = request(m, ICMP_ECHO, 8, "again");
	IEXPECT("send", send(s, m, n, 0));
	show_reply(s, ident);

	/* A truncated reply: MSG_TRUNC gives its length. */
	n = request(m, ICMP_ECHO, 9, "a longer payload");
	IEXPECT("send", send(s, m, n, 0));
	unsigned char tiny[4];
	IEXPECT("MSG_TRUNC recv", recv(s, tiny, sizeof tiny, MSG_TRUNC));
	close(s);

	/* An explicit identifier. */
	s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, IPPROTO_ICMP);
	struct sockaddr_in b = to4("127.0.0.1");
	b.sin_port = htons(4242);
	IEXPECT("bind ident 4242", bind(s, (struct sockaddr *)&b, sizeof b));
	printf("ident=%u\n", ident_of(s));
	n = request(m, ICMP_ECHO, 10, "mine");
	IEXPECT("echo", sendto(s, m, n, 0, (struct sockaddr *)&lo, sizeof lo));
	show_reply(s, 4242);
	close(s);

	/* Raw sockets need CAP_NET_RAW. */
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	syscall(SYS_capget, &h, d);
	d[0].effective &= ~(1u << CAP_NET_RAW);
	IEXPECT("drop CAP_NET_RAW", syscall(SYS_capset, &h, d));
	IEXPECT("raw icmp without CAP_NET_RAW", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
	IEXPECT("raw udp without CAP_NET_RAW", socket(AF_INET6, SOCK_RAW, IPPROTO_UDP));
	return 0;
}
