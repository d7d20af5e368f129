/*
 * Family `upcall`, its timers (upcall_timer.c): the lateness of a periodic
 * expiry, user code run "by the timer interrupt" (seed 000).  Part of the
 * cffi cdef (see lab_native.h for the rules such a header follows: plain
 * declarations only).
 */
#ifndef LAB_UPCALL_TIMER_H
#define LAB_UPCALL_TIMER_H

#include "lab_native.h"

/* Each is a variant of lab/families/upcall.py, named as here without
 * UPCALL_, in lower case. */
enum upcall_timer_kind {
	UPCALL_TIMER_NANOSLEEP = 0,   /* clock_nanosleep(TIMER_ABSTIME) */
	UPCALL_TIMER_TIMERFD = 1,     /* periodic timerfd, read() */
	UPCALL_TIMER_SIGNAL = 2,      /* POSIX timer, SIGEV_THREAD_ID, the
					 * handler runs; thread in sigsuspend */
	UPCALL_TIMER_SIGNAL_BUSY = 3, /* ... thread busy in user space */
	UPCALL_TIMER_URING = 4, /* IORING_OP_TIMEOUT, absolute, re-armed */
	UPCALL_TIMER_URING_MULTISHOT = 5, /* IORING_TIMEOUT_MULTISHOT */
	UPCALL_NR_TIMER_KINDS = 6
};

struct upcall_timer_counts {
	uint64_t expiries;	 /* expiries the measured samples cover */
	uint64_t overruns;	 /* expiries that passed unseen (timerfd count
				 * > 1, timer_getoverrun()) */
	uint64_t clamped;	 /* multishot: gaps shorter than the interval */
	uint64_t sqes;		 /* io_uring: SQEs submitted in the window */
	uint64_t cqes;		 /* io_uring: CQEs reaped in the window */
	uint64_t cqes_more;	 /* ... with IORING_CQE_F_MORE */
	uint64_t timer_slack_ns; /* the thread's (PR_GET_TIMERSLACK) */
	int64_t drift_ns; /* multishot: last CQE minus start + n * interval */
	int32_t policy;	  /* SCHED_OTHER 0, SCHED_FIFO 1 as run */
	int32_t priority;
};

/*
 * The calling thread, pinned to cpu (SCHED_FIFO at rt_priority if > 0),
 * waits for warmup then nr_samples periodic expiries of interval_ns;
 * lateness_ns: when user code runs minus the intended expiry.  Each phase
 * (warm-up, measured) starts its own schedule from now.  Returns 0 or
 * -errno (-EPERM: rt_priority without the privilege).
 */
int upcall_timer(struct lab_handshake *hs, int kind, int cpu, int rt_priority,
		 uint64_t interval_ns, uint64_t warmup, uint64_t nr_samples,
		 double *lateness_ns, struct upcall_timer_counts *out);

#endif /* LAB_UPCALL_TIMER_H */
