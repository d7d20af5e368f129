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

/*
 * Preemption upcalls (event "preempt" of the upcall family): the worker
 * (pinned to cpu, SCHED_FIFO competitor_priority - 1, registered as VP 0)
 * spins in user space; the competitor (same cpu, SCHED_FIFO
 * competitor_priority) sleeps in read() of a timerfd the scheduler arms
 * (absolute, UP_PREEMPT_GAP_NS ahead), runs burst_ns and looks at the
 * worker's slot: did it take the CPU from the worker (preempted_by its
 * tid, preempt_seq moved since the arming)?  If not (the kernel's fair
 * server ran a load task there, another thread had preempted the worker
 * first) the scheduler re-arms: a retry.  The scheduler (the calling
 * thread, pinned to sched_cpu, another cpu: a FIFO worker spinning would
 * starve it on cpu) learns of each preemption by mechanism (bpf_ringbuf:
 * epoll on the ring, records of kind UP_KIND_PREEMPT; bpf_flag: spins on
 * preempt_seq) and records latency_ns: its stamp minus the program's
 * preempt_ns (the record's ktime_ns).  One preemption by the competitor
 * per sample.  bystander: the worker is not registered (a test: nothing
 * may be published); each competitor wake then ends an iteration and no
 * latency is recorded.
 * 0 or -errno (-EINVAL: a bad config; -ETIMEDOUT: a wake never came).
 */
struct upcall_preempt_config {
	int mechanism;		 /* UPCALL_BPF_RINGBUF or UPCALL_BPF_FLAG */
	int cpu;		 /* the worker and the competitor */
	int sched_cpu;		 /* the scheduler: not cpu */
	int competitor_priority; /* SCHED_FIFO 2..99; the worker one below */
	uint64_t burst_ns;	 /* the competitor's run per wake */
	uint64_t warmup;	 /* unrecorded preemptions before the window */
	uint64_t nr_samples;	 /* preemptions measured */
	int bystander;		 /* 1: the worker is not registered */
};

/* Over the measured window unless the comment says otherwise. */
struct upcall_preempt_counts {
	uint64_t upcalls;	/* samples recorded */
	uint64_t preemptions;	/* the slot's preempt_seq moved (published) */
	uint64_t by_competitor; /* ... with preempted_by the competitor */
	uint64_t others;	/* ... by another thread (no sample) */
	uint64_t retries;	/* competitor wakes that preempted nothing */
	uint64_t wakes;		/* competitor wakes */
	uint64_t missed_events; /* preempt_seq moved by more than one between
				 * two looks (bpf_flag) */
	uint64_t clamped;	/* latencies below 0 recorded as 0 */
	/* the ring: records consumed in the window; the others (whole run)
	 * must be 0 */
	uint64_t ring_records;
	uint64_t ring_lost;
	uint64_t ring_bad;	/* wrong size, VP, kind or order */
	uint64_t foreign;	/* records of another thread */
	uint64_t worker_nivcsw; /* the worker's involuntary switches (/proc),
				 * window */
	uint64_t worker_tid;
	uint64_t competitor_tid;
};

int upcall_preempt_run(struct lab_handshake *hs,
		       const struct upcall_preempt_config *cfg,
		       const struct upcall_maps *maps, double *latency_ns,
		       struct upcall_preempt_counts *out);

#endif /* LAB_UPCALL_PREEMPT_H */
