/* The real guest of golden/data/real-guest-v*.cryo:
 *   golden_counter COUNT TMPFILE SHMFILE
 *
 * At start it sets up state of every kind a statefile holds:
 * - memory: a page-aligned anonymous buffer (a quarter of its pages zero),
 *   an initialised array in .data (a private mapping of the executable),
 *   an array in .bss and a heap block, each mutated every tick;
 * - files in the sandbox's tmpfs: TMPFILE (under /tmp: the overlay's
 *   upper layer) and SHMFILE (under /dev/shm: a plain tmpfs), written at
 *   start and kept open read-write, the fd at a moving offset;
 * - a pipe holding bytes nobody has read yet;
 * - a SIGUSR1 handler (SA_RESTART, SIGHUP in its sa_mask) and SIGUSR2
 *   blocked in the thread's own mask;
 * - (from real-guest-v4) an epoll set over the pipe's read end and an
 *   edge-triggered eventfd, a timerfd and a POSIX timer (SIGEV_NONE) both
 *   armed for an hour;
 * - (from real-guest-v6) unix sockets: a stream socketpair holding unread
 *   bytes, a datagram pair (SO_PASSCRED on the receiver) holding a message
 *   with the pipe's read end in flight and the sender's credentials, and a
 *   listener on an abstract name with a connection not yet accepted;
 * - (from real-guest-v7) a pseudo-terminal, both ends held, its replica in
 *   canonical mode without echo, a window size set, and two lines typed
 *   into the master that nobody has read yet;
 * - (from real-guest-v8) a TCP connection on 127.0.0.1 with unread bytes
 *   both ways and its listener, a UDP socket holding a datagram, a
 *   NETLINK_ROUTE socket holding a link dump nobody has read, a FIFO with
 *   unread bytes (both ends open) and an O_TMPFILE file with no name.
 * - (from real-guest-v9) a pipe armed for signal-driven I/O (O_ASYNC,
 *   F_SETOWN to itself, F_SETSIG to a blocked real-time signal, taken with
 *   sigtimedwait) and CAP_NET_RAW dropped from its bounding set; a
 *   sealed memfd; an inotify watch on /tmp with two events queued; a
 *   user.* extended attribute on a tmpfs file.
 * - (from real-guest-v10) a tmpfs mounted with size=64k,nr_inodes=16
 *   holding a file kept open, and a read-only bind mount of a directory
 *   in it (natively in a private mount namespace of its own).
 * - (from real-guest-v11) a pidfd of a child that sleeps until it is
 *   killed, with a SIGUSR2 the child blocks pending on its process, and
 *   /sys, a mount the sandbox booted with, unmounted.
 * - (from real-guest-v12) a memfd mapped shared with its descriptor
 *   closed (only the mapping holds it), and a /tmp file mapped shared and
 *   then unlinked, each written through its mapping.
 *
 * Then every 50 ms it prints `tick N mem=HEX` (a hash of all that memory,
 * recomputed each time), and every fourth tick, for each file, re-opens it
 * by path, compares its whole content with the model it keeps in memory,
 * reads 8 bytes through the kept fd, then overwrites 24 bytes through it;
 * reads all 128 bytes the pipe holds, prints the oldest 16 and a hash
 * of all, writes the other 112 back and 16 new ones (so every byte left
 * in the pipe at a checkpoint is read, and checked, at the next check
 * after the restore); raises SIGUSR1 and reports what the handler saw;
 * asks the epoll set what is ready (the pipe; the eventfd after each
 * write to it) and whether both timers are still armed; reads the
 * socketpair's bytes and puts them back, receives the datagram (checking
 * the file in flight reads the pipe's bytes and the credentials are its
 * own) and sends another, accepts the queued connection and queues a new
 * one; reads the oldest line from the terminal, types a new one, and
 * prints the line with the window size and settings. Every line is a
 * function of N alone, so a restored run must print exactly what a native
 * run prints for the same N. Stops after COUNT ticks (never if COUNT < 0).
 * A broken invariant prints a line saying so and exits 3. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/inotify.h>
#include <sys/xattr.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sched.h>
#include <string.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <time.h>

#include "../../tests/guests/common.h"

#define BUF_SIZE (64 * 1024)
#define PAGE 4096
#define DATA_SIZE 8192
#define BSS_SIZE 16384
#define HEAP_SIZE 10240
#define TMP_SIZE 6000
#define SHM_SIZE 3000
#define PATCH 24
#define CHUNK 16
#define PIPE_CHUNKS 8
#define CHECK_EVERY 4

/* Non-zero everywhere, so the whole array is in .data (file-backed). */
#define X8(v) v, v, v, v, v, v, v, v
#define X64(v) X8(v), X8(v), X8(v), X8(v), X8(v), X8(v), X8(v), X8(v)
#define X512(v) X64(v), X64(v), X64(v), X64(v), X64(v), X64(v), X64(v), X64(v)
static unsigned char data_arr[DATA_SIZE] = {
	X512(0x11), X512(0x22), X512(0x33), X512(0x44), X512(0x55), X512(0x66), X512(0x77), X512(0x88),
	X512(0x99), X512(0xaa), X512(0xbb), X512(0xcc), X512(0xdd), X512(0xee), X512(0xf0), X512(0x0f),
};
static unsigned char bss_arr[BSS_SIZE];

static volatile sig_atomic_t handled;
static volatile sig_atomic_t last_sig;
static volatile sig_atomic_t hup_masked_in_handler;

static void on_usr1(int sig)
{
	sigset_t now;
	handled++;
	last_sig = sig;
	sigprocmask(SIG_BLOCK, NULL, &now);
	hup_masked_in_handler = sigismember(&now, SIGHUP);
}

struct tfile {
	const char *label;
	const char *path;
	int fd;
	size_t size;
	unsigned char *model;
};

static unsigned long long hash_words(unsigned long long h, const unsigned char *p, size_t n)
{
	unsigned long long w;
	size_t i = 0;
	for (; i + sizeof w <= n; i += sizeof w) {
		memcpy(&w, p + i, sizeof w);
		h = (h ^ w) * 1099511628211ULL;
		h ^= h >> 29;
	}
	return fnv1a(h, p + i, n - i);
}

static void die(long n, const char *what)
{
	printf("tick %ld BROKEN %s\n", n, what);
	fflush(stdout);
	_exit(3);
}

static void write_all(int fd, const void *p, size_t n)
{
	const unsigned char *b = p;
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		CHECK(w > 0);
		b += w;
		n -= (size_t)w;
	}
}

static size_t read_full(int fd, void *p, size_t n)
{
	unsigned char *b = p;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, b + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		CHECK(r >= 0);
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return got;
}

static void tfile_create(struct tfile *f, const char *label, const char *path, size_t size, unsigned seed)
{
	f->label = label;
	f->path = path;
	f->size = size;
	f->model = malloc(size);
	CHECK(f->model != NULL);
	fill_pattern(f->model, size, seed);
	f->fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(f->fd >= 0);
	write_all(f->fd, f->model, size);
	CHECK(lseek(f->fd, 0, SEEK_SET) == 0);
}

static void tfile_check(long n, struct tfile *f)
{
	/* The whole file, through a new open of its path. */
	unsigned char *got = malloc(f->size + 1);
	CHECK(got != NULL);
	int fd = open(f->path, O_RDONLY);
	if (fd < 0)
		die(n, f->label);
	size_t len = read_full(fd, got, f->size + 1);
	close(fd);
	int same = len == f->size && memcmp(got, f->model, f->size) == 0;
	free(got);
	if (!same)
		die(n, f->label);

	/* 8 bytes through the fd kept open since the start. */
	off_t off = lseek(f->fd, 0, SEEK_CUR);
	CHECK(off >= 0);
	if ((size_t)off + 8 > f->size) {
		CHECK(lseek(f->fd, 0, SEEK_SET) == 0);
		off = 0;
	}
	unsigned char b[8];
	CHECK(read_full(f->fd, b, sizeof b) == sizeof b);
	if (memcmp(b, f->model + off, sizeof b) != 0)
		die(n, f->label);

	printf("tick %ld %s size=%zu hash=%016llx at=%ld read=%02x%02x%02x%02x%02x%02x%02x%02x\n", n,
	       f->label, f->size, hash_words(FNV_INIT, f->model, f->size), (long)off, b[0], b[1], b[2],
	       b[3], b[4], b[5], b[6], b[7]);

	/* A patch that only this tick writes, at a place only it chooses. */
	unsigned char patch[PATCH];
	fill_pattern(patch, sizeof patch, (unsigned)n * 2654435761u + 17);
	size_t at = ((size_t)n * 97) % (f->size - PATCH);
	CHECK(pwrite(f->fd, patch, sizeof patch, (off_t)at) == (ssize_t)sizeof patch);
	memcpy(f->model + at, patch, sizeof patch);
}

static void pipe_chunk(char *out, const char *tag, long v)
{
	char tmp[40];
	/* Exactly CHUNK characters: tag, 6 digits, "-golden.". */
	snprintf(tmp, sizeof tmp, "%.1s%06ld-golden.", tag, v % 1000000);
	memcpy(out, tmp, CHUNK);
}

static void sleep_tick(void)
{
	struct timespec req = { 0, 50 * 1000 * 1000 };
	while (nanosleep(&req, &req) != 0 && errno == EINTR)
		;
}

/* A datagram carrying `fd` in SCM_RIGHTS, tagged with tick `n`. */
static void send_rights(int s, int fd, long n)
{
	char ctl[CMSG_SPACE(sizeof(int))];
	memset(ctl, 0, sizeof ctl);
	char tag[16];
	snprintf(tag, sizeof tag, "rights %ld", n);
	struct iovec iov = { tag, strlen(tag) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = sizeof ctl };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	CHECK(sendmsg(s, &m, 0) == (ssize_t)strlen(tag));
}

/* The sockets' state, checked and renewed: see the header. */
static void sockets_check(long n, int *sp, int *dg, int pipe_rd, int lsn, int *client,
			  struct sockaddr_un *la, socklen_t lal)
{
	char b[64];
	CHECK(read_full(sp[1], b, 32) == 32);
	write_all(sp[0], b, 32);
	char data[32], ctl[256];
	struct iovec iov = { data, sizeof data };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			    .msg_controllen = sizeof ctl };
	ssize_t got = recvmsg(dg[1], &m, 0);
	int fd = -1, cred_ok = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(c), sizeof fd);
		if (c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred u;
			memcpy(&u, CMSG_DATA(c), sizeof u);
			cred_ok = u.pid == getpid() && u.uid == getuid();
		}
	}
	/* The file in flight is the pipe's read end: same description. */
	struct stat a, p;
	int same = fd >= 0 && fstat(fd, &a) == 0 && fstat(pipe_rd, &p) == 0 && a.st_ino == p.st_ino;
	if (fd >= 0)
		close(fd);
	send_rights(dg[0], pipe_rd, n);
	int acc = accept(lsn, NULL, NULL);
	close(*client);
	*client = socket(AF_UNIX, SOCK_STREAM, 0);
	int conn = *client >= 0 && connect(*client, (struct sockaddr *)la, lal) == 0;
	if (acc >= 0)
		close(acc);
	printf("tick %ld sockets pair=%.10s dgram=%zd rights_same_pipe=%d cred=%d accepted=%d requeued=%d\n",
	       n, b, got, same, cred_ok, acc >= 0, conn);
}

/* The v8 state: see the header. */
struct v8 {
	int tcp_a, tcp_b, tcp_lsn, udp_rx, udp_tx, nl, fifo_rd, fifo_wr, nameless;
};

/* Netlink's wire format, spelled out: musl has no <linux/netlink.h>. */
struct nl_hdr {
	uint32_t len;
	uint16_t type, flags;
	uint32_t seq, pid;
};
struct nl_ifinfo {
	unsigned char family, pad;
	unsigned short type;
	int index;
	unsigned flags, change;
};
enum { NL_ROUTE = 0, NL_DONE = 3, NL_NEWLINK = 16, NL_GETLINK = 18, NL_REQUEST = 1, NL_DUMP = 0x300 };

/* Asks for a dump of the links (its replies wait unread). */
static void netlink_ask(int nl)
{
	struct {
		struct nl_hdr h;
		struct nl_ifinfo i;
	} req = { .h = { .len = sizeof req, .type = NL_GETLINK, .flags = NL_REQUEST | NL_DUMP, .seq = 1 },
		  .i = { .family = AF_UNSPEC } };
	CHECK(send(nl, &req, sizeof req, 0) == (ssize_t)sizeof req);
}

static void v8_setup(struct v8 *v)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	v->tcp_lsn = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(v->tcp_lsn >= 0 && bind(v->tcp_lsn, (struct sockaddr *)&a, al) == 0 &&
	      listen(v->tcp_lsn, 4) == 0 && getsockname(v->tcp_lsn, (struct sockaddr *)&a, &al) == 0);
	v->tcp_a = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(v->tcp_a >= 0 && connect(v->tcp_a, (struct sockaddr *)&a, al) == 0);
	v->tcp_b = accept(v->tcp_lsn, NULL, NULL);
	CHECK(v->tcp_b >= 0);
	write_all(v->tcp_a, "tcp a->b unread!", 16);
	write_all(v->tcp_b, "tcp b->a unread!", 16);
	struct sockaddr_in u = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t ul = sizeof u;
	v->udp_rx = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(v->udp_rx >= 0 && bind(v->udp_rx, (struct sockaddr *)&u, ul) == 0 &&
	      getsockname(v->udp_rx, (struct sockaddr *)&u, &ul) == 0);
	v->udp_tx = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(v->udp_tx >= 0 && connect(v->udp_tx, (struct sockaddr *)&u, ul) == 0);
	CHECK(send(v->udp_tx, "udp d0000000", 12, 0) == 12);
	v->nl = socket(AF_NETLINK, SOCK_RAW, NL_ROUTE);
	CHECK(v->nl >= 0);
	netlink_ask(v->nl);
	char fifo[64];
	snprintf(fifo, sizeof fifo, "/tmp/golden-fifo-%d", (int)getpid());
	CHECK(mkfifo(fifo, 0600) == 0);
	v->fifo_rd = open(fifo, O_RDONLY | O_NONBLOCK);
	v->fifo_wr = open(fifo, O_WRONLY);
	CHECK(v->fifo_rd >= 0 && v->fifo_wr >= 0);
	write_all(v->fifo_wr, "f0000000", 8);
	v->nameless = open("/tmp", O_TMPFILE | O_RDWR, 0600);
	CHECK(v->nameless >= 0);
	CHECK(pwrite(v->nameless, "nameless 0000000", 16, 0) == 16);
}

/* Reads and renews each: every byte it held at a checkpoint is read, and
 * checked, at the next check after the restore. */
static void v8_check(long n, struct v8 *v)
{
	char a[17] = { 0 }, b[17] = { 0 }, d[13] = { 0 }, f[9] = { 0 }, t[17] = { 0 };
	CHECK(read_full(v->tcp_b, a, 16) == 16 && read_full(v->tcp_a, b, 16) == 16);
	write_all(v->tcp_a, a, 16);
	write_all(v->tcp_b, b, 16);
	ssize_t dl = recv(v->udp_rx, d, 12, 0);
	char next[13];
	snprintf(next, sizeof next, "udp d%07ld", n % 10000000);
	CHECK(send(v->udp_tx, next, 12, 0) == 12);
	/* The dump: lo's link, then its end; a new one asked for. */
	char nlb[8192];
	int links = 0, done = 0;
	while (!done) {
		ssize_t k = recv(v->nl, nlb, sizeof nlb, 0);
		if (k <= 0)
			break;
		for (ssize_t off = 0; off + (ssize_t)sizeof(struct nl_hdr) <= k;) {
			struct nl_hdr h;
			memcpy(&h, nlb + off, sizeof h);
			if (h.len < sizeof h || off + (ssize_t)h.len > k)
				break;
			links += h.type == NL_NEWLINK;
			done |= h.type == NL_DONE;
			off += (h.len + 3) & ~3u;
		}
	}
	netlink_ask(v->nl);
	CHECK(read(v->fifo_rd, f, 8) == 8);
	char fnext[9];
	snprintf(fnext, sizeof fnext, "f%07ld", n % 10000000);
	write_all(v->fifo_wr, fnext, 8);
	struct stat st;
	CHECK(pread(v->nameless, t, 16, 0) == 16 && fstat(v->nameless, &st) == 0);
	char tnext[17];
	snprintf(tnext, sizeof tnext, "nameless %07ld", n % 10000000);
	CHECK(pwrite(v->nameless, tnext, 16, 0) == 16);
	/* (How many links a host has differs; that lo's dump came whole does not.) */
	printf("tick %ld v8 tcp=%.8s/%.8s udp=%zd:%.12s netlink_dump=%d fifo=%.8s nameless=%.16s nlink=%lu\n",
	       n, a, b, dl, d, links > 0 && done, f, t, (unsigned long)st.st_nlink);
}

/* The v9 state: see the header. */
struct v9 {
	int sig_r, sig_w, memfd, ino;
	char xfile[64];
};
#define V9_SIGNAL (SIGRTMIN + 2)
#define V9_CAP_NET_RAW 13

/* A file made and removed in /tmp: two events for the watch. */
static void v9_churn(long n)
{
	char name[64];
	snprintf(name, sizeof name, "/tmp/gi%07ld", n % 10000000);
	int fd = open(name, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0 && close(fd) == 0 && unlink(name) == 0);
}

static void v9_setup(struct v9 *v)
{
	int p[2];
	CHECK(pipe(p) == 0);
	v->sig_r = p[0];
	v->sig_w = p[1];
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, V9_SIGNAL);
	CHECK(sigprocmask(SIG_BLOCK, &s, NULL) == 0);
	CHECK(fcntl(v->sig_r, F_SETFL, O_ASYNC | O_NONBLOCK) == 0);
	CHECK(fcntl(v->sig_r, F_SETOWN, getpid()) == 0);
	CHECK(fcntl(v->sig_r, F_SETSIG, V9_SIGNAL) == 0);
	CHECK(prctl(PR_CAPBSET_DROP, V9_CAP_NET_RAW, 0, 0, 0) == 0);
	v->memfd = memfd_create("golden", MFD_ALLOW_SEALING);
	CHECK(v->memfd >= 0 && pwrite(v->memfd, "memfd m0000000!!", 16, 0) == 16);
	CHECK(fcntl(v->memfd, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
	v->ino = inotify_init1(IN_NONBLOCK);
	CHECK(v->ino >= 0 && inotify_add_watch(v->ino, "/tmp", IN_CREATE | IN_DELETE) >= 0);
	v9_churn(0);
	snprintf(v->xfile, sizeof v->xfile, "/tmp/golden-xattr-%d", (int)getpid());
	int x = open(v->xfile, O_CREAT | O_RDWR, 0600);
	CHECK(x >= 0 && close(x) == 0);
	CHECK(setxattr(v->xfile, "user.golden", "x0000000", 8, 0) == 0);
}

/* A byte written to the armed pipe must bring its signal; the memfd, the
 * watch's queued events and the attribute hold what the last check left. */
static void v9_check(long n, struct v9 *v)
{
	CHECK(write(v->sig_w, "s", 1) == 1);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, V9_SIGNAL);
	siginfo_t si;
	struct timespec wait = { .tv_sec = 5 };
	int got = sigtimedwait(&s, &si, &wait);
	char c;
	CHECK(read(v->sig_r, &c, 1) == 1);
	printf("tick %ld v9 sigio=%d code=%d band=%#lx fd_ok=%d owner_ok=%d capbnd_net_raw=%d\n", n,
	       got == V9_SIGNAL, got == V9_SIGNAL ? si.si_code : -1, got == V9_SIGNAL ? (long)si.si_band : 0L,
	       got == V9_SIGNAL && si.si_fd == v->sig_r, fcntl(v->sig_r, F_GETOWN) == getpid(),
	       prctl(PR_CAPBSET_READ, V9_CAP_NET_RAW, 0, 0, 0));
	char m[17] = { 0 }, mnext[17];
	CHECK(pread(v->memfd, m, 16, 0) == 16);
	snprintf(mnext, sizeof mnext, "memfd m%07ld!!", n % 10000000);
	CHECK(pwrite(v->memfd, mnext, 16, 0) == 16);
	int seals = fcntl(v->memfd, F_GET_SEALS);
	int shrink = ftruncate(v->memfd, 8) == 0;
	/* Two events queued (create, delete), named as the last churn made them. */
	char ev[4096] __attribute__((aligned(8)));
	ssize_t k = read(v->ino, ev, sizeof ev);
	int creates = 0, deletes = 0;
	char first[16] = "-";
	for (ssize_t off = 0; k > 0 && off + (ssize_t)sizeof(struct inotify_event) <= k;) {
		struct inotify_event *e = (struct inotify_event *)(ev + off);
		if (e->len > 0 && strncmp(e->name, "gi", 2) == 0) {
			creates += !!(e->mask & IN_CREATE);
			deletes += !!(e->mask & IN_DELETE);
			if (first[0] == '-')
				snprintf(first, sizeof first, "%.9s", e->name);
		}
		off += (ssize_t)sizeof(struct inotify_event) + e->len;
	}
	v9_churn(n);
	char x[9] = { 0 }, xnext[9];
	ssize_t xl = getxattr(v->xfile, "user.golden", x, 8);
	snprintf(xnext, sizeof xnext, "x%07ld", n % 10000000);
	CHECK(setxattr(v->xfile, "user.golden", xnext, 8, XATTR_REPLACE) == 0);
	printf("tick %ld v9 memfd=%.16s seals=%#x shrink=%d inotify=%d/%d:%s xattr=%zd:%.8s\n", n, m,
	       seals, shrink, creates, deletes, first, xl, x);
}

/* The v10 state: see the header. */
struct v10 {
	char dir[64], bind[64], file[96], big[96];
	int fd;
};

static void v10_setup(struct v10 *v)
{
	/* The mounts go into a namespace of the guest's own (in the sandbox
	 * since real-guest-v14; before, unshare was EPERM there and they were
	 * the sandbox's). */
	if (unshare(CLONE_NEWNS) == 0)
		CHECK(mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0);
	snprintf(v->dir, sizeof v->dir, "/tmp/golden-mnt-%d", (int)getpid());
	snprintf(v->bind, sizeof v->bind, "/tmp/golden-bind-%d", (int)getpid());
	CHECK(mkdir(v->dir, 0755) == 0 && mkdir(v->bind, 0755) == 0);
	CHECK(mount("golden", v->dir, "tmpfs", 0, "size=64k,nr_inodes=16,mode=0750") == 0);
	char sub[80];
	snprintf(sub, sizeof sub, "%s/sub", v->dir);
	CHECK(mkdir(sub, 0755) == 0);
	snprintf(v->file, sizeof v->file, "%s/f", sub);
	snprintf(v->big, sizeof v->big, "%s/big", v->dir);
	v->fd = open(v->file, O_CREAT | O_RDWR, 0644);
	CHECK(v->fd >= 0 && pwrite(v->fd, "f0000000", 8, 0) == 8);
	CHECK(mount(sub, v->bind, NULL, MS_BIND, NULL) == 0);
	CHECK(mount(NULL, v->bind, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) == 0);
}

/* The file holds what the last check wrote, seen the same through the
 * read-only bind; the tmpfs keeps its limits: a big write stops short. */
static void v10_check(long n, struct v10 *v)
{
	char f[9] = { 0 }, fnext[9], b[9] = { 0 }, bpath[96];
	CHECK(pread(v->fd, f, 8, 0) == 8);
	snprintf(fnext, sizeof fnext, "f%07ld", n % 10000000);
	CHECK(pwrite(v->fd, fnext, 8, 0) == 8);
	snprintf(bpath, sizeof bpath, "%s/f", v->bind);
	int bf = open(bpath, O_RDONLY);
	CHECK(bf >= 0 && read(bf, b, 8) == 8 && close(bf) == 0);
	int w = open(bpath, O_WRONLY);
	int erofs = w < 0 && errno == EROFS;
	if (w >= 0)
		close(w);
	struct statfs st;
	CHECK(statfs(v->dir, &st) == 0);
	static char chunk[128 * 1024];
	int big = open(v->big, O_CREAT | O_WRONLY, 0600);
	CHECK(big >= 0);
	ssize_t put = write(big, chunk, sizeof chunk);
	errno = 0;
	ssize_t more = write(big, chunk, 4096);
	int enospc = more < 0 && errno == ENOSPC;
	CHECK(close(big) == 0 && unlink(v->big) == 0);
	printf("tick %ld v10 f=%.8s bind=%.8s erofs=%d blocks=%ld files=%ld big=%zd enospc=%d\n", n, f,
	       b, erofs, (long)st.f_blocks, (long)st.f_files, put, enospc);
}

/* The v11 state: see the header. */
struct v11 {
	pid_t child;
	int pidfd;
};

static void v11_setup(struct v11 *v)
{
	v->child = fork();
	CHECK(v->child >= 0);
	if (v->child == 0) {
		sigset_t usr2;
		sigemptyset(&usr2);
		sigaddset(&usr2, SIGUSR2);
		CHECK(sigprocmask(SIG_BLOCK, &usr2, NULL) == 0);
		CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL) == 0);
		for (;;)
			pause();
	}
	v->pidfd = (int)syscall(SYS_pidfd_open, v->child, 0);
	CHECK(v->pidfd >= 0);
	CHECK(syscall(SYS_pidfd_send_signal, v->pidfd, SIGUSR2, NULL, 0) == 0);
	CHECK(umount2("/sys", MNT_DETACH) == 0);
}

/* The child lives (its pidfd not readable, signal 0 reaches it) with the
 * SIGUSR2 still pending on it; /sys stays unmounted. */
static void v11_check(long n, struct v11 *v)
{
	struct pollfd p = { .fd = v->pidfd, .events = POLLIN };
	int ready = poll(&p, 1, 0);
	long sig0 = syscall(SYS_pidfd_send_signal, v->pidfd, 0, NULL, 0);
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)v->child);
	FILE *f = fopen(path, "r");
	CHECK(f != NULL);
	unsigned long long shd = ~0ULL;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "ShdPnd: %llx", &shd) == 1)
			break;
	fclose(f);
	struct stat st;
	int sys = stat("/sys/kernel", &st) == 0;
	printf("tick %ld v11 pidfd ready=%d signal0=%ld shdpnd=%llx sys=%d\n", n, ready, sig0, shd,
	       sys);
}

/* The v12 state: see the header. */
struct v12 {
	unsigned char *memfd_map;
	unsigned char *unlinked_map;
};

static unsigned char *v12_map(int fd, unsigned char seed)
{
	CHECK(ftruncate(fd, 8192) == 0);
	unsigned char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED);
	for (int i = 0; i < 8192; i++)
		m[i] = (unsigned char)(seed + i * 13);
	CHECK(close(fd) == 0);
	return m;
}

static void v12_setup(struct v12 *v)
{
	int mfd = (int)syscall(SYS_memfd_create, "golden-v12", 0);
	CHECK(mfd >= 0);
	v->memfd_map = v12_map(mfd, 5);
	int tfd = open("/tmp/golden-v12", O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK(tfd >= 0);
	v->unlinked_map = v12_map(tfd, 9);
	CHECK(unlink("/tmp/golden-v12") == 0);
}

/* Both mappings keep their bytes; each tick changes one byte of each. */
static void v12_check(long n, struct v12 *v)
{
	unsigned long h1 = 5381, h2 = 5381;
	for (int i = 0; i < 8192; i++) {
		h1 = h1 * 33 + v->memfd_map[i];
		h2 = h2 * 33 + v->unlinked_map[i];
	}
	v->memfd_map[n % 8192]++;
	v->unlinked_map[(n * 7) % 8192]--;
	printf("tick %ld v12 memfd=%lx unlinked=%lx\n", n, h1, h2);
}

int main(int argc, char **argv)
{
	CHECK(argc == 4);
	long count = atol(argv[1]);

	unsigned char *buf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	for (size_t p = 0; p < BUF_SIZE / PAGE; p++) {
		if (p % 4 == 3)
			memset(buf + p * PAGE, 0, PAGE);
		else
			fill_pattern(buf + p * PAGE, PAGE, (unsigned)p + 1);
	}
	unsigned char *heap = malloc(HEAP_SIZE);
	CHECK(heap != NULL);
	fill_pattern(heap, HEAP_SIZE, 4242);

	struct tfile tmp, shm;
	tfile_create(&tmp, "tmp", argv[2], TMP_SIZE, 777);
	tfile_create(&shm, "shm", argv[3], SHM_SIZE, 999);
	/* An OFD write lock on TMPFILE's first byte through its kept fd (from
	 * real-guest-v5 on; a POSIX lock would go at the first re-open's
	 * close): the checkpoint saves it with the file. */
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	CHECK(fcntl(tmp.fd, F_OFD_SETLK, &fl) == 0);

	int p[2];
	CHECK(pipe(p) == 0);
	for (long i = 0; i < PIPE_CHUNKS; i++) {
		char c[CHUNK];
		pipe_chunk(c, "i", i);
		write_all(p[1], c, CHUNK);
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGHUP);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0);

	int ep = epoll_create1(0);
	CHECK(ep >= 0);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 1 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);
	int efd = eventfd(0, EFD_NONBLOCK);
	CHECK(efd >= 0);
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 2;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0);
	struct itimerspec hour = { .it_value = { 3600, 0 }, .it_interval = { 3600, 0 } };
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	CHECK(tfd >= 0);
	CHECK(timerfd_settime(tfd, 0, &hour, NULL) == 0);
	struct sigevent none = { .sigev_notify = SIGEV_NONE };
	timer_t timer;
	CHECK(timer_create(CLOCK_MONOTONIC, &none, &timer) == 0);
	CHECK(timer_settime(timer, 0, &hour, NULL) == 0);

	/* Sockets. */
	int sp[2], dg[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
	write_all(sp[0], "socketpair bytes nobody read yet", 32);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) == 0);
	int on = 1;
	CHECK(setsockopt(dg[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0);
	send_rights(dg[0], p[0], -1);
	struct sockaddr_un la;
	memset(&la, 0, sizeof la);
	la.sun_family = AF_UNIX;
	memcpy(la.sun_path + 1, "cryo-golden-counter", 19);
	socklen_t lal = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + 19);
	int lsn = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(lsn >= 0 && bind(lsn, (struct sockaddr *)&la, lal) == 0 && listen(lsn, 2) == 0);
	int client = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(client >= 0 && connect(client, (struct sockaddr *)&la, lal) == 0);

	/* A pty: canonical, no echo, 24x80, two lines queued. */
	int ptm = posix_openpt(O_RDWR | O_NOCTTY);
	CHECK(ptm >= 0);
	CHECK(grantpt(ptm) == 0 && unlockpt(ptm) == 0);
	int pts = open(ptsname(ptm), O_RDWR | O_NOCTTY);
	CHECK(pts >= 0);
	struct termios tio;
	CHECK(tcgetattr(pts, &tio) == 0);
	tio.c_lflag &= ~(tcflag_t)ECHO;
	CHECK(tcsetattr(pts, TCSANOW, &tio) == 0);
	struct winsize ws = { .ws_row = 24, .ws_col = 80 };
	CHECK(ioctl(ptm, TIOCSWINSZ, &ws) == 0);
	write_all(ptm, "l000000\nl000001\n", 16);

	struct v8 v8;
	v8_setup(&v8);
	struct v9 v9;
	v9_setup(&v9);
	struct v10 v10;
	v10_setup(&v10);
	struct v11 v11;
	v11_setup(&v11);
	struct v12 v12;
	v12_setup(&v12);

	printf("start\n");
	fflush(stdout);

	for (long n = 0; count < 0 || n < count; n++) {
		size_t page = ((size_t)n * 7919) % (BUF_SIZE / PAGE);
		if (page % 4 == 3)
			page--;
		buf[page * PAGE + (size_t)n % PAGE]++;
		data_arr[((size_t)n * 131) % DATA_SIZE] += 1;
		bss_arr[((size_t)n * 257) % BSS_SIZE] += 3;
		heap[((size_t)n * 7) % HEAP_SIZE] ^= (unsigned char)n;

		unsigned long long h = hash_words(FNV_INIT, buf, BUF_SIZE);
		h = hash_words(h, data_arr, DATA_SIZE);
		h = hash_words(h, bss_arr, BSS_SIZE);
		h = hash_words(h, heap, HEAP_SIZE);
		printf("tick %ld mem=%016llx\n", n, h);

		if (n % CHECK_EVERY == CHECK_EVERY - 1) {
			tfile_check(n, &tmp);
			tfile_check(n, &shm);

			/* All of it: the oldest chunk goes, the rest goes back
			 * in order behind nothing else, then a new chunk. */
			char all[PIPE_CHUNKS * CHUNK + 1];
			CHECK(read_full(p[0], all, PIPE_CHUNKS * CHUNK) == PIPE_CHUNKS * CHUNK);
			all[PIPE_CHUNKS * CHUNK] = 0;
			printf("tick %ld pipe=%.16s hash=%016llx\n", n, all,
			       fnv1a(FNV_INIT, all, PIPE_CHUNKS * CHUNK));
			write_all(p[1], all + CHUNK, (PIPE_CHUNKS - 1) * CHUNK);
			char c[CHUNK];
			pipe_chunk(c, "p", n);
			write_all(p[1], c, CHUNK);

			int before = handled;
			CHECK(raise(SIGUSR1) == 0);
			if (handled != before + 1 || last_sig != SIGUSR1)
				die(n, "SIGUSR1 handler");
			sigset_t now;
			CHECK(sigprocmask(SIG_BLOCK, NULL, &now) == 0);
			printf("tick %ld signal handled=%d hup_masked_in_handler=%d usr2_blocked=%d\n", n,
			       (int)handled, (int)hup_masked_in_handler, sigismember(&now, SIGUSR2));

			/* The set: the pipe (level) always, the eventfd (edge)
			 * once after each write; then nothing new from it. */
			uint64_t one = 1;
			CHECK(write(efd, &one, 8) == 8);
			struct epoll_event out[4];
			int got = epoll_wait(ep, out, 4, 0);
			unsigned seen = 0;
			for (int i = 0; i < got; i++)
				seen |= 1u << out[i].data.u64;
			int again = epoll_wait(ep, out, 4, 0);
			unsigned seen2 = 0;
			for (int i = 0; i < again; i++)
				seen2 |= 1u << out[i].data.u64;
			struct itimerspec t1, t2;
			CHECK(timerfd_gettime(tfd, &t1) == 0);
			CHECK(timer_gettime(timer, &t2) == 0);
			printf("tick %ld epoll ready=%x then=%x timers_armed=%d\n", n, seen, seen2,
			       t1.it_value.tv_sec > 0 && t2.it_value.tv_sec > 0);
			sockets_check(n, sp, dg, p[0], lsn, &client, &la, lal);

			/* The terminal: the oldest line, then a new one typed. */
			char line[16];
			ssize_t k = read(pts, line, sizeof line);
			if (k != 8)
				die(n, "pty line");
			struct winsize w2;
			struct termios t3;
			CHECK(ioctl(pts, TIOCGWINSZ, &w2) == 0 && tcgetattr(pts, &t3) == 0);
			printf("tick %ld pty=%.7s winsize=%dx%d icanon=%d echo=%d\n", n, line, w2.ws_row,
			       w2.ws_col, !!(t3.c_lflag & ICANON), !!(t3.c_lflag & ECHO));
			char typed[9];
			snprintf(typed, sizeof typed, "p%06ld\n", n % 1000000);
			write_all(ptm, typed, 8);
			v8_check(n, &v8);
			v9_check(n, &v9);
			v10_check(n, &v10);
			v11_check(n, &v11);
			v12_check(n, &v12);
		}
		fflush(stdout);
		sleep_tick();
	}
	return 0;
}
