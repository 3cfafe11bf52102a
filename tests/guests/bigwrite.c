/* A 1 MiB write to stdout through a loop of raw write(2) calls of varying
 * sizes (partial writes to a pipe are retried), then a trailer line. The
 * harness compares every byte. */
#include "common.h"

int main(void)
{
	static unsigned char buf[1 << 20];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)('a' + (i * 7 + i / 4096) % 26);
	for (size_t i = 4095; i < sizeof buf; i += 4096)
		buf[i] = '\n';
	size_t off = 0, chunk = 1;
	while (off < sizeof buf) {
		size_t n = sizeof buf - off < chunk ? sizeof buf - off : chunk;
		ssize_t w = write(1, buf + off, n);
		CHECK(w > 0);
		off += (size_t)w;
		chunk = chunk * 3 + 1; /* 1, 4, 13, ... up to 64 KiB */
		if (chunk > 65536)
			chunk = 65536;
	}
	unsigned long long h = fnv1a(FNV_INIT, buf, sizeof buf);
	char trailer[64];
	int len = snprintf(trailer, sizeof trailer, "wrote=%zu fnv=%016llx\n", off, h);
	CHECK(write(1, trailer, len) == len);
	return 0;
}
