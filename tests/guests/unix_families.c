/* Socket families cryo does not have yet answer as a kernel built
 * without them: EAFNOSUPPORT. Run under cryo only (the host has them). */
#define _GNU_SOURCE
#include "sock_common.h"

int main(void)
{
	int sv[2];
	SEXPECT("socket_inet", socket(AF_INET, SOCK_STREAM, 0));
	SEXPECT("socket_inet6", socket(AF_INET6, SOCK_DGRAM, 0));
	SEXPECT("socket_netlink", socket(AF_NETLINK, SOCK_RAW, 0));
	SEXPECT("socket_packet", socket(AF_PACKET, SOCK_RAW, 0));
	SEXPECT("socketpair_inet", socketpair(AF_INET, SOCK_STREAM, 0, sv));
	SEXPECT("socket_unix", socket(AF_UNIX, SOCK_STREAM, 0) >= 0);
	return 0;
}
