/*
 * Helpers shared by the C files of the lab but not exported to Python.
 * Hot paths call the static inline versions; the exported lab_* wrappers in
 * timing.c and futex.c exist for Python and the tests.
 */
#ifndef LAB_INTERNAL_H
#define LAB_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lab_native.h"

#define LAB_CACHELINE 64

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	/* vDSO: no system call, so it never shows up in the probes' counts */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline int futex_wait(uint32_t *word, uint32_t expected)
{
	if (syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL,
		    0) < 0)
		return -errno;
	return 0;
}

static inline int futex_wake(uint32_t *word, int nr_wake)
{
	long woken = syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, nr_wake, NULL,
			     NULL, 0);

	return woken < 0 ? -errno : (int)woken;
}

/*
 * Pin the calling thread to cpu, keeping its old affinity in *saved for
 * lab_unpin(): workers called in-process (tests, notebooks) must leave the
 * caller's affinity as they found it, on every exit path.
 */
int lab_pin_saving(int cpu, cpu_set_t *saved);
void lab_unpin(const cpu_set_t *saved);

/*
 * A thread born on the CPUs in *cpus, with policy and priority (policy
 * < 0: the caller's, inherited): no first instants elsewhere or at
 * another policy, and the caller's own are never changed, so nothing is
 * left to restore on any way out.  0 or -errno.
 */
int lab_spawn_pinned(pthread_t *t, const cpu_set_t *cpus, int policy,
		     int priority, void *(*fn)(void *), void *arg);
/* ... on the one CPU cpu */
int lab_spawn_on_cpu(pthread_t *t, int cpu, int policy, int priority,
		     void *(*fn)(void *), void *arg);

/* Keep the compiler from hoisting or discarding a benchmarked result. */
#define lab_keep(value) __asm__ volatile("" : : "r"(value) : "memory")

#endif /* LAB_INTERNAL_H */
