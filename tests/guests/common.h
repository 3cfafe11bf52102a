/* Shared helpers for cryo's guest programs.
 *
 * Guests print only facts that are the same natively and under cryo:
 * booleans, sizes, errno names, differences — never raw pids, addresses,
 * inode numbers or times. Every line goes through printf so that stdout
 * ordering is deterministic (stdout is a pipe in the tests, fully buffered).
 */
#ifndef CRYO_GUEST_COMMON_H
#define CRYO_GUEST_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Symbolic errno name, so outputs read "ENOENT" rather than a number. */
static inline const char *errname(int e)
{
	switch (e) {
	case 0: return "OK";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case E2BIG: return "E2BIG";
	case ENOEXEC: return "ENOEXEC";
	case EBADF: return "EBADF";
	case ECHILD: return "ECHILD";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case EXDEV: return "EXDEV";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case ENFILE: return "ENFILE";
	case EMFILE: return "EMFILE";
	case ENOTTY: return "ENOTTY";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case ESPIPE: return "ESPIPE";
	case EROFS: return "EROFS";
	case EMLINK: return "EMLINK";
	case EPIPE: return "EPIPE";
	case ERANGE: return "ERANGE";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOSYS: return "ENOSYS";
	case ENOTEMPTY: return "ENOTEMPTY";
	case ELOOP: return "ELOOP";
	case EOVERFLOW: return "EOVERFLOW";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	default: return "E???";
	}
}

/* Print "label: ret=R errno=NAME" for a call expected to fail. */
#define EXPECT_ERR(label, call)                                             \
	do {                                                                \
		errno = 0;                                                  \
		long r_ = (long)(call);                                     \
		printf("%s: ret=%ld errno=%s\n", label, r_, errname(errno)); \
	} while (0)

/* Abort with a message and exit status 2 if cond is false: a guest that
 * cannot even set up its test must fail loudly, not print half a result. */
#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			int e_ = errno;                                      \
			printf("CHECK FAILED line %d: %s (errno=%s)\n",      \
			       __LINE__, #cond, errname(e_));                \
			fflush(stdout);                                      \
			_exit(2);                                            \
		}                                                            \
	} while (0)

/* Make a fresh private directory /tmp/cryo-guest-<name>-XXXXXX. Native and
 * cryo runs happen on the same host, so the name must be unique; the random
 * suffix is never printed. */
static inline char *make_tmpdir(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "/tmp/cryo-guest-%s-XXXXXX", name);
	CHECK(mkdtemp(buf) != NULL);
	return buf;
}

/* Fill buf with a deterministic pseudo-random pattern (xorshift). */
static inline void fill_pattern(unsigned char *buf, size_t n, unsigned seed)
{
	unsigned x = seed ? seed : 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (unsigned char)x;
	}
}

/* FNV-1a 64-bit over a buffer, chained through h. */
static inline unsigned long long fnv1a(unsigned long long h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ULL;
	}
	return h;
}
#define FNV_INIT 14695981039346656037ULL

/* The start of the file at `path` as a string in `buf` (at most len - 1
 * bytes), or its open error's name. */
static inline void read_file_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		snprintf(buf, len, "%s", errname(errno));
		return;
	}
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
}

#endif
