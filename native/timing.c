/*
 * Timing and placement.  Build: part of the lab._native cffi extension
 * (native/build.py).
 */
#include <sched.h>

#include "internal.h"

uint64_t lab_now_ns(void)
{
	return now_ns();
}

int lab_pin_saving(int cpu, cpu_set_t *saved)
{
	if (sched_getaffinity(0, sizeof(*saved), saved) < 0)
		return -errno;
	return lab_pin_self(cpu);
}

void lab_unpin(const cpu_set_t *saved)
{
	sched_setaffinity(0, sizeof(*saved), saved);
}

int lab_pin_self(int cpu)
{
	cpu_set_t set;

	if (cpu < 0 || cpu >= CPU_SETSIZE)
		return -EINVAL;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	/* pid 0 is the calling thread, not the whole process */
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		return -errno;
	return 0;
}
