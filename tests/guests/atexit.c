/* Returning from main runs atexit handlers in reverse order and flushes
 * stdio; the status returned from main (3) is the exit status. */
#include "common.h"

static void first(void) { printf("atexit: registered first, runs last\n"); }
static void second(void) { printf("atexit: registered second, runs first\n"); }

int main(void)
{
	atexit(first);
	atexit(second);
	printf("main returns 3\n");
	return 3;
}
