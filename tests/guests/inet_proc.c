/* What the sandbox shows of its network: `lo`'s interface ioctls (on an
 * inet and a unix socket), if_nametoindex/if_indextoname, and the
 * guest's own sockets in /proc/net/tcp, tcp6 and udp (found by port and
 * inode, with their states), and `lo` in /proc/net/dev. Natively the
 * host's loopback answers the same. Usage: inet_proc */
#define _GNU_SOURCE
#include "inet_common.h"
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

static void ifreqs(int s, const char *what)
{
	struct ifreq r;
	memset(&r, 0, sizeof r);
	strcpy(r.ifr_name, "lo");
	int ok = ioctl(s, SIOCGIFFLAGS, &r);
	printf("%s flags: %d up %d loopback %d running %d\n", what, ok, (r.ifr_flags & IFF_UP) != 0,
	       (r.ifr_flags & IFF_LOOPBACK) != 0, (r.ifr_flags & IFF_RUNNING) != 0);
	ok = ioctl(s, SIOCGIFADDR, &r);
	char t[64];
	printf("%s addr: %d %s\n", what, ok,
	       inet_ntop(AF_INET, &((struct sockaddr_in *)&r.ifr_addr)->sin_addr, t, sizeof t));
	ok = ioctl(s, SIOCGIFNETMASK, &r);
	printf("%s netmask: %d %s\n", what, ok,
	       inet_ntop(AF_INET, &((struct sockaddr_in *)&r.ifr_netmask)->sin_addr, t, sizeof t));
	ok = ioctl(s, SIOCGIFINDEX, &r);
	printf("%s index: %d %d\n", what, ok, r.ifr_ifindex);
	ok = ioctl(s, SIOCGIFMTU, &r);
	printf("%s mtu: %d %d\n", what, ok, r.ifr_mtu);
	memset(&r, 0, sizeof r);
	r.ifr_ifindex = 1;
	ok = ioctl(s, SIOCGIFNAME, &r);
	printf("%s name of 1: %d %s\n", what, ok, r.ifr_name);
	strcpy(r.ifr_name, "nosuch0");
	IEXPECT("flags of nosuch0", ioctl(s, SIOCGIFFLAGS, &r));
}

/* The /proc/net/FILE line of a socket bound to `port` whose inode is
 * `ino`: its state, or -1. */
static int proc_state(const char *file, unsigned port, unsigned long ino, int *queued)
{
	char path[64], line[512];
	snprintf(path, sizeof path, "/proc/net/%s", file);
	FILE *f = fopen(path, "r");
	if (!f)
		return -2;
	int st = -1;
	if (!fgets(line, sizeof line, f)) {
		fclose(f);
		return -3;
	}
	while (fgets(line, sizeof line, f)) {
		char local[64], remote[64];
		unsigned state, tx, rx, uid;
		unsigned long inode;
		if (sscanf(line, " %*d: %63s %63s %x %x:%x %*x:%*x %*x %u %*d %lu", local, remote, &state,
			   &tx, &rx, &uid, &inode) != 7)
			continue;
		char *colon = strrchr(local, ':');
		if (!colon || strtoul(colon + 1, NULL, 16) != port || inode != ino)
			continue;
		st = (int)state;
		*queued = (int)rx;
	}
	fclose(f);
	return st;
}

static unsigned long ino_of(int fd)
{
	struct stat s;
	return fstat(fd, &s) == 0 ? (unsigned long)s.st_ino : 0;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	ifreqs(s, "inet");
	int u = socket(AF_UNIX, SOCK_DGRAM, 0);
	ifreqs(u, "unix");
	/* SIOCGIFCONF: the IPv4 interfaces, lo first (a host has more). */
	struct ifconf ic = { .ifc_len = 0, .ifc_buf = NULL };
	int r = ioctl(s, SIOCGIFCONF, &ic);
	printf("ifconf size query: %d, room for one at least %d\n", r, ic.ifc_len >= (int)sizeof(struct ifreq));
	struct ifreq reqs[16];
	ic.ifc_len = sizeof reqs;
	ic.ifc_req = reqs;
	r = ioctl(u, SIOCGIFCONF, &ic);
	char t2[64];
	printf("ifconf on a unix socket: %d, first %s %s\n", r, ic.ifc_len > 0 ? reqs[0].ifr_name : "-",
	       ic.ifc_len > 0 ? inet_ntop(AF_INET, &((struct sockaddr_in *)&reqs[0].ifr_addr)->sin_addr, t2, sizeof t2) : "-");
	ic.ifc_len = 10;
	r = ioctl(s, SIOCGIFCONF, &ic);
	printf("ifconf with too little room: %d len %d\n", r, ic.ifc_len);
	printf("if_nametoindex(lo) %u\n", if_nametoindex("lo"));
	char name[IF_NAMESIZE] = "";
	printf("if_indextoname(1) %s\n", if_indextoname(1, name) ? name : "(none)");
	printf("if_nametoindex(nosuch0) %u\n", if_nametoindex("nosuch0"));

	int q = 0;
	int lst = tcp_listener(AF_INET, 4, 0);
	int c = tcp_client(AF_INET, lst);
	int st = proc_state("tcp", local_port(lst), ino_of(lst), &q);
	printf("listener in tcp: state %02X queued %d\n", st, q);
	int a = accept(lst, NULL, NULL);
	send(c, "abc", 3, 0);
	usleep(10000);
	printf("client in tcp: state %02X\n", proc_state("tcp", local_port(c), ino_of(c), &q));
	st = proc_state("tcp", local_port(a), ino_of(a), &q);
	printf("server end in tcp: state %02X rx %d\n", st, q);
	int l6 = tcp_listener(AF_INET6, 1, 0);
	printf("v6 listener in tcp6: state %02X, in tcp %d\n",
	       proc_state("tcp6", local_port(l6), ino_of(l6), &q),
	       proc_state("tcp", local_port(l6), ino_of(l6), &q));
	struct sockaddr_storage ss;
	socklen_t l = lo_addr(AF_INET, &ss, 0);
	bind(s, (struct sockaddr *)&ss, l);
	printf("udp socket in udp: state %02X\n", proc_state("udp", local_port(s), ino_of(s), &q));
	FILE *f = fopen("/proc/net/dev", "r");
	char line[512];
	int lo = 0;
	while (f && fgets(line, sizeof line, f))
		lo |= strstr(line, " lo:") != NULL;
	if (f)
		fclose(f);
	printf("lo in /proc/net/dev %d\n", lo);
	return 0;
}
