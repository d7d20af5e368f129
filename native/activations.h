/*
 * Family `activations` (activations.c): scheduler activations on Linux, an
 * M:N fiber runtime with handoff on block, and the operations of the 1992
 * paper's Table IV (seeds 000, 002, 004).  Part of the cffi cdef (see
 * lab_native.h for the rules such a header follows: plain declarations
 * only).
 */
#ifndef LAB_ACTIVATIONS_H
#define LAB_ACTIVATIONS_H

#include "lab_native.h"

/* What happens when a fiber blocks in the kernel (lab/families/
 * activations.py names them as variants; the tests check they agree). */
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
};

/* Over the measured window. */
struct activations_counts {
	uint64_t completions;		/* measured tasks completed (= tasks) */
	uint64_t duplicate_completions; /* a task completed twice (must be 0) */
	uint64_t calls;			/* blocking-call sites executed */
	uint64_t blocking_calls;	/* ... drawn to block (probability p) */
	uint64_t block_events;		/* upcall: calls the kernel saw block */
	uint64_t eagain;		/* syncfirst: RWF_NOWAIT said EAGAIN */
	uint64_t handoffs;		/* VPs a spare took over */
	uint64_t handoff_samples;	/* handoff_ns entries written */
	uint64_t handoff_dropped;	/* handoffs beyond handoff_cap */
	uint64_t retakes;	/* a returning activation got its VP back */
	uint64_t lost_vps;	/* ... found it taken: fiber requeued */
	uint64_t spare_wakeups; /* futex wake-ups of spares */
	uint64_t idle_spare_wakeups; /* ... that found nothing to take */
	uint64_t stale_upcalls;	     /* ring records whose call had returned */
	uint64_t ring_records;	     /* ring records consumed */
	uint64_t ring_lost;	     /* records the ring had no room for */
	uint64_t ring_bad;	     /* records of a wrong size or slot */
	uint64_t pokes;		     /* eventfd pokes for another VP's record */
	uint64_t monitor_ticks;	     /* monitor: checks made */
	uint64_t monitor_retakes;    /* monitor: VPs taken from a stuck call */
	uint64_t inline_completions; /* uring: CQE already there at submit */
	uint64_t ran_while_blocked;  /* dispatches on a VP while another
					 * fiber of that VP was in its call */
	uint64_t ran_while_kernel_blocked; /* upcall: ... while the kernel
						 * had another activation of
						 * that VP blocked in a call */
	uint64_t max_running_activations;  /* most activations in fiber
						 * code at once (<= nr_vps) */
	uint64_t vp_busy_ns;	 /* sum over VPs of time in fiber code */
	uint64_t cpu_ns;	 /* process CPU time in the window */
	uint64_t activations;	 /* kernel threads of the runtime */
	uint64_t ready_by_ioctl; /* 1: TFD_IOC_SET_TICKS readies calls */
	uint64_t loops_per_us;	 /* spin calibration */
};

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

/* Table IV of Anderson et al. (1992): who does the operation. */
enum activations_table_kind {
	ACT_T4_FIBERS = 0,	       /* our runtime, no kernel support */
	ACT_T4_FIBERS_ACTIVATIONS = 1, /* ... with the upcall armed */
	ACT_T4_PTHREADS = 2,
	ACT_T4_PROCESSES = 3,
	ACT_T4_NR_KINDS = 4
};

enum activations_table_op {
	ACT_T4_NULL_FORK = 0,	/* create, run a null body, join */
	ACT_T4_SIGNAL_WAIT = 1, /* signal a waiter, then wait */
	ACT_T4_NR_OPS = 2
};

/*
 * One Table IV operation on cpu, in ns per operation: fibers average
 * ops_per_sample operations per sample, threads and processes time each
 * one alone (signal-wait: half a round trip).  The ring/vps/tids fds are
 * the upcall program's (fibers_activations), else -1.
 */
int activations_table4(struct lab_handshake *hs, int kind, int op, int cpu,
		       uint64_t warmup, uint64_t nr_samples,
		       uint32_t ops_per_sample, int ring_fd, int vps_fd,
		       int tids_fd, double *ns_per_op);

/* Size of the upcall program's VP slot as this file sees it (tests). */
size_t activations_slot_size(void);

#endif /* LAB_ACTIVATIONS_H */
