/*
 * Family `activations`: scheduler activations on Linux, an M:N fiber
 * runtime with handoff on block (activations.c), and the operations of
 * the 1992 paper's Table IV (activations_table4.c); seeds 000, 002, 004.
 * Part of the cffi cdef, as the preprocessor expands it (native/build.py):
 * declarations, and the macros that make them.
 */
#ifndef LAB_ACTIVATIONS_H
#define LAB_ACTIVATIONS_H

#include "lab_native.h"

/* What happens when a fiber blocks in the kernel.  Python names the
 * variants after these enumerators: ACT_FUTEX_HINT is "futex_hint". */
enum activations_variant {
	ACT_NONE = 0, /* nothing: the VP is lost until the call returns */
	ACT_FUTEX_HINT =
		1, /* wrapper hands the VP to a spare before every call */
	ACT_SYNCFIRST = 2, /* RWF_NOWAIT first, hand off only on EAGAIN */
	ACT_MONITOR = 3,   /* a sysmon thread retakes VPs stuck in a call */
	ACT_UPCALL = 4,	   /* BPF block upcall wakes a spare activation */
	ACT_URING = 5,	   /* the call is an io_uring SQE: never blocks */
	ACT_PTHREADS = 6,  /* one kernel thread per in-flight task */
	ACT_NR_VARIANTS = 7
};

/* What a blocking call is.  Python names the kinds after these
 * enumerators: ACT_BLOCK_UFFD is "uffd". */
enum activations_block_kind {
	ACT_BLOCK_TIMERFD = 0, /* read() of the fiber's timerfd, block_ns */
	ACT_BLOCK_FAULT = 1,   /* read touch of an evicted file page: a major
				* fault, as long as the disk takes */
	ACT_BLOCK_UFFD = 2,    /* read touch of a missing page of a userfaultfd
				* range: the runtime's handler resolves it
				* after block_ns */
	ACT_NR_BLOCK_KINDS = 3
};

/* What activations_run() accepts (it refuses a config beyond them). */
enum activations_limits {
	ACT_MAX_VPS = 64,      /* a record's pokes are a bit per VP */
	ACT_MAX_SLOTS = 64,    /* lab_upcall_vps entries: one per activation */
	ACT_MAX_FIBERS = 4096, /* fibers (pthreads: threads) */
	/* fault, uffd: pages, one per blocking call (256 MiB) */
	ACT_MAX_FAULT_PAGES = 65536
};

struct activations_config {
	int variant;	       /* enum activations_variant */
	uint32_t nr_vps;       /* virtual processors (pthreads: CPUs) */
	const int *vp_cpus;    /* VP i runs on vp_cpus[i] */
	uint32_t spares;       /* spare activations per VP, made up front */
	uint32_t concurrency;  /* fibers (pthreads: threads), tasks in flight */
	uint32_t steps;	       /* work + call steps per task */
	uint64_t warmup_tasks; /* run before the measured window */
	uint64_t tasks;	       /* measured: one task_ns sample each */
	uint64_t work_ns;      /* CPU work per step (calibrated spin) */
	double p;	       /* probability that a step's call blocks */
	uint64_t block_ns;     /* how long a blocking call blocks */
	uint64_t monitor_ns;   /* monitor: period and threshold */
	uint64_t seed;	       /* per-task xorshift streams derive from it */
	int ring_fd;	       /* upcall: the upcall program's maps, else -1 */
	int vps_fd;
	int tids_fd;
	int block_kind;	 /* enum activations_block_kind */
	const char *dir; /* fault: where the scratch file is made */
};

/*
 * The runtime's counts over the measured window, declared once: this list
 * makes struct activations_counts, each thread's own counts (the same
 * struct), their sum and the window's delta (activations.c), and the
 * counters Python stores (read from cffi).  Counts marked (window) are set
 * once for the window; every other one is counted by the thread that saw
 * it.
 */
#define ACTIVATIONS_COUNTERS(X)                                                 \
	/* measured tasks completed (= tasks) */                                \
	X(completions)                                                          \
	/* a task completed twice (must be 0) */                                \
	X(duplicate_completions)                                                \
	/* blocking-call sites executed */                                      \
	X(calls)                                                                \
	/* ... drawn to block (probability p) */                                \
	X(blocking_calls)                                                       \
	/* upcall: calls the kernel saw block */                                \
	X(block_events)                                                         \
	/* upcall: ... that returned before a spare took the VP (the block    \
	 * was shorter than the handoff: the VP stayed its own) */ \
	X(returned_first)                                                       \
	/* syncfirst: RWF_NOWAIT said EAGAIN */                                 \
	X(eagain)                                                               \
	/* VPs a spare took over */                                             \
	X(handoffs)                                                             \
	/* (window) handoff_ns entries written */                               \
	X(handoff_samples)                                                      \
	/* handoffs beyond handoff_cap */                                       \
	X(handoff_dropped)                                                      \
	/* a returning activation got its VP back */                            \
	X(retakes)                                                              \
	/* ... found it taken: fiber requeued */                                \
	X(lost_vps)                                                             \
	/* futex wake-ups of spares */                                          \
	X(spare_wakeups)                                                        \
	/* ... that found nothing to take */                                    \
	X(idle_spare_wakeups)                                                   \
	/* ring records whose call had returned */                              \
	X(stale_upcalls)                                                        \
	/* ring records consumed */                                             \
	X(ring_records)                                                         \
	/* (window) records the ring had no room for */                         \
	X(ring_lost)                                                            \
	/* records of a wrong size or slot */                                   \
	X(ring_bad)                                                             \
	/* eventfd pokes for another VP's record */                             \
	X(pokes)                                                                \
	/* monitor: checks made */                                              \
	X(monitor_ticks)                                                        \
	/* monitor: VPs taken from a stuck call */                              \
	X(monitor_retakes)                                                      \
	/* uring: CQE already there at submit (the call did not block) */       \
	X(inline_completions)                                                   \
	/* dispatches on a VP while another fiber of that VP was in its      \
	 * call: the point of handoff (0 for none; uring: waiting for its    \
	 * CQE) */  \
	X(ran_while_blocked)                                                    \
	/* upcall: ... while the kernel had another activation of that VP    \
	 * blocked in the call (its slot's block_seq moved) */  \
	X(ran_while_kernel_blocked)                                             \
	/* (window) most activations in fiber code at once (<= nr_vps) */       \
	X(max_running_activations)                                              \
	/* sum over VPs of time in fiber code */                                \
	X(vp_busy_ns)                                                           \
	/* (window) process CPU time */                                         \
	X(cpu_ns)                                                               \
	/* (window) kernel threads of the runtime */                            \
	X(activations)                                                          \
	/* (window) 1: TFD_IOC_SET_TICKS readies calls */                       \
	X(ready_by_ioctl)                                                       \
	/* fault, uffd: tasks whose calls took a page fault */                  \
	X(faults_taken)                                                         \
	/* fault, uffd: the faulting threads' ru_majflt deltas, summed */       \
	X(majflt)                                                               \
	/* uffd: fault messages the handler read */                             \
	X(uffd_messages)                                                        \
	/* uffd: ... pages it resolved (UFFDIO_COPY) */                         \
	X(uffd_resolved)                                                        \
	/* (window) spin calibration */                                         \
	X(loops_per_us)

#define ACTIVATIONS_COUNTER_FIELD(name) uint64_t name;
struct activations_counts {
	ACTIVATIONS_COUNTERS(ACTIVATIONS_COUNTER_FIELD)
};
#undef ACTIVATIONS_COUNTER_FIELD

/*
 * Run warmup_tasks, open the window, run tasks more, close it.  task_ns
 * (tasks entries) gets each measured task's latency, handoff_ns up to
 * handoff_cap handoff latencies (out->handoff_samples of them).  0 or
 * -errno (-EINVAL: a bad config; -ENOTSUP: no fibers here).
 */
int activations_run(struct lab_handshake *hs,
		    const struct activations_config *cfg, double *task_ns,
		    double *handoff_ns, uint64_t handoff_cap,
		    struct activations_counts *out);

/* Table IV of Anderson et al. (1992): who does the operation.  Python
 * names the variants after these enumerators: ACT_T4_FIBERS is
 * "t4_fibers". */
enum activations_table_kind {
	ACT_T4_FIBERS = 0,	/* our runtime, no kernel support */
	ACT_T4_ACTIVATIONS = 1, /* ... on activations, the upcall armed */
	ACT_T4_PTHREADS = 2,
	ACT_T4_PROCESSES = 3,
	ACT_T4_NR_KINDS = 4
};

/* Python's op names: ACT_T4_NULL_FORK is "null_fork". */
enum activations_table_op {
	ACT_T4_NULL_FORK = 0,	/* create, run a null body, join */
	ACT_T4_SIGNAL_WAIT = 1, /* signal a waiter, then wait */
	ACT_T4_NR_OPS = 2
};

/*
 * One Table IV operation on cpu, in ns per operation: fibers average
 * ops_per_sample operations per sample, threads and processes time each
 * one alone (signal-wait: half a round trip).  The ring/vps/tids fds are
 * the upcall program's (ACT_T4_ACTIVATIONS), else -1.
 */
int activations_table4(struct lab_handshake *hs, int kind, int op, int cpu,
		       uint64_t warmup, uint64_t nr_samples,
		       uint32_t ops_per_sample, int ring_fd, int vps_fd,
		       int tids_fd, double *ns_per_op);

/* Size of the upcall program's VP slot as this file sees it (tests). */
size_t activations_slot_size(void);

#endif /* LAB_ACTIVATIONS_H */
