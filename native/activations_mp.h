/*
 * Family `activations`, its multiprogramming part (activations_mp.c):
 * runtime processes sharing the CPUs, each running an N-body-like
 * parallel workload with locks and a barrier per time step, with or
 * without processor allocation (Anderson et al. 1992, the N-body
 * experiment; issue 14, item 3).  Part of the cffi cdef, as the
 * preprocessor expands it (native/build.py).
 */
#ifndef LAB_ACTIVATIONS_MP_H
#define LAB_ACTIVATIONS_MP_H

#include "lab_native.h"

/* How a runtime waits for a lock and for the step's last body.  Python
 * names the variants after these enumerators: ACT_MP_OBLIVIOUS is
 * "mp_oblivious". */
enum activations_mp_variant {
	ACT_MP_OBLIVIOUS = 0,  /* spin: the original FastThreads */
	ACT_MP_SPIN_YIELD = 1, /* spin a while, then sched_yield() */
	ACT_MP_INFORMED = 2,   /* spin while the holder's VP runs, else sleep */
	ACT_MP_PTHREADS = 3,   /* kernel threads, pthread mutexes */
	ACT_MP_ALLOCATION = 4, /* informed + processor allocation */
	ACT_MP_NR_VARIANTS = 5
};

/* What activations_mp_run() accepts (it refuses a config beyond them). */
enum activations_mp_limits {
	ACT_MP_MAX_PROCESSES = 8,
	ACT_MP_MAX_VPS = 8, /* per process; processes x vps upcall slots */
	ACT_MP_MAX_BODIES = 4096,
	ACT_MP_MAX_STEPS = 10000,
	ACT_MP_MAX_LOCKS = 64
};

struct activations_mp_config {
	int variant;	     /* enum activations_mp_variant */
	uint32_t processes;  /* runtime processes forked from the caller */
	uint32_t nr_vps;     /* VPs per process, VP i on vp_cpus[i] */
	const int *vp_cpus;  /* the CPUs every process runs on */
	uint32_t bodies;     /* body updates per time step (the tasks) */
	uint32_t time_steps; /* measured steps per process */
	uint32_t locks;	     /* body b updates under lock b % locks */
	uint64_t work_ns;    /* CPU work per body, outside the lock */
	uint64_t cs_ns;	     /* CPU work inside the lock */
	int vps_fd;	     /* the upcall program's maps (preempt) */
	int tids_fd;
};

/*
 * One process's counts, declared once: this list makes struct
 * activations_mp_counts, each VP's own counts, their sum, and the counters
 * Python stores (read from cffi).  Counts marked (process) are set once
 * per process, the others summed over its VPs, over all its steps (the
 * one warm-up step and the steps run after its measured ones, while the
 * others finish, included).
 */
#define ACTIVATIONS_MP_COUNTERS(X)                                           \
	/* body updates made */                                              \
	X(body_updates)                                                      \
	/* an update of a body already updated this step (must be 0) */      \
	X(duplicate_updates)                                                 \
	/* (process) bodies not updated once per step run (must be 0) */     \
	X(missing_updates)                                                   \
	/* (process) time steps run */                                       \
	X(steps_run)                                                         \
	/* locks taken */                                                    \
	X(lock_acquires)                                                     \
	/* ... found held */                                                 \
	X(lock_contended)                                                    \
	/* time spinning for a lock */                                       \
	X(lock_spin_ns)                                                      \
	/* time spinning for the step's last body */                         \
	X(barrier_spin_ns)                                                   \
	/* sched_yield() calls (spin_yield) */                               \
	X(yields)                                                            \
	/* a lock holder's VP preempted while it held the lock (slots) */    \
	X(holder_preemptions)                                                \
	/* preemptions of its VPs the upcall program published */            \
	X(preemptions)                                                       \
	/* informed: a waiter's polls that found the holder preempted */     \
	X(saw_preempted)                                                     \
	/* informed: a waiter lent its CPU to the preempted holder */        \
	X(recoveries)                                                        \
	/* ... time the lenders slept */                                     \
	X(lent_ns)                                                           \
	/* ... holders moved back home after their release */                \
	X(lend_returns)                                                      \
	/* ... a move home that failed (sched_setaffinity; must be 0) */     \
	X(lend_errors)                                                       \
	/* a VP slept for the step's last body */                            \
	X(barrier_sleeps)                                                    \
	/* allocation: a preempted VP gave its processor back */             \
	X(processor_taken)                                                   \
	/* allocation: asked for all its VPs again at a step's start */      \
	X(add_processor)                                                     \
	/* allocation: a VP over the allocation parked */                    \
	X(parks)                                                             \
	/* allocation: a parked VP took a processor it was given */          \
	X(unparks)                                                           \
	/* allocation: a take with VPs owned above the allocation (must    \
	 * be 0) */ \
	X(alloc_violations)                                                  \
	/* allocation: reallocations this process's requests made */         \
	X(reallocations)                                                     \
	/* (process) VPs owned when the workload started */                  \
	X(initial_owned)                                                     \
	/* (process) VPs owned when it stopped */                            \
	X(final_owned)

#define ACTIVATIONS_MP_COUNTER_FIELD(name) uint64_t name;
struct activations_mp_counts {
	ACTIVATIONS_MP_COUNTERS(ACTIVATIONS_MP_COUNTER_FIELD)
};
#undef ACTIVATIONS_MP_COUNTER_FIELD

/* One process of a run: its measured steps' span, and its counts. */
struct activations_mp_process {
	uint64_t begin_ns; /* its warm-up step done */
	uint64_t end_ns;   /* its time_steps measured steps done */
	int32_t pid;
	int32_t status; /* waitpid() status (0: exited with 0) */
	struct activations_mp_counts counts;
};

/*
 * Fork cfg->processes runtime processes on the same CPUs, open the window
 * when all are set up, and close it when every one has run its measured
 * steps (a process done first keeps running steps, so every measured step
 * ran against the others).  out[i] is process i, step_ns[i * time_steps +
 * s] its measured step s.  Children die with the caller (PR_SET_PDEATHSIG)
 * and are reaped on every path.  0 or -errno (-EINVAL: a bad config,
 * -ECHILD: a process died, -ETIMEDOUT: one stopped making progress).
 */
int activations_mp_run(struct lab_handshake *hs,
		       const struct activations_mp_config *cfg,
		       struct activations_mp_process *out, double *step_ns);

#endif /* LAB_ACTIVATIONS_MP_H */
