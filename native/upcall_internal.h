/*
 * What the upcall family's C files share and Python does not see: the
 * block/unblock upcalls (upcall.c) map the program's arrays
 * (upcall_program.c), and they and the timers (upcall_timer.c) spin,
 * sleep to an absolute CLOCK_MONOTONIC deadline and record a stamp minus
 * the time it answers.  Private (native/build.py PRIVATE_HEADERS).
 */
#ifndef LAB_UPCALL_INTERNAL_H
#define LAB_UPCALL_INTERNAL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "upcall_abi.h"

#define UP_VP 0u /* the upcall family's worker's virtual processor */

/* The program's mmap-able arrays mapped (munmap *len bytes when done):
 * the VP slots, which must hold UP_VP's, and the stage stamps.  0 or
 * -errno (-EINVAL: not such an array).  upcall_program.c. */
int up_map_slots(int vps_fd, struct up_vp **vps, size_t *len);
/* ... that must hold nr slots (the activations runtimes: one per VP) */
int up_map_slots_n(int vps_fd, uint32_t nr, struct up_vp **vps, size_t *len);
int up_map_stages(int stages_fd, struct up_stages **st, size_t *len);

static inline void up_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static inline struct timespec up_ts(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull),
			       (long)(ns % 1000000000ull) };

	return ts;
}

static inline int up_sleep_until(uint64_t deadline)
{
	struct timespec ts = up_ts(deadline);
	int r;

	while ((r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
				    NULL)) == EINTR)
		;
	return -r;
}

static inline double up_delta(uint64_t later, uint64_t earlier,
			      uint64_t *clamped)
{
	/* bpf_ktime_get_ns() and the vDSO read one clock through two paths:
	 * an immediate observation may come out a few ns "early" */
	if (later < earlier) {
		(*clamped)++;
		return 0.0;
	}
	return (double)(later - earlier);
}

#endif /* LAB_UPCALL_INTERNAL_H */
