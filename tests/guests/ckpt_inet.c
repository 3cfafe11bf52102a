/* Inet sockets across a checkpoint: a TCP listener (127.0.0.1) holding
 * two connections it has not accepted (one with data queued), an
 * established connection with data queued both ways and more bytes than
 * the receiver's buffer holds still in the sender's send buffer, a
 * half-closed connection on ::1, a UDP socket with a datagram queued,
 * a netlink socket holding an unread link dump, and a worker child
 * answering over TCP (blocked in recv at the checkpoint). Each tick prints a line that depends on the tick alone;
 * at the end everything queued is read, the listener takes a new
 * connection and the UDP socket is still at its port. Ports are never
 * printed. Usage: ckpt_inet TICKS */
#define _GNU_SOURCE
#include "inet_common.h"
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
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

/* Reads until EOF; returns the count and a checksum. */
static long drain(int fd, unsigned *sum)
{
	char buf[4096];
	long total = 0;
	*sum = 0;
	for (;;) {
		ssize_t r = read(fd, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : total;
		for (ssize_t i = 0; i < r; i++)
			*sum = *sum * 31 + (unsigned char)buf[i];
		total += r;
	}
}

#define BIG 200000

int main(int argc, char **argv)
{
	int ticks = argc > 1 ? atoi(argv[1]) : 10;
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	char buf[256];

	/* The worker, over TCP. */
	int wl = tcp_listener(AF_INET, 1, 0);
	pid_t w = fork();
	CHECK(w >= 0);
	if (w == 0) {
		int c = tcp_client(AF_INET, wl);
		close(wl);
		int k = 0;
		ssize_t n;
		while ((n = recv(c, buf, sizeof buf, 0)) > 0)
			dprintf(c, "w%d\n", k++);
		_exit(n == 0 ? 0 : 4);
	}
	int wk = accept(wl, NULL, NULL);
	CHECK(wk >= 0);
	close(wl);

	/* A listener with two connections not accepted yet. */
	int lst = tcp_listener(AF_INET, 4, 1);
	CHECK(lst >= 0);
	int q1 = tcp_client(AF_INET, lst), q2 = tcp_client(AF_INET, lst);
	CHECK(q1 >= 0 && q2 >= 0);
	CHECK(send(q1, "queued at the listener", 22, 0) == 22);

	/* An established connection with data both ways, and more than the
	 * receiver's buffer from a child writer. */
	int l2 = tcp_listener(AF_INET, 1, 0);
	int a = tcp_client(AF_INET, l2);
	int b = accept(l2, NULL, NULL);
	CHECK(a >= 0 && b >= 0);
	close(l2);
	CHECK(send(a, "from a", 6, 0) == 6);
	CHECK(send(b, "from b", 6, 0) == 6);
	int l3 = tcp_listener(AF_INET, 1, 0);
	int bigc = tcp_client(AF_INET, l3);
	int bigs = accept(l3, NULL, NULL);
	CHECK(bigc >= 0 && bigs >= 0);
	close(l3);
	pid_t bw = fork();
	CHECK(bw >= 0);
	if (bw == 0) {
		close(l3);
		static char chunk[BIG];
		for (int i = 0; i < BIG; i++)
			chunk[i] = (char)(i * 7 + 3);
		ssize_t done = 0;
		while (done < BIG) {
			ssize_t r = send(bigc, chunk + done, BIG - done, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				_exit(5);
			done += r;
		}
		close(bigc);
		_exit(0);
	}
	close(bigc);

	/* A half-closed connection on ::1. */
	int l6 = tcp_listener(AF_INET6, 1, 0);
	int d = tcp_client(AF_INET6, l6);
	int e = accept(l6, NULL, NULL);
	CHECK(d >= 0 && e >= 0);
	close(l6);
	CHECK(send(d, "last words", 10, 0) == 10);
	CHECK(shutdown(d, SHUT_WR) == 0);

	/* A UDP socket with a datagram queued. */
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_storage us;
	socklen_t ul = lo_addr(AF_INET, &us, 0);
	CHECK(bind(u, (struct sockaddr *)&us, ul) == 0);
	unsigned uport = local_port(u);
	ul = lo_addr(AF_INET, &us, uport);
	int v = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(sendto(v, "a queued datagram", 17, 0, (struct sockaddr *)&us, ul) == 17);
	/* A netlink socket with its answer unread. */
	int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	CHECK(nl >= 0);
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} req = { { sizeof req, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 42, 0 }, { 0 } };
	CHECK(send(nl, &req, sizeof req, 0) == sizeof req);
	printf("setup done\n");

	for (int i = 0; i < ticks; i++) {
		char ans[64];
		if (send(wk, "r", 1, 0) != 1 || read_line(wk, ans, sizeof ans) != 0) {
			printf("tick %d: the worker failed\n", i);
			return 3;
		}
		printf("tick %d worker %s\n", i, ans);
		sleep_ms(150);
	}

	/* The queued connections. */
	int s1 = accept(lst, NULL, NULL), s2 = accept(lst, NULL, NULL);
	ssize_t n = recv(s1, buf, sizeof buf, 0);
	printf("accepted %d %d, first says %.*s\n", s1 >= 0, s2 >= 0, (int)(n > 0 ? n : 0), buf);
	CHECK(send(s2, "hi q2", 5, 0) == 5);
	n = recv(q2, buf, sizeof buf, 0);
	printf("q2 hears %.*s\n", (int)(n > 0 ? n : 0), buf);
	/* Data both ways. */
	n = recv(b, buf, sizeof buf, 0);
	printf("b got %.*s\n", (int)(n > 0 ? n : 0), buf);
	n = recv(a, buf, sizeof buf, 0);
	printf("a got %.*s\n", (int)(n > 0 ? n : 0), buf);
	unsigned sum;
	long got = drain(bigs, &sum);
	int st;
	waitpid(bw, &st, 0);
	printf("big transfer: %ld bytes, checksum %08x, writer exit %d\n", got, sum, WEXITSTATUS(st));
	/* The half-closed one. */
	n = recv(e, buf, sizeof buf, 0);
	ssize_t eof = recv(e, buf + 64, 8, 0);
	printf("half-closed: %.*s then %zd\n", (int)(n > 0 ? n : 0), buf, eof);
	CHECK(send(e, "reply", 5, 0) == 5);
	n = recv(d, buf, sizeof buf, 0);
	printf("the closer still hears %.*s\n", (int)(n > 0 ? n : 0), buf);
	/* The datagram, and the port still bound. */
	struct sockaddr_storage from;
	socklen_t fl = sizeof from;
	n = recvfrom(u, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
	printf("udp: %.*s from v %d\n", (int)(n > 0 ? n : 0), buf, port_of(&from) == local_port(v));
	CHECK(sendto(v, "again", 5, 0, (struct sockaddr *)&us, ul) == 5);
	n = recv(u, buf, sizeof buf, 0);
	printf("udp again: %.*s\n", (int)(n > 0 ? n : 0), buf);
	/* The listener takes a new connection. */
	int q3 = tcp_client(AF_INET, lst);
	int s3 = accept(lst, NULL, NULL);
	printf("new connection %d %d\n", q3 >= 0, s3 >= 0);

	/* The link dump, read after the restore. */
	static char nbuf[8192];
	n = recv(nl, nbuf, sizeof nbuf, 0);
	struct nlmsghdr *h = (struct nlmsghdr *)nbuf;
	int lo = 0;
	if (n > 0 && NLMSG_OK(h, (unsigned)n) && h->nlmsg_type == RTM_NEWLINK) {
		struct ifinfomsg *ifi = NLMSG_DATA(h);
		lo = ifi->ifi_index == 1 && (ifi->ifi_flags & IFF_LOOPBACK);
	}
	printf("netlink: link dump seq %u, lo %d\n", n > 0 ? h->nlmsg_seq : 0, lo);

	close(wk);
	waitpid(w, &st, 0);
	printf("worker exit %d\n", WEXITSTATUS(st));
	return 0;
}
