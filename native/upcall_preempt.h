/*
 * Family `upcall`, preemption upcalls (upcall_preempt.c): seed 002's
 * "processor has been preempted", told by the upcall program's ring or
 * flag to another VP or to the preempted activation itself, or by the
 * kernel resuming the preempted thread at its rseq abort handler -- the
 * nearest thing Linux has to an upcall into the preempted activation.
 * Part of the cffi cdef (see lab_native.h).
 */
#ifndef LAB_UPCALL_PREEMPT_H
#define LAB_UPCALL_PREEMPT_H

#include "lab_native.h"
#include "upcall.h"

/* 0 if this thread has glibc's rseq area registered (and this is
 * x86-64), else -EOPNOTSUPP. */
int upcall_rseq_available(void);

/*
 * Preemption upcalls (event "preempt" of the upcall family): the worker
 * (pinned to cpu, SCHED_FIFO competitor_priority - 1, registered as VP 0)
 * spins in user space; the competitor (same cpu, SCHED_FIFO
 * competitor_priority) sleeps UP_PREEMPT_GAP_NS (its own hrtimer, on
 * cpu), runs burst_ns, and says from the worker's slot whether that wake
 * took the CPU from the worker (if the kernel's fair server ran a load
 * task there, it did not: a retry).  Each preemption by the competitor
 * the learner sees is a sample; the first warmup are not recorded.  Who
 * learns, and how:
 *   cross_cpu (same_cpu = 0): a scheduler, the calling thread pinned to
 *     sched_cpu (another cpu: a FIFO worker spinning would starve it on
 *     cpu), at once -- bpf_ringbuf: epoll on the ring, records of kind
 *     UP_KIND_PREEMPT; bpf_flag: spins on preempt_seq.
 *   same_cpu = 1: the preempted activation itself, when it runs again
 *     (seed 002's upcall "into the preempted activation") -- bpf_flag:
 *     its spin loop looks at its slot's preempt_seq; bpf_ringbuf: it
 *     consumes the ring without sleeping; rseq_abort: it spins inside an
 *     rseq critical section (glibc's area) and the kernel resumes it at
 *     the abort handler, which reads the slot.  The calling thread, on
 *     sched_cpu, only opens and closes the window.  since_resume_ns: the
 *     worker's stamp minus the program's resume_ns (its switch back in).
 * latency_ns: the learner's stamp minus the program's preempt_ns (the
 * record's ktime_ns).  bystander: the worker is not registered (a test:
 * nothing may be published); warmup + nr_samples competitor wakes, no
 * latency (the arrays may be NULL; since_resume_ns always may, cross_cpu).
 * 0 or -errno (-EINVAL: a bad config; -ETIMEDOUT: no preemption came for
 * 2 s; -EOPNOTSUPP: rseq_abort without glibc's rseq area).
 */
struct upcall_preempt_config {
	int mechanism;		 /* UPCALL_BPF_RINGBUF, UPCALL_BPF_FLAG or
				  * UPCALL_RSEQ_ABORT (same_cpu only) */
	int same_cpu;		 /* 1: the worker learns on its return */
	int cpu;		 /* the worker and the competitor */
	int sched_cpu;		 /* the calling thread: not cpu */
	int competitor_priority; /* SCHED_FIFO 2..99; the worker one below */
	uint64_t burst_ns;	 /* the competitor's run per wake */
	uint64_t warmup;	 /* unrecorded preemptions before the window */
	uint64_t nr_samples;	 /* preemptions measured */
	int bystander;		 /* 1: the worker is not registered */
};

/* Over the whole run (registration to unregistration), so that they add
 * up: preemptions == by_competitor + others + missed_events, and (the
 * kernel's own count) == worker_nivcsw. */
struct upcall_preempt_counts {
	uint64_t upcalls;	/* samples recorded (the window) */
	uint64_t preemptions;	/* the slot's preempt_seq moved (published) */
	uint64_t by_competitor; /* ... seen, preempted_by the competitor */
	uint64_t others;	/* ... seen, by another thread (no sample) */
	uint64_t missed_events; /* ... folded: preempt_seq moved by more than
				 * one between two looks (bpf_flag, rseq) */
	uint64_t wakes;		/* the competitor's */
	uint64_t retries;	/* ... that preempted nothing (its own look) */
	uint64_t clamped;	/* latencies below 0 recorded as 0 */
	uint64_t ring_records;	/* consumed; the next three must be 0 */
	uint64_t ring_lost;
	uint64_t ring_bad;	/* wrong size, VP, kind or order */
	uint64_t foreign;	/* records of another thread */
	uint64_t worker_nivcsw; /* the worker's involuntary switches (/proc) */
	uint64_t rseq_aborts;	/* rseq_abort: the abort handler ran */
	uint64_t rseq_fixups;	/* ... rseq:rseq_ip_fixup of the worker (the
				 * slot's rseq_fixups, lab_upcall_rseq_fixup) */
	uint64_t worker_tid;
	uint64_t competitor_tid;
};

int upcall_preempt_run(struct lab_handshake *hs,
		       const struct upcall_preempt_config *cfg,
		       const struct upcall_maps *maps, double *latency_ns,
		       double *since_resume_ns,
		       struct upcall_preempt_counts *out);

#endif /* LAB_UPCALL_PREEMPT_H */
