/* The smallest guest: one write(2) and a zero exit. If this fails nothing
 * else can work (loader, stack, write, exit_group). */
#include <unistd.h>

int main(void)
{
	static const char msg[] = "hello from a guest\n";
	return write(1, msg, sizeof msg - 1) == (ssize_t)(sizeof msg - 1) ? 0 : 1;
}
