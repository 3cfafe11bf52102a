/* Bad input to the inet socket calls, answered as Linux answers it:
 * unknown families, types and protocols, short and wrong-family socket
 * addresses, non-local addresses, binding twice, privileged ports for an
 * unprivileged caller. Usage: inet_errors */
#define _GNU_SOURCE
#include "inet_common.h"
#include <sys/wait.h>

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int sv[2];
	IEXPECT("tcp over udp", socket(AF_INET, SOCK_STREAM, IPPROTO_UDP));
	IEXPECT("udp over tcp", socket(AF_INET6, SOCK_DGRAM, IPPROTO_TCP));
	IEXPECT("seqpacket", socket(AF_INET, SOCK_SEQPACKET, 0));
	IEXPECT("rdm", socket(AF_INET6, SOCK_RDM, 0));
	IEXPECT("type 0", socket(AF_INET, 0, 0));
	IEXPECT("type 99", socket(AF_INET, 99, 0));
	IEXPECT("bad flags", socket(AF_INET, SOCK_STREAM | 0x40000000, 0));
	IEXPECT("family 1000", socket(1000, SOCK_STREAM, 0));
	IEXPECT("explicit tcp", socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) >= 0);
	IEXPECT("explicit udp", socket(AF_INET6, SOCK_DGRAM, IPPROTO_UDP) >= 0);
	IEXPECT("socketpair inet", socketpair(AF_INET, SOCK_STREAM, 0, sv));
	IEXPECT("socketpair inet6 dgram", socketpair(AF_INET6, SOCK_DGRAM, 0, sv));

	int s4 = socket(AF_INET, SOCK_STREAM, 0), s6 = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_storage ss;
	socklen_t l = lo_addr(AF_INET, &ss, 0);
	IEXPECT("bind short sockaddr_in", bind(s4, (struct sockaddr *)&ss, 8));
	IEXPECT("bind negative length", bind(s4, (struct sockaddr *)&ss, -1));
	IEXPECT("bind huge length", bind(s4, (struct sockaddr *)&ss, 4096));
	IEXPECT("bind sockaddr_in to v6", bind(s6, (struct sockaddr *)&ss, l));
	l = lo_addr(AF_INET6, &ss, 0);
	IEXPECT("bind short sockaddr_in6", bind(s6, (struct sockaddr *)&ss, 20));
	IEXPECT("bind sockaddr_in6 to v4", bind(s4, (struct sockaddr *)&ss, l));
	IEXPECT("connect length 1", connect(s4, (struct sockaddr *)&ss, 1));
	IEXPECT("connect sockaddr_in6 to v4", connect(s4, (struct sockaddr *)&ss, l));

	struct sockaddr_in far = { .sin_family = AF_INET, .sin_port = 0 };
	inet_pton(AF_INET, "198.51.100.7", &far.sin_addr);
	IEXPECT("bind a non-local v4 address", bind(s4, (struct sockaddr *)&far, sizeof far));
	struct sockaddr_in6 far6 = { .sin6_family = AF_INET6 };
	inet_pton(AF_INET6, "2001:db8::7", &far6.sin6_addr);
	IEXPECT("bind a non-local v6 address", bind(s6, (struct sockaddr *)&far6, sizeof far6));
	int one = 1;
	int o6 = socket(AF_INET6, SOCK_DGRAM, 0);
	setsockopt(o6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	struct sockaddr_in6 m6 = { .sin6_family = AF_INET6 };
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &m6.sin6_addr);
	IEXPECT("bind v4-mapped on a v6-only socket", bind(o6, (struct sockaddr *)&m6, sizeof m6));
	l = lo_addr(AF_INET, &ss, 0);
	IEXPECT("bind", bind(s4, (struct sockaddr *)&ss, l));
	IEXPECT("bind twice", bind(s4, (struct sockaddr *)&ss, l));
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	IEXPECT("listen on udp", listen(u, 1));
	IEXPECT("accept on udp", accept(u, NULL, NULL));
	IEXPECT("shutdown bad how", shutdown(s4, 7));
	IEXPECT("getsockopt bad level", getsockopt(u, 12345, 1, &one, &(socklen_t){ 4 }));
	IEXPECT("tcp option on udp", setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));

	/* Unprivileged: ports below 1024 are EACCES, others are fine. */
	pid_t p = fork();
	if (p == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0) {
			printf("setuid failed\n");
			_exit(1);
		}
		int s = socket(AF_INET, SOCK_STREAM, 0);
		l = lo_addr(AF_INET, &ss, 1023);
		IEXPECT("unprivileged bind of port 1023", bind(s, (struct sockaddr *)&ss, l));
		l = lo_addr(AF_INET, &ss, 0);
		IEXPECT("unprivileged bind of port 0", bind(s, (struct sockaddr *)&ss, l));
		_exit(0);
	}
	int st;
	waitpid(p, &st, 0);
	printf("child exit %d\n", WEXITSTATUS(st));
	return 0;
}
