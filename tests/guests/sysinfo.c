/* sysinfo: totalram > 0, freeram <= totalram, mem_unit >= 1, uptime >= 0,
 * at least one process; the load averages are not compared (they differ). */
#include "common.h"
#include <sys/sysinfo.h>

int main(void)
{
	struct sysinfo si;
	printf("sysinfo=%d\n", sysinfo(&si));
	printf("totalram_positive=%d freeram_le_total=%d mem_unit_ge_1=%d\n", si.totalram > 0,
	       si.freeram <= si.totalram, si.mem_unit >= 1);
	printf("uptime_nonnegative=%d procs_ge_1=%d\n", si.uptime >= 0, si.procs >= 1);
	printf("get_nprocs_ge_1=%d\n", get_nprocs() >= 1);
	EXPECT_ERR("bad_pointer", sysinfo((struct sysinfo *)8));
	return 0;
}
