/*
 * Family `activations`, part "critical sections that survive preemption"
 * (activations_cs.c; issue 14 item 2): fibers on VPs taking user-level
 * locks (act_lock_internal.h) while pinned SCHED_FIFO competitors preempt
 * the VPs.  Part of the cffi cdef, as the preprocessor expands it.
 */
#ifndef LAB_ACTIVATIONS_CS_H
#define LAB_ACTIVATIONS_CS_H

#include "lab_native.h"

/* How a critical section survives its VP's preemption.  Python names the
 * variants after these enumerators: ACT_CS_SPIN_YIELD is "cs_spin_yield". */
enum activations_cs_variant {
	ACT_CS_OBLIVIOUS = 0,  /* test-and-test-and-set spin (FastThreads) */
	ACT_CS_SPIN_YIELD = 1, /* spin spin_limit times, then sched_yield */
	ACT_CS_INFORMED = 2,   /* spin while the holder runs; lend it the
				* CPU when its slot says preempted */
	ACT_CS_RSEQ = 3,       /* per-VP data in an rseq critical section,
				* restarted on abort: nothing is held */
	ACT_CS_PTHREADS = 4,   /* kernel threads, pthread_mutex (futex) */
	ACT_CS_NR_VARIANTS = 5
};

enum activations_cs_limits {
	ACT_CS_MAX_LOCKS = 1024,
	ACT_CS_MAX_COMPETITORS = 64,
	ACT_CS_MAX_THREADS = 64 /* pthreads: one slot of the program each */
};

struct activations_cs_config {
	int variant;	       /* enum activations_cs_variant */
	uint32_t nr_vps;       /* VPs (pthreads: CPUs its threads may use) */
	const int *vp_cpus;    /* VP i runs on vp_cpus[i] */
	uint32_t concurrency;  /* fibers (pthreads: threads) */
	uint32_t locks;	       /* shared locks; a task takes one */
	uint64_t warmup_tasks; /* run before the measured window */
	uint64_t tasks;	       /* measured: one task_ns sample each */
	uint64_t work_ns;      /* CPU work before the critical section */
	uint64_t cs_ns;	       /* CPU work inside it */
	uint32_t spin_limit;   /* spin_yield: spins before each yield */
	uint32_t competitors;  /* SCHED_FIFO threads, i on VP i mod nr_vps */
	uint64_t competitor_period_ns;
	uint64_t competitor_burst_ns;
	uint64_t seed; /* the tasks' locks and the competitors' phases */
	int vps_fd;    /* the upcall program's maps (preempt function) */
	int tids_fd;
};

/*
 * One acquisition, in the order of the lock's own sequence (`seq`: the
 * lock's count of critical sections before this one, read inside it).
 * Written by the holder before it releases; ACT_CS_ACQ_FIELDS makes the
 * struct, Python reads its fields from cffi.
 */
#define ACT_CS_ACQ_FIELDS(X)                                          \
	X(lock)                                                       \
	X(fiber)                                                      \
	X(seq)	       /* the lock's count when acquired */           \
	X(seq_release) /* ... just before the release (= seq + 1) */  \
	X(preemptions) /* the holder's activation's, while it held */ \
	X(home_cpu)                                                   \
	X(release_cpu) /* where it left the section */                \
	X(slot)

#define ACT_CS_ACQ_FIELD(name) uint32_t name;
struct activations_cs_acq {
	ACT_CS_ACQ_FIELDS(ACT_CS_ACQ_FIELD)
};
#undef ACT_CS_ACQ_FIELD

/*
 * The part's counts over the measured window (window): set once; every
 * other one is summed over the threads that saw it.
 */
#define ACTIVATIONS_CS_COUNTERS(X)                                             \
	/* measured tasks completed (= tasks) */                               \
	X(completions)                                                         \
	/* a task completed twice (must be 0) */                               \
	X(duplicate_completions)                                               \
	/* (window) sections whose lock count moved under them, and lost     \
	 * updates of the protected counters (must be 0) */ \
	X(exclusion_violations)                                                \
	/* critical sections entered */                                        \
	X(acquisitions)                                                        \
	/* ... that found the lock held */                                     \
	X(contended)                                                           \
	/* preemptions of a holder's activation while it held (slots) */       \
	X(holder_preemptions)                                                  \
	/* critical sections preempted at least once */                        \
	X(preempted_sections)                                                  \
	/* ... left on another CPU than their VP's (continued elsewhere) */    \
	X(continued_elsewhere)                                                 \
	/* time waiters spent from a failed try to the acquire, not lent */    \
	X(spin_ns)                                                             \
	/* loads of a held lock word */                                        \
	X(spin_iters)                                                          \
	X(yields)                                                              \
	/* FUTEX_WAIT calls of the lock */                                     \
	X(futex_waits)                                                         \
	/* informed: polls that found the holder preempted */                  \
	X(saw_preempted)                                                       \
	/* informed: preempted holders given the waiter's CPU */               \
	X(recoveries)                                                          \
	/* ... time the lenders slept */                                       \
	X(lent_ns)                                                             \
	/* ... holders that went home after their section */                   \
	X(returns)                                                             \
	/* rseq: critical sections aborted by the kernel and restarted */      \
	X(rseq_restarts)                                                       \
	/* competitor bursts begun in the window */                            \
	X(competitor_bursts)                                                   \
	/* (window) process CPU time */                                        \
	X(cpu_ns)                                                              \
	/* (window) kernel threads running tasks */                            \
	X(threads)                                                             \
	/* (window) spin calibration */                                        \
	X(loops_per_us)

#define ACTIVATIONS_CS_COUNTER_FIELD(name) uint64_t name;
struct activations_cs_counts {
	ACTIVATIONS_CS_COUNTERS(ACTIVATIONS_CS_COUNTER_FIELD)
};
#undef ACTIVATIONS_CS_COUNTER_FIELD

/*
 * Run warmup_tasks, open the window, run tasks more, close it.  task_ns
 * (tasks entries): each measured task from its release to its release of
 * the lock.  acq (acq_cap entries, may be NULL): the window's
 * acquisitions, *nr_acq of them (rseq: none).  0 or -errno (-EINVAL: a bad
 * config; -ENOTSUP: no fibers or no rseq here; -EPERM: no SCHED_FIFO).
 */
int activations_cs_run(struct lab_handshake *hs,
		       const struct activations_cs_config *cfg, double *task_ns,
		       struct activations_cs_acq *acq, uint64_t acq_cap,
		       uint64_t *nr_acq, struct activations_cs_counts *out);

#endif /* LAB_ACTIVATIONS_CS_H */
