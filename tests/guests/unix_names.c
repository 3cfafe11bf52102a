/* Names of unix sockets: bind to a path (an S_IFSOCK file; EADDRINUSE
 * if it exists; ECONNREFUSED once nothing listens), to abstract names
 * and by autobind; getsockname/getpeername lengths; connect errors
 * (ENOENT, ECONNREFUSED, EPROTOTYPE, EISCONN, EAGAIN with a full backlog,
 * EINVAL); accept4 flags; bad address lengths; socket(2)'s own errors.
 * (Other families exist natively, so unix_families checks them under
 * cryo alone.) */
#define _GNU_SOURCE
#include "sock_common.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

/* An address no mapping holds, hidden from the compiler's checks. */
static int *bad_ptr(void)
{
	volatile unsigned long p = 8;
	return (int *)p;
}

int main(void)
{
	char dir[64], path[128];
	make_tmpdir("unix_names", dir, sizeof dir);
	snprintf(path, sizeof path, "%s/s", dir);
	struct sockaddr_un a, got;
	socklen_t al = path_addr(&a, path);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(l >= 0);
	socklen_t gl = sizeof got;
	CHECK(getsockname(l, (struct sockaddr *)&got, &gl) == 0);
	printf("unbound_name_len=%u\n", gl);
	CHECK(bind(l, (struct sockaddr *)&a, al) == 0);
	struct stat st;
	CHECK(stat(path, &st) == 0);
	printf("bound_is_sock=%d mode=%o\n", S_ISSOCK(st.st_mode), st.st_mode & 0777 & ~0022);
	gl = sizeof got;
	CHECK(getsockname(l, (struct sockaddr *)&got, &gl) == 0);
	printf("name_len_ok=%d same=%d\n", gl == al, strcmp(got.sun_path, path) == 0);
	gl = 4;
	CHECK(getsockname(l, (struct sockaddr *)&got, &gl) == 0);
	printf("short_name_len=%u\n", gl);
	SEXPECT("bind_again", bind(l, (struct sockaddr *)&a, al));
	int other = socket(AF_UNIX, SOCK_STREAM, 0);
	SEXPECT("bind_in_use", bind(other, (struct sockaddr *)&a, al));
	SEXPECT("open_socket_file", open(path, O_RDONLY));
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	SEXPECT("connect_not_listening", connect(c, (struct sockaddr *)&a, al));
	CHECK(listen(l, 1) == 0);
	int v = 0;
	socklen_t vl = sizeof v;
	CHECK(getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0);
	printf("acceptconn=%d\n", v);
	struct pollfd p = { .fd = l, .events = POLLIN | POLLOUT };
	int pr = poll(&p, 1, 0);
	printf("listener_poll_idle=%d revents=%x\n", pr, p.revents);
	SEXPECT("connect_dgram_to_stream", connect(socket(AF_UNIX, SOCK_DGRAM, 0), (struct sockaddr *)&a, al));
	SEXPECT("connect", connect(c, (struct sockaddr *)&a, al));
	SEXPECT("connect_again", connect(c, (struct sockaddr *)&a, al));
	pr = poll(&p, 1, 0);
	printf("listener_poll_pending=%d revents=%x\n", pr, p.revents);
	/* Backlog 1: two connections wait, a third would block. */
	int c2 = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	SEXPECT("connect_second", connect(c2, (struct sockaddr *)&a, al));
	int c3 = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	SEXPECT("connect_backlog_full", connect(c3, (struct sockaddr *)&a, al));
	SEXPECT("accept4_bad_flags", accept4(l, NULL, NULL, 0x40000000));
	gl = sizeof got;
	int s = accept4(l, (struct sockaddr *)&got, &gl, SOCK_CLOEXEC | SOCK_NONBLOCK);
	CHECK(s >= 0);
	printf("accepted peer_len=%u cloexec=%d nonblock=%d\n", gl, fcntl(s, F_GETFD),
	       !!(fcntl(s, F_GETFL) & O_NONBLOCK));
	gl = sizeof got;
	CHECK(getsockname(s, (struct sockaddr *)&got, &gl) == 0);
	printf("accepted_name_is_listener=%d\n", gl == al && strcmp(got.sun_path, path) == 0);
	gl = sizeof got;
	CHECK(getpeername(c, (struct sockaddr *)&got, &gl) == 0);
	printf("client_peer_is_listener=%d\n", gl == al);
	struct ucred uc;
	socklen_t ul = sizeof uc;
	CHECK(getsockopt(s, SOL_SOCKET, SO_PEERCRED, &uc, &ul) == 0);
	printf("server_peercred_is_me=%d\n", uc.pid == getpid());
	SEXPECT("listen_connected", listen(c, 1));
	SEXPECT("sendto_connected_stream", sendto(c, "x", 1, 0, (struct sockaddr *)&a, al));
	close(s);
	int s2 = accept(l, NULL, NULL);
	printf("second_accepted=%d\n", s2 >= 0);
	int flags = fcntl(l, F_GETFL);
	fcntl(l, F_SETFL, flags | O_NONBLOCK);
	SEXPECT("accept_empty", accept(l, NULL, NULL));
	close(s2);
	close(c);
	close(c2);
	close(c3);
	close(l);
	SEXPECT("connect_after_close", connect(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&a, al));
	unlink(path);
	SEXPECT("connect_missing", connect(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&a, al));
	char f[160];
	snprintf(f, sizeof f, "%s/regular", dir);
	close(open(f, O_CREAT | O_WRONLY, 0600));
	socklen_t fl = path_addr(&a, f);
	SEXPECT("connect_regular_file", connect(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&a, fl));
	unlink(f);
	snprintf(f, sizeof f, "%s/nodir/s", dir);
	fl = path_addr(&a, f);
	SEXPECT("bind_missing_dir", bind(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&a, fl));
	rmdir(dir);

	/* Abstract names and autobind. */
	int x = socket(AF_UNIX, SOCK_STREAM, 0), y = socket(AF_UNIX, SOCK_STREAM, 0);
	socklen_t xl = abstract_addr(&a, "cryo-names-abstract");
	CHECK(bind(x, (struct sockaddr *)&a, xl) == 0);
	SEXPECT("bind_abstract_in_use", bind(y, (struct sockaddr *)&a, xl));
	gl = sizeof got;
	CHECK(getsockname(x, (struct sockaddr *)&got, &gl) == 0);
	printf("abstract_len_ok=%d\n", gl == xl && memcmp(&got, &a, xl) == 0);
	close(x);
	SEXPECT("bind_abstract_after_close", bind(y, (struct sockaddr *)&a, xl));
	int z = socket(AF_UNIX, SOCK_DGRAM, 0);
	sa_family_t fam = AF_UNIX;
	SEXPECT("autobind", bind(z, (struct sockaddr *)&fam, sizeof fam));
	gl = sizeof got;
	CHECK(getsockname(z, (struct sockaddr *)&got, &gl) == 0);
	printf("autobind_len=%u abstract=%d\n", gl, got.sun_path[0] == 0);
	SEXPECT("autobind_again", bind(z, (struct sockaddr *)&fam, sizeof fam));
	close(y);
	close(z);

	/* Bad addresses. */
	int w = socket(AF_UNIX, SOCK_STREAM, 0);
	path_addr(&a, "/tmp/whatever");
	SEXPECT("bind_len0", bind(w, (struct sockaddr *)&a, 0));
	SEXPECT("bind_len1", bind(w, (struct sockaddr *)&a, 1));
	SEXPECT("bind_len_neg", bind(w, (struct sockaddr *)&a, -1));
	SEXPECT("bind_len_huge", bind(w, (struct sockaddr *)&a, 200));
	SEXPECT("bind_len_111", bind(w, (struct sockaddr *)&a, 111));
	SEXPECT("bind_efault", bind(w, (struct sockaddr *)8, 10));
	a.sun_family = AF_INET;
	SEXPECT("bind_wrong_family", bind(w, (struct sockaddr *)&a, 10));
	SEXPECT("connect_len_neg", connect(w, (struct sockaddr *)&a, -5));
	SEXPECT("connect_len2", connect(w, (struct sockaddr *)&a, 2));
	gl = (socklen_t)-1;
	SEXPECT("getsockname_neg_len", getsockname(w, (struct sockaddr *)&got, &gl));
	SEXPECT("getsockname_efault", getsockname(w, (struct sockaddr *)&got, (socklen_t *)8));
	close(w);

	/* Sockets that cannot be made; calls on descriptors that are not sockets. */
	SEXPECT("socket_family_huge", socket(1000, SOCK_STREAM, 0));
	SEXPECT("socket_bad_flags", socket(AF_UNIX, SOCK_STREAM | 0x100000, 0));
	SEXPECT("socket_bad_type", socket(AF_UNIX, 12, 0));
	SEXPECT("socket_type_rdm", socket(AF_UNIX, SOCK_RDM, 0));
	SEXPECT("socket_bad_proto", socket(AF_UNIX, SOCK_STREAM, 5));
	int raw = socket(AF_UNIX, SOCK_RAW, 0);
	v = 0;
	vl = sizeof v;
	getsockopt(raw, SOL_SOCKET, SO_TYPE, &v, &vl);
	printf("raw_is_dgram=%d\n", v == SOCK_DGRAM);
	close(raw);
	SEXPECT("socketpair_efault", socketpair(AF_UNIX, SOCK_STREAM, 0, bad_ptr()));
	SEXPECT("getpeername_pipe", getpeername(0, (struct sockaddr *)&got, &gl));
	SEXPECT("getsockname_badfd", getsockname(99, (struct sockaddr *)&got, &gl));
	SEXPECT("listen_stdout", listen(1, 1));
	SEXPECT("send_stdout", send(1, "x", 1, 0));
	return 0;
}
