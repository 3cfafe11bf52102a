/* SCM_RIGHTS and SCM_CREDENTIALS: a forked server passes a pipe and a
 * file to its client over a named socket; files in flight keep their
 * description (offset shared); MSG_CTRUNC with a short control buffer;
 * MSG_CMSG_CLOEXEC; a socket passed over itself; bogus descriptors;
 * RLIMIT_NOFILE at receive; credentials with SO_PASSCRED. */
#define _GNU_SOURCE
#include "sock_common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

static int send_fds(int s, const int *fds, int n, const char *data)
{
	char ctl[CMSG_SPACE(sizeof(int) * 8)];
	memset(ctl, 0, sizeof ctl);
	struct iovec iov = { (void *)data, strlen(data) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = CMSG_SPACE(sizeof(int) * n) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	return (int)sendmsg(s, &m, 0);
}

/* Receives into fds (up to max); returns the data length, prints flags. */
static int recv_fds(int s, int *fds, int max, size_t ctlspace, int flags, int *nfds)
{
	char ctl[512];
	char data[64];
	struct iovec iov = { data, sizeof data };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = ctlspace };
	int r = (int)recvmsg(s, &m, flags);
	*nfds = 0;
	if (r < 0)
		return r;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < k && *nfds < max; i++)
				memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		}
	}
	printf("  recvmsg=%d nfds=%d ctrunc=%d controllen_ok=%d\n", r, *nfds,
	       !!(m.msg_flags & MSG_CTRUNC), m.msg_controllen <= ctlspace);
	return r;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	char dir[64], path[128];
	make_tmpdir("unix_rights", dir, sizeof dir);
	snprintf(path, sizeof path, "%s/srv.sock", dir);
	struct sockaddr_un sa;
	socklen_t sl = path_addr(&sa, path);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(l >= 0);
	CHECK(bind(l, (struct sockaddr *)&sa, sl) == 0);
	CHECK(listen(l, 4) == 0);

	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* The server: a pipe with data in it, and a file. */
		int c = accept(l, NULL, NULL);
		if (c < 0)
			_exit(3);
		int p[2];
		if (pipe(p) != 0 || write(p[1], "through the pipe", 16) != 16)
			_exit(4);
		char fpath[160];
		snprintf(fpath, sizeof fpath, "%s/file", dir);
		int f = open(fpath, O_RDWR | O_CREAT, 0600);
		if (f < 0 || write(f, "0123456789", 10) != 10 || lseek(f, 2, SEEK_SET) != 2)
			_exit(5);
		int fds[2] = { p[0], f };
		if (send_fds(c, fds, 2, "here") != 4)
			_exit(6);
		close(p[0]);
		close(p[1]);
		/* Wait for the client's word that it moved the offset. */
		char ok;
		if (read(c, &ok, 1) != 1)
			_exit(7);
		printf("server: offset_seen=%ld\n", (long)lseek(f, 0, SEEK_CUR));
		fflush(stdout);
		_exit(0);
	}
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(c >= 0);
	CHECK(connect(c, (struct sockaddr *)&sa, sl) == 0);
	int fds[8], nf;
	printf("client:\n");
	CHECK(recv_fds(c, fds, 8, 512, MSG_CMSG_CLOEXEC, &nf) == 4);
	CHECK(nf == 2);
	printf("cloexec=%d,%d\n", fcntl(fds[0], F_GETFD), fcntl(fds[1], F_GETFD));
	char buf[64];
	ssize_t n = read(fds[0], buf, sizeof buf);
	printf("pipe_data=%zd %.*s\n", n, (int)n, buf);
	printf("file_offset=%ld\n", (long)lseek(fds[1], 0, SEEK_CUR));
	n = read(fds[1], buf, 3);
	printf("file_read=%.*s\n", (int)n, buf);
	CHECK(write(c, "k", 1) == 1);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	printf("server_exit=%d\n", WEXITSTATUS(status));
	close(fds[0]);
	close(fds[1]);
	close(c);
	close(l);
	unlink(path);
	char fpath[160];
	snprintf(fpath, sizeof fpath, "%s/file", dir);
	unlink(fpath);
	rmdir(dir);

	/* Short control buffers: MSG_CTRUNC, the fds that fit. */
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	int three[3] = { 0, 1, 2 };
	CHECK(send_fds(sv[0], three, 3, "abc") == 3);
	printf("short_ctl:\n");
	recv_fds(sv[1], fds, 8, CMSG_SPACE(sizeof(int)), 0, &nf);
	for (int i = 0; i < nf; i++)
		close(fds[i]);
	CHECK(send_fds(sv[0], three, 3, "abc") == 3);
	printf("no_ctl:\n");
	recv_fds(sv[1], fds, 8, 0, 0, &nf);
	/* Stream reads stop after a message with files. */
	CHECK(send_fds(sv[0], three, 1, "one") == 3);
	CHECK(send(sv[0], "two", 3, 0) == 3);
	printf("boundary:\n");
	recv_fds(sv[1], fds, 8, 512, 0, &nf);
	for (int i = 0; i < nf; i++)
		close(fds[i]);
	n = recv(sv[1], buf, sizeof buf, 0);
	printf("after_boundary=%zd\n", n);

	/* Bogus descriptors. */
	int bad[1] = { 999 };
	SEXPECT("send_badfd", send_fds(sv[0], bad, 1, "x"));
	int neg[1] = { -1 };
	SEXPECT("send_negfd", send_fds(sv[0], neg, 1, "x"));
	/* A malformed cmsg. */
	char ctl[CMSG_SPACE(4)];
	memset(ctl, 0, sizeof ctl);
	struct iovec iov = { "x", 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = sizeof ctl };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = 1000;
	SEXPECT("send_cmsg_len_past_end", sendmsg(sv[0], &m, 0));
	cm->cmsg_len = CMSG_LEN(4);
	cm->cmsg_type = 77;
	SEXPECT("send_cmsg_bad_type", sendmsg(sv[0], &m, 0));
	m.msg_control = (void *)8;
	SEXPECT("send_cmsg_efault", sendmsg(sv[0], &m, 0));
	m.msg_control = NULL;
	m.msg_controllen = 0;
	m.msg_iov = (void *)8;
	SEXPECT("send_iov_efault", sendmsg(sv[0], &m, 0));
	m.msg_iov = &iov;
	m.msg_iovlen = 5000;
	SEXPECT("send_iovlen_huge", sendmsg(sv[0], &m, 0));
	SEXPECT("send_buf_efault", send(sv[0], (void *)8, 10, 0));
	SEXPECT("recv_buf_efault_nodata", recv(sv[1], (void *)8, 10, MSG_DONTWAIT));

	/* A socket sent over itself, then closed: the file lives in flight. */
	CHECK(send_fds(sv[0], &sv[0], 1, "self") == 4);
	printf("self:\n");
	recv_fds(sv[1], fds, 8, 512, 0, &nf);
	CHECK(nf == 1);
	close(sv[0]);
	CHECK(write(fds[0], "via-dup", 7) == 7);
	n = read(sv[1], buf, sizeof buf);
	printf("through_received_socket=%zd %.*s\n", n, (int)n, buf);
	close(fds[0]);

	/* A ring in flight: a over a, b over b, q with them; once every
	 * descriptor is closed and another socket is released, the collector
	 * frees the ring and q's peer sees EOF. */
	{
		int ab[2], pq[2], t2[2];
		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, ab) == 0);
		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pq) == 0);
		CHECK(send_fds(ab[0], &ab[0], 1, "a") == 1);
		CHECK(send_fds(ab[1], &ab[1], 1, "b") == 1);
		CHECK(send_fds(ab[0], &pq[1], 1, "q") == 1);
		close(ab[0]);
		close(ab[1]);
		close(pq[1]);
		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, t2) == 0);
		close(t2[0]);
		close(t2[1]);
		struct pollfd pp = { .fd = pq[0], .events = POLLIN };
		int pn = poll(&pp, 1, 5000);
		char c;
		printf("ring_collected: poll=%d hup=%d read=%zd\n", pn, !!(pp.revents & POLLHUP),
		       pn > 0 ? read(pq[0], &c, 1) : (ssize_t)-1);
		close(pq[0]);
	}

	/* RLIMIT_NOFILE at receive: the files that do not fit are dropped. */
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
	int dup3fds[3] = { 0, 0, 0 };
	CHECK(send_fds(sv[0], dup3fds, 3, "lim") == 3);
	struct rlimit rl, old;
	CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
	int maxfd = sv[1] > sv[0] ? sv[1] : sv[0];
	rl.rlim_cur = (rlim_t)maxfd + 2;
	rl.rlim_max = old.rlim_max;
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	printf("nofile:\n");
	recv_fds(sv[1], fds, 8, 512, 0, &nf);
	CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
	for (int i = 0; i < nf; i++)
		close(fds[i]);

	/* Credentials. */
	int on = 1;
	CHECK(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0);
	CHECK(send(sv[0], "cred", 4, 0) == 4);
	char cbuf[CMSG_SPACE(sizeof(struct ucred))];
	char data[16];
	struct iovec ci = { data, sizeof data };
	struct msghdr cmh = { .msg_iov = &ci, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof cbuf };
	n = recvmsg(sv[1], &cmh, 0);
	struct cmsghdr *cc = CMSG_FIRSTHDR(&cmh);
	struct ucred uc = { 0 };
	if (cc && cc->cmsg_type == SCM_CREDENTIALS)
		memcpy(&uc, CMSG_DATA(cc), sizeof uc);
	printf("cred_recv=%zd type_ok=%d pid_is_me=%d uid=%u gid=%u\n", n,
	       cc && cc->cmsg_level == SOL_SOCKET && cc->cmsg_type == SCM_CREDENTIALS,
	       uc.pid == getpid(), uc.uid, uc.gid);
	/* Explicit credentials. */
	struct ucred mine = { getpid(), getuid(), getgid() };
	char sbuf[CMSG_SPACE(sizeof mine)];
	struct msghdr sm = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = sbuf,
			     .msg_controllen = sizeof sbuf };
	struct cmsghdr *sc = CMSG_FIRSTHDR(&sm);
	sc->cmsg_level = SOL_SOCKET;
	sc->cmsg_type = SCM_CREDENTIALS;
	sc->cmsg_len = CMSG_LEN(sizeof mine);
	memcpy(CMSG_DATA(sc), &mine, sizeof mine);
	SEXPECT("send_explicit_cred", sendmsg(sv[0], &sm, 0));
	sc->cmsg_len = CMSG_LEN(8);
	SEXPECT("send_cred_short", sendmsg(sv[0], &sm, 0));
	cmh.msg_controllen = sizeof cbuf;
	n = recvmsg(sv[1], &cmh, 0);
	printf("explicit_cred_recv=%zd\n", n);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
