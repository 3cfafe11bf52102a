/* inet_bench MODE N: loopback networking cost, timed inside the guest
 * (CLOCK_MONOTONIC).
 *   tcp_rr N   N one-byte round trips over a TCP connection between two
 *              processes; prints ns_per_op=
 *   udp_rr N   the same over UDP datagrams; prints ns_per_op=
 *   tcp_bulk N N MiB from one process to another over TCP in 64 KiB
 *              writes; prints ns_per_op= (per MiB) and mib_per_s= */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static struct sockaddr_in lo(unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static unsigned port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t l = sizeof a;
	if (getsockname(fd, (struct sockaddr *)&a, &l) != 0)
		die("getsockname");
	return ntohs(a.sin_port);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	const char *mode = argv[1];
	long n = atol(argv[2]);
	int tcp = strcmp(mode, "udp_rr") != 0;
	int s = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	struct sockaddr_in a = lo(0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0)
		die("bind");
	if (tcp && listen(s, 1) != 0)
		die("listen");
	unsigned port = port_of(s);
	pid_t child = fork();
	if (child == 0) {
		int c = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
		struct sockaddr_in to = lo(port);
		if (connect(c, (struct sockaddr *)&to, sizeof to) != 0)
			die("connect");
		static char buf[1 << 16];
		if (!strcmp(mode, "tcp_bulk")) {
			for (long i = 0; i < n * 16; i++)
				for (size_t done = 0; done < sizeof buf;) {
					ssize_t w = write(c, buf + done, sizeof buf - done);
					if (w <= 0)
						die("write");
					done += w;
				}
			_exit(0);
		}
		for (long i = 0; i < n; i++) {
			if (send(c, "x", 1, 0) != 1 || recv(c, buf, 1, 0) != 1)
				die("child round trip");
		}
		_exit(0);
	}
	int p = s;
	if (tcp && (p = accept(s, NULL, NULL)) < 0)
		die("accept");
	static char buf[1 << 16];
	double t0 = now();
	if (!strcmp(mode, "tcp_bulk")) {
		long long total = 0;
		ssize_t r;
		while ((r = read(p, buf, sizeof buf)) > 0)
			total += r;
		double dt = now() - t0;
		if (total != (long long)n << 20)
			die("short transfer");
		printf("ns_per_op=%.0f mib_per_s=%.1f\n", dt / n, n / (dt / 1e9));
	} else {
		for (long i = 0; i < n; i++) {
			struct sockaddr_in from;
			socklen_t fl = sizeof from;
			if (recvfrom(p, buf, 1, 0, (struct sockaddr *)&from, &fl) != 1 ||
			    sendto(p, "y", 1, 0, tcp ? NULL : (struct sockaddr *)&from, tcp ? 0 : fl) != 1)
				die("round trip");
		}
		printf("ns_per_op=%.0f\n", (now() - t0) / n);
	}
	int st;
	waitpid(child, &st, 0);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
