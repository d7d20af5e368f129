/*
 * Family `upcall`, the preemption upcall's first piece (upcall_preempt.c):
 * a registered VP thread spinning inside an rseq critical section (glibc's
 * registered area) is preempted by a SCHED_FIFO competitor on its CPU; the
 * kernel aborts the section and the thread resumes at its abort handler
 * -- the nearest thing Linux has to an upcall into the preempted
 * activation (seed 002).  Part of the cffi cdef (see lab_native.h).
 */
#ifndef LAB_UPCALL_PREEMPT_H
#define LAB_UPCALL_PREEMPT_H

#include "lab_native.h"
#include "upcall.h"

/* 0 if this thread has glibc's rseq area registered (and this is
 * x86-64), else -EOPNOTSUPP. */
int upcall_rseq_available(void);

struct upcall_rseq_result {
	uint64_t wakes;	      /* the competitor's */
	uint64_t aborts;      /* the abort handler ran */
	uint64_t fixups;      /* the worker's slot's rseq_fixups at the end:
			       * rseq:rseq_ip_fixup (lab_upcall_rseq_fixup) */
	uint64_t preemptions; /* the slot's preempt_seq (lab_upcall_preempt,
			       * if attached) */
	uint64_t nivcsw;      /* the worker's involuntary switches (/proc) */
	uint64_t worker_tid;
	uint64_t competitor_tid;
};

/*
 * Test helper: the worker (pinned to cpu, SCHED_FIFO at
 * competitor_priority - 1, registered as VP 0 before it enters its
 * critical section and unregistered after it left it) spins inside the
 * section; the competitor (same cpu, SCHED_FIFO competitor_priority)
 * sleeps 200 us to an absolute deadline and runs 20 us, nr_wakes times.
 * 0 or -errno (-EOPNOTSUPP: no rseq area).
 */
int upcall_rseq_aborts(const struct upcall_maps *maps, int cpu,
		       int competitor_priority, uint32_t nr_wakes,
		       struct upcall_rseq_result *out);

#endif /* LAB_UPCALL_PREEMPT_H */
