/*
 * Exported futex wrappers for Python and the tests; C hot paths use the
 * inline versions in internal.h.
 */
#include "internal.h"

int lab_futex_wait(uint32_t *word, uint32_t expected)
{
	return futex_wait(word, expected);
}

int lab_futex_wake(uint32_t *word, int nr_wake)
{
	return futex_wake(word, nr_wake);
}
