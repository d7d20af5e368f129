/*
 * Part of family `activations`: K42's soft and hard preemption of a VP
 * (seed 004; issue 14 item 4), activations_k42.c.  Part of the cffi cdef,
 * as the preprocessor expands it (native/build.py).
 */
#ifndef LAB_ACTIVATIONS_K42_H
#define LAB_ACTIVATIONS_K42_H

#include "lab_native.h"

/* How the "kernel" (a SCHED_FIFO requester on the VP's CPU) takes the CPU.
 * Python names the variants after these: K42_SOFT is "k42_soft". */
enum k42_variant {
	K42_SOFT = 0, /* ask; the runtime yields at its next safe point */
	K42_HARD = 1, /* just run: the kernel preempts at any instruction */
	K42_RSEQ_SLICE = 2, /* rseq time-slice extension: detected only */
	K42_NR_VARIANTS = 3
};

/* soft: how the request reaches the runtime; "flag" is K42_REQUEST_FLAG */
enum k42_request {
	K42_REQUEST_FLAG = 0,	/* a shared word the safe point reads */
	K42_REQUEST_SIGNAL = 1, /* a signal whose handler sets that word */
	K42_NR_REQUESTS = 2
};

enum k42_limits {
	K42_MAX_FIBERS = 256,
	K42_SLOT = 0 /* the activation's slot in lab_upcall_vps */
};

struct k42_config {
	int variant;	      /* enum k42_variant (soft or hard) */
	int request;	      /* enum k42_request (soft) */
	int cpu;	      /* the VP's CPU: activation and requester */
	int rt_priority;      /* the requester's SCHED_FIFO priority */
	uint32_t fibers;      /* fibers on the VP, round robin */
	uint64_t quantum_ns;  /* work between safe points (fiber switches) */
	uint64_t deadline_ns; /* soft: how long the requester waits */
	uint64_t hold_ns;     /* how long the requester keeps the CPU */
	uint64_t interval_ns; /* between requests */
	uint64_t warmup;      /* requests before the window */
	uint64_t samples;     /* requests in the window: one sample each */
	int vps_fd;	      /* the upcall program's maps (preempt), or -1 */
	int tids_fd;
};

/*
 * One run's counts, declared once: this list makes struct k42_counts and
 * the counters Python stores (read from cffi).  Over the window, but the
 * ones marked (run): warmup included.
 */
#define K42_COUNTERS(X)                                                       \
	/* requests made (= samples) */                                       \
	X(requests)                                                           \
	/* requests the requester got the CPU for: exactly once each */       \
	X(answers)                                                            \
	/* soft: the runtime gave the VP up at a safe point */                \
	X(released_at_safe_point)                                             \
	/* soft: past the deadline the requester ran anyway (hard) */         \
	X(deadline_misses)                                                    \
	/* soft: safe points that found a request already taken (run) */      \
	X(late_safe_points)                                                   \
	/* soft, signal: the handler ran (run) */                             \
	X(signals_handled)                                                    \
	/* fiber switches (safe points passed) (run) */                       \
	X(safe_points)                                                        \
	/* upcall slot: the requester found the activation preempted by     \
	 * itself (a kernel preemption, new since its last request) */ \
	X(preempted_by_requester)                                             \
	/* ... found it already off the CPU (another task had it) */          \
	X(vp_off_cpu_at_request)                                              \
	/* ... found it neither (must be 0) */                                \
	X(unexplained_requests)                                               \
	/* slices ended in the quiet phases (no requests) */                  \
	X(quiet_slices)                                                       \
	/* length of the quiet phases (before and after the requests) */      \
	X(quiet_ns)                                                           \
	/* slices ended in the request phase */                               \
	X(request_slices)                                                     \
	/* length of the request phase */                                     \
	X(request_ns)                                                         \
	/* the requester's time on the CPU after its stamps (its hold) */     \
	X(hold_ns)                                                            \
	/* fibers whose state (an LCG chain) differs from the unpreempted   \
	 * result (must be 0) */ \
	X(state_mismatches)                                                   \
	/* work per slice, in LCG steps (calibrated: quantum_ns) */           \
	X(loops_per_slice)                                                    \
	/* safe_point_ns entries written */                                   \
	X(safe_point_samples)

#define K42_COUNTER_FIELD(name) uint64_t name;
struct k42_counts {
	K42_COUNTERS(K42_COUNTER_FIELD)
};
#undef K42_COUNTER_FIELD

/*
 * warmup requests, the window (a quiet phase, samples requests one per
 * interval_ns, a quiet phase of the same length as the first), done.
 * latency_ns (samples entries): the requester's wanted time (its timer)
 * to it running; safe_point_ns (samples entries, soft): request posted to
 * the runtime at its safe point, out->safe_point_samples of them.  The
 * caller's policy and affinity are never touched (the threads are made
 * with theirs).  0 or -errno (-EINVAL: bad config; -EPERM: no SCHED_FIFO).
 */
int k42_run(struct lab_handshake *hs, const struct k42_config *cfg,
	    double *latency_ns, double *safe_point_ns, struct k42_counts *out);

/*
 * The rseq time-slice extension (Thomas Gleixner, 2025; in the tip tree
 * from 2026-01: prctl(PR_RSEQ_SLICE_EXTENSION = 79, GET = 1), the rseq
 * area's slice_ctrl request/granted bits, rseq_slice_yield(2)): 0 when
 * this kernel offers it to the caller, else -errno (-EINVAL: unknown
 * prctl, the kernel predates it; -ENOTSUPP/-EOPNOTSUPP: configured out).
 */
int k42_rseq_slice_probe(void);

/* LCG steps of the fibers' computation from x, skipped ahead (tests). */
uint64_t k42_lcg_skip(uint64_t x, uint64_t steps);

#endif /* LAB_ACTIVATIONS_K42_H */
