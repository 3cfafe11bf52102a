/* Unmounts /proc and /sys (with MNT_DETACH, as `umount -l`) and looks
 * at what is left at those places: natively the empty directories of the
 * root file system; under cryo the same, never the host's procfs or
 * sysfs served through the root's host side (issue 12: nothing of the
 * host's /proc, /sys or kallsyms reaches the application). */
#define _GNU_SOURCE
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>

static void look(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		printf("%s: %s\n", dir, errname(errno));
		return;
	}
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	printf("%s: %d entries\n", dir, n);
}

static void try_open(const char *path)
{
	int fd = open(path, O_RDONLY);
	printf("open %s: %s\n", path, fd < 0 ? errname(errno) : "opened");
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	try_open("/proc/self/status");
	printf("umount /proc: %s\n", umount2("/proc", MNT_DETACH) == 0 ? "ok" : errname(errno));
	printf("umount /sys: %s\n", umount2("/sys", MNT_DETACH) == 0 ? "ok" : errname(errno));
	look("/proc");
	look("/sys");
	try_open("/proc/self/status");
	try_open("/proc/1/environ");
	try_open("/proc/kallsyms");
	try_open("/sys/kernel/notes");
	return 0;
}
