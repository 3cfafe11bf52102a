/* Helpers for the inet guests: errno names the socket guests need on top
 * of sock_common.h's, loopback addresses of either family, and a few
 * checks. Guests never print port numbers (native runs share the host's
 * ports): only whether ports match. */
#ifndef CRYO_GUEST_INET_COMMON_H
#define CRYO_GUEST_INET_COMMON_H

#include "sock_common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

static inline const char *iname(int e)
{
	switch (e) {
	case EINPROGRESS: return "EINPROGRESS";
	case EALREADY: return "EALREADY";
	case ENETUNREACH: return "ENETUNREACH";
	case ECONNABORTED: return "ECONNABORTED";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EPIPE: return "EPIPE";
	case ETIMEDOUT: return "ETIMEDOUT";
	default: return serrname(e);
	}
}

#define IEXPECT(label, call)                                                 \
	do {                                                                 \
		errno = 0;                                                   \
		long r_ = (long)(call);                                      \
		printf("%s: ret=%ld errno=%s\n", label, r_ < 0 ? -1L : r_,   \
		       r_ < 0 ? iname(errno) : "OK");                        \
	} while (0)

/* A loopback address of `fam` (127.0.0.1 or ::1) with `port`. */
static inline socklen_t lo_addr(int fam, struct sockaddr_storage *ss, unsigned port)
{
	memset(ss, 0, sizeof *ss);
	if (fam == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return sizeof *a;
	}
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
	a->sin6_family = AF_INET6;
	a->sin6_port = htons(port);
	a->sin6_addr = in6addr_loopback;
	return sizeof *a;
}

/* The wildcard address of `fam`. */
static inline socklen_t any_addr(int fam, struct sockaddr_storage *ss, unsigned port)
{
	socklen_t l = lo_addr(fam, ss, port);
	if (fam == AF_INET)
		((struct sockaddr_in *)ss)->sin_addr.s_addr = htonl(INADDR_ANY);
	else
		((struct sockaddr_in6 *)ss)->sin6_addr = in6addr_any;
	return l;
}

static inline unsigned port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static inline unsigned local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &l) != 0)
		return 0;
	return port_of(&ss);
}

/* Whether two socket addresses are the same (family, address, port). */
static inline int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
}

/* The address as text, without the port. */
static inline const char *addr_text(const struct sockaddr_storage *ss, char *buf, size_t n)
{
	if (ss->ss_family == AF_INET)
		return inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, n);
	if (ss->ss_family == AF_INET6)
		return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf, n);
	snprintf(buf, n, "family %d", ss->ss_family);
	return buf;
}

/* poll's revents of `fd` for everything, at once. */
static inline int revents(int fd)
{
	struct pollfd p = { fd, POLLIN | POLLOUT | POLLRDHUP | POLLPRI, 0 };
	if (poll(&p, 1, 0) < 0)
		return -1;
	return p.revents;
}

static inline void print_revents(const char *label, int r)
{
	printf("%s:%s%s%s%s%s\n", label, r & POLLIN ? " IN" : "", r & POLLOUT ? " OUT" : "",
	       r & POLLERR ? " ERR" : "", r & POLLHUP ? " HUP" : "", r & POLLRDHUP ? " RDHUP" : "");
}

static inline int intopt(int fd, int level, int name)
{
	int v = -12345;
	socklen_t l = sizeof v;
	if (getsockopt(fd, level, name, &v, &l) != 0)
		return -errno;
	return v;
}

/* A TCP listener on `fam`'s loopback, ephemeral port, backlog `bl`. */
static inline int tcp_listener(int fam, int bl, int reuse)
{
	int l = socket(fam, SOCK_STREAM, 0);
	if (l < 0)
		return -1;
	if (reuse)
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse);
	struct sockaddr_storage ss;
	socklen_t len = lo_addr(fam, &ss, 0);
	if (bind(l, (struct sockaddr *)&ss, len) != 0 || listen(l, bl) != 0)
		return -1;
	return l;
}

/* A blocking client connected to `l`. */
static inline int tcp_client(int fam, int l)
{
	int c = socket(fam, SOCK_STREAM, 0);
	struct sockaddr_storage ss;
	socklen_t len = lo_addr(fam, &ss, local_port(l));
	if (c < 0 || connect(c, (struct sockaddr *)&ss, len) != 0)
		return -1;
	return c;
}

#endif
