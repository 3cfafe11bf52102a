/* Helpers for the unix-socket guests: socket errno names on top of
 * common.h's, and an EXPECT that uses them. */
#ifndef CRYO_GUEST_SOCK_COMMON_H
#define CRYO_GUEST_SOCK_COMMON_H

#include "common.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static inline const char *serrname(int e)
{
	switch (e) {
	case ENOTSOCK: return "ENOTSOCK";
	case ENOTCONN: return "ENOTCONN";
	case EISCONN: return "EISCONN";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ECONNRESET: return "ECONNRESET";
	case EADDRINUSE: return "EADDRINUSE";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case EPROTOTYPE: return "EPROTOTYPE";
	case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
	case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case ENOPROTOOPT: return "ENOPROTOOPT";
	case EMSGSIZE: return "EMSGSIZE";
	case EDESTADDRREQ: return "EDESTADDRREQ";
	case ENOBUFS: return "ENOBUFS";
	case EDOM: return "EDOM";
	default: return errname(e);
	}
}

#define SEXPECT(label, call)                                                 \
	do {                                                                 \
		errno = 0;                                                   \
		long r_ = (long)(call);                                      \
		printf("%s: ret=%ld errno=%s\n", label, r_, serrname(errno)); \
	} while (0)

/* A sockaddr_un for path p; returns its length (path plus NUL). */
static inline socklen_t path_addr(struct sockaddr_un *a, const char *p)
{
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	strncpy(a->sun_path, p, sizeof a->sun_path - 1);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(p) + 1);
}

/* A sockaddr_un for abstract name n (without the leading NUL). */
static inline socklen_t abstract_addr(struct sockaddr_un *a, const char *n)
{
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	size_t l = strlen(n);
	memcpy(a->sun_path + 1, n, l);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + l);
}

#endif
