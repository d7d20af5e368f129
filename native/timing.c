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

int lab_spawn_pinned(pthread_t *t, const cpu_set_t *cpus, int policy,
		     int priority, void *(*fn)(void *), void *arg)
{
	struct sched_param sp = { .sched_priority = priority };
	pthread_attr_t attr;
	int err = -pthread_attr_init(&attr);

	if (err)
		return err;
	err = -pthread_attr_setaffinity_np(&attr, sizeof(*cpus), cpus);
	if (!err && policy >= 0) {
		err = -pthread_attr_setinheritsched(&attr,
						    PTHREAD_EXPLICIT_SCHED);
		if (!err)
			err = -pthread_attr_setschedpolicy(&attr, policy);
		if (!err)
			err = -pthread_attr_setschedparam(&attr, &sp);
	}
	if (!err)
		err = -pthread_create(t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return err;
}

int lab_spawn_on_cpu(pthread_t *t, int cpu, int policy, int priority,
		     void *(*fn)(void *), void *arg)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return lab_spawn_pinned(t, &set, policy, priority, fn, arg);
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
