/* AF_UNIX datagram and seqpacket sockets: boundaries, truncation
 * (MSG_TRUNC in and out), named and connected datagram sockets with
 * sendto/recvfrom addresses, ECONNREFUSED to a closed peer, EMSGSIZE,
 * a connected receiver refusing others (EPERM), seqpacket records and
 * EOF, poll bits. */
#define _GNU_SOURCE
#include "sock_common.h"
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>

static volatile int sigpipes;
static void on_pipe(int s)
{
	(void)s;
	sigpipes++;
}

static void show_poll(const char *label, int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP };
	int n = poll(&p, 1, 0);
	printf("%s: n=%d in=%d out=%d hup=%d rdhup=%d\n", label, n, !!(p.revents & POLLIN),
	       !!(p.revents & POLLOUT), !!(p.revents & POLLHUP), !!(p.revents & POLLRDHUP));
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	int sv[2];
	char buf[256];
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
	show_poll("dgram_pair", sv[0]);
	CHECK(send(sv[0], "one", 3, 0) == 3);
	CHECK(send(sv[0], "second", 6, 0) == 6);
	CHECK(send(sv[0], "", 0, 0) == 0);
	int q = -1;
	CHECK(ioctl(sv[1], FIONREAD, &q) == 0);
	printf("fionread_next=%d\n", q);
	ssize_t n = recv(sv[1], buf, sizeof buf, 0);
	printf("recv1=%zd %.*s\n", n, (int)n, buf);
	struct iovec iov = { buf, 3 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	n = recvmsg(sv[1], &m, 0);
	printf("recv_short=%zd flags_trunc=%d\n", n, !!(m.msg_flags & MSG_TRUNC));
	n = recv(sv[1], buf, sizeof buf, 0);
	printf("recv_empty_dgram=%zd\n", n);
	CHECK(send(sv[0], "abcdef", 6, 0) == 6);
	n = recv(sv[1], buf, 2, MSG_TRUNC | MSG_PEEK);
	printf("peek_trunc=%zd\n", n);
	n = recv(sv[1], buf, 2, MSG_TRUNC);
	printf("trunc_len=%zd\n", n);
	SEXPECT("recv_empty", recv(sv[1], buf, 1, MSG_DONTWAIT));
	static char huge[300000];
	SEXPECT("emsgsize", send(sv[0], huge, sizeof huge, 0));
	int v = 1;
	socklen_t l = sizeof v;
	CHECK(getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &v, &l) == 0);
	printf("so_type=%d\n", v);
	close(sv[1]);
	SEXPECT("send_peer_closed", send(sv[0], "x", 1, 0));
	SEXPECT("send_after_refused", send(sv[0], "x", 1, 0));
	close(sv[0]);

	/* sendmmsg and recvmmsg (MSG_WAITFORONE: the rest do not wait). */
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
	struct mmsghdr mm[5];
	struct iovec mio[5];
	char mbuf[5][16];
	memset(mm, 0, sizeof mm);
	for (int i = 0; i < 3; i++) {
		snprintf(mbuf[i], sizeof mbuf[i], "mmsg-%d", i);
		mio[i].iov_base = mbuf[i];
		mio[i].iov_len = strlen(mbuf[i]);
		mm[i].msg_hdr.msg_iov = &mio[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	int sent = sendmmsg(sv[0], mm, 3, 0);
	printf("sendmmsg=%d len0=%u\n", sent, mm[0].msg_len);
	memset(mm, 0, sizeof mm);
	for (int i = 0; i < 5; i++) {
		mio[i].iov_base = mbuf[i];
		mio[i].iov_len = sizeof mbuf[i];
		mm[i].msg_hdr.msg_iov = &mio[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	int got = recvmmsg(sv[1], mm, 5, MSG_WAITFORONE, NULL);
	printf("recvmmsg=%d", got);
	for (int i = 0; i < got; i++)
		printf(" %.*s", (int)mm[i].msg_len, mbuf[i]);
	printf("\n");
	SEXPECT("recvmmsg_empty", recvmmsg(sv[1], mm, 5, MSG_DONTWAIT, NULL));
	SEXPECT("sendmmsg_notsock", sendmmsg(1, mm, 1, 0));
	close(sv[0]);
	close(sv[1]);

	/* Named datagram sockets. */
	struct sockaddr_un a, b, c, from;
	socklen_t la = abstract_addr(&a, "cryo-dgram-a");
	socklen_t lb = abstract_addr(&b, "cryo-dgram-b");
	int sa = socket(AF_UNIX, SOCK_DGRAM, 0), sb = socket(AF_UNIX, SOCK_DGRAM, 0);
	int anon = socket(AF_UNIX, SOCK_DGRAM, 0);
	CHECK(sa >= 0 && sb >= 0 && anon >= 0);
	CHECK(bind(sa, (struct sockaddr *)&a, la) == 0);
	CHECK(bind(sb, (struct sockaddr *)&b, lb) == 0);
	SEXPECT("send_unconnected", send(sa, "x", 1, 0));
	CHECK(sendto(sa, "to-b", 4, 0, (struct sockaddr *)&b, lb) == 4);
	CHECK(sendto(anon, "anon", 4, 0, (struct sockaddr *)&b, lb) == 4);
	socklen_t fl = sizeof from;
	n = recvfrom(sb, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
	printf("recvfrom=%zd %.*s fromlen=%u from_a=%d\n", n, (int)n, buf, fl,
	       fl == la && memcmp(&from, &a, la) == 0);
	fl = sizeof from;
	n = recvfrom(sb, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
	printf("recvfrom_anon=%zd fromlen=%u\n", n, fl);
	abstract_addr(&c, "cryo-dgram-nobody");
	SEXPECT("sendto_nobody", sendto(sa, "x", 1, 0, (struct sockaddr *)&c, lb + 5));
	/* b connects to a: others are refused, a reaches it. */
	CHECK(connect(sb, (struct sockaddr *)&a, la) == 0);
	SEXPECT("sendto_connected_elsewhere", sendto(anon, "x", 1, 0, (struct sockaddr *)&b, lb));
	CHECK(send(sb, "b->a", 4, 0) == 4);
	n = recv(sa, buf, sizeof buf, 0);
	printf("connected_send=%zd %.*s\n", n, (int)n, buf);
	socklen_t pl = sizeof from;
	CHECK(getpeername(sb, (struct sockaddr *)&from, &pl) == 0);
	printf("peername_len=%u\n", pl);
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	CHECK(connect(sb, &unspec, sizeof unspec) == 0);
	SEXPECT("getpeername_disconnected", getpeername(sb, (struct sockaddr *)&from, &pl));
	SEXPECT("connect_stream_to_dgram", connect(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&a, la));
	close(sa);
	close(sb);
	close(anon);

	/* Seqpacket: records, truncation, EOF, EPIPE. */
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	CHECK(send(sv[0], "rec-one", 7, 0) == 7);
	CHECK(send(sv[0], "rec-two", 7, 0) == 7);
	n = recv(sv[1], buf, 3, 0);
	printf("seq_short=%zd %.*s\n", n, (int)n, buf);
	n = recv(sv[1], buf, sizeof buf, 0);
	printf("seq_next=%zd %.*s\n", n, (int)n, buf);
	show_poll("seq_idle", sv[1]);
	close(sv[0]);
	show_poll("seq_peer_closed", sv[1]);
	n = recv(sv[1], buf, sizeof buf, 0);
	printf("seq_eof=%zd\n", n);
	SEXPECT("seq_send_closed", send(sv[1], "x", 1, MSG_NOSIGNAL));
	close(sv[1]);
	int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	SEXPECT("seq_send_unconnected", send(s, "x", 1, 0));
	SEXPECT("seq_recv_unconnected", recv(s, buf, 1, 0));
	show_poll("seq_unconnected", s);
	close(s);

	/* EPIPE without SIGPIPE: Linux raises it for stream sockets only. */
	signal(SIGPIPE, on_pipe);
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	close(sv[0]);
	SEXPECT("seq_write_closed", write(sv[1], "x", 1));
	close(sv[1]);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
	CHECK(shutdown(sv[1], SHUT_WR) == 0);
	SEXPECT("dgram_write_shut", write(sv[1], "x", 1));
	SEXPECT("dgram_send_shut", send(sv[1], "x", 1, 0));
	printf("sigpipes=%d\n", sigpipes);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
