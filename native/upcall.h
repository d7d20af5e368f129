/*
 * Family `upcall` (upcall.c; the upcall program's plumbing, shared with
 * the activations family, upcall_program.c): the kernel running, or
 * waking, user-level scheduling code on an event (seeds 000 and 002); its
 * timers are upcall_timer.h.  Part of the cffi cdef (see lab_native.h for
 * the rules such a header follows: plain declarations only).
 */
#ifndef LAB_UPCALL_H
#define LAB_UPCALL_H

#include "lab_native.h"

/* How the scheduler learns of the event: each is a variant of
 * lab/families/upcall.py, named as here without UPCALL_, in lower case
 * (Python reads the names from cffi). */
enum upcall_mechanism {
	UPCALL_BPF_RINGBUF = 0,	      /* epoll on the BPF ring buffer */
	UPCALL_BPF_FLAG = 1,	      /* spin on the mmap'ed BPF array */
	UPCALL_BPF_FLAG_SLEEP = 2,    /* spin spin_ns, then epoll on the ring */
	UPCALL_FUTEX_HINT = 3,	      /* the worker FUTEX_WAKEs the scheduler */
	UPCALL_URING_CQE_POLL = 4,    /* the call is an SQE; spin on the CQ */
	UPCALL_URING_CQE_WAIT = 5,    /* ...; io_uring_wait_cqe() */
	UPCALL_URING_CQE_EVENTFD = 6, /* ...; epoll on a registered eventfd */
	UPCALL_BPF_RINGBUF_ADAPTIVE = 7, /* bpf_ringbuf, records without
					 * BPF_RB_FORCE_WAKEUP (flags 0) */
	UPCALL_BPF_FLAG_IDLE = 8,	 /* bpf_flag, the scheduler polling at
					 * SCHED_IDLE: it runs when the CPU
					 * would otherwise go idle */
	UPCALL_RSEQ_ABORT = 9, /* preemptions only (upcall_preempt.h): the
				* kernel resumes the preempted thread at its
				* rseq abort handler */
	UPCALL_NR_MECHANISMS = 10
};

/* The anatomy of an upcall: its latency split at the kernel's stamps
 * (lab/families/upcall_bpf.c), one row of nr_samples per stage, each the
 * time since the previous stamp present (a stage that did not happen is
 * 0 and its time goes to the next one: the rows of a sample sum to its
 * latency); then the IPIs the event's CPU sent during the upcall. */
enum upcall_stage {
	UPCALL_STAGE_RAISE = 0,	    /* event -> irq_work self-IPI raised */
	UPCALL_STAGE_IRQ_WORK = 1,  /* -> irq_work_entry on the event's CPU */
	UPCALL_STAGE_WAKING = 2,    /* -> sched_waking of the scheduler */
	UPCALL_STAGE_WAKE_IPI = 3,  /* -> IPI to the scheduler's CPU */
	UPCALL_STAGE_SWITCH_IN = 4, /* -> sched_switch to the scheduler */
	UPCALL_STAGE_USER = 5,	    /* -> the scheduler's own stamp */
	UPCALL_NR_STAGES = 6,
	UPCALL_ANATOMY_IPIS = 6,      /* row: IPIs sent by the event's CPU */
	UPCALL_ANATOMY_SELF_IPIS = 7, /* row: ... to itself */
	UPCALL_ANATOMY_ROWS = 8
};

enum upcall_event {
	UPCALL_EVENT_BLOCK = 0,	  /* sched:sched_switch of the worker */
	UPCALL_EVENT_UNBLOCK = 1, /* sched:sched_waking of the worker */
	UPCALL_EVENT_PREEMPT = 2  /* sched:sched_switch of the worker still
				   * runnable: upcall_preempt_run() */
};

/* What the worker blocks in. */
enum upcall_block_kind {
	UPCALL_BLOCK_FUTEX = 0,	    /* FUTEX_WAIT until released */
	UPCALL_BLOCK_NANOSLEEP = 1, /* clock_nanosleep(TIMER_ABSTIME) */
	UPCALL_BLOCK_PIPE = 2,	    /* read() of an empty pipe */
	UPCALL_BLOCK_PREAD = 3,	    /* pread() of an evicted 4 KiB block */
	UPCALL_BLOCK_FAULT = 4,	    /* a read of an evicted page of the same
				     * file, mmap'ed: a major page fault */
	UPCALL_NR_BLOCK_KINDS = 5
};

/* The upcall program's maps (lab/families/upcall_bpf.c), as bcc made them:
 * field <name>_fd is map lab_upcall_<name> (lab/upcall_program.py pairs
 * them by that); -1 for mechanisms that use none. */
struct upcall_maps {
	int ring_fd;   /* lab_upcall_ring: BPF_MAP_TYPE_RINGBUF */
	int vps_fd;    /* lab_upcall_vps: mmap-able array of VP slots */
	int tids_fd;   /* lab_upcall_tids: hash, tid -> VP */
	int stages_fd; /* lab_upcall_stages: the upcall in flight
				 * (read only with anatomy or the adaptive
				 * ring: 0 from a caller that sets neither) */
};

struct upcall_config {
	int mechanism;	     /* enum upcall_mechanism */
	int event;	     /* enum upcall_event (bpf mechanisms) */
	int block_kind;	     /* enum upcall_block_kind */
	int cpu;	     /* the worker and the waker */
	int sched_cpu;	     /* the scheduler: cpu or another one */
	uint64_t block_ns;   /* nanosleep: its length; futex, pipe (unblock,
				 * uring): the waker's delay after the block */
	uint64_t run_ns;     /* worker: user-space work before each block */
	uint64_t spin_ns;    /* bpf_flag_sleep: spin budget before epoll */
	const char *dir;     /* pread, fault: where the file is made (ext4) */
	uint64_t warmup;     /* unrecorded upcalls before the window */
	uint64_t nr_samples; /* upcalls measured */
	int anatomy;	     /* 1: arm lab_upcall_stages for every upcall
				 * (its programs attached) and fill
				 * anatomy_ns */
	double *anatomy_ns;  /* UPCALL_ANATOMY_ROWS x nr_samples, row-major */
};

/* Over the measured window unless the comment says otherwise. */
struct upcall_counts {
	uint64_t upcalls;	/* samples recorded */
	uint64_t blocks;	/* block events the program published */
	uint64_t unblocks;	/* unblock events the program published */
	uint64_t extra_events;	/* events of the measured kind after the first
				 * of an upcall (a pread that blocks twice) */
	uint64_t not_blocked;	/* calls that returned without the event (a
				 * cold read done before the reader waited, a
				 * sleep past its deadline when it began):
				 * no upcall, no sample, another call */
	uint64_t lost_upcalls;	/* unblock events never sent though the worker
				 * blocked and was woken: the program did not
				 * run for that sched_waking (an interrupt that
				 * came while another tracing BPF program ran on
				 * that CPU: the kernel's per-CPU bpf_prog_active
				 * guard skips nested programs); another call */
	uint64_t missed_events; /* sequence numbers skipped: events folded into
				 * one flag update (must be 0) */
	uint64_t spun;		/* upcalls found by polling */
	uint64_t slept;		/* upcalls the scheduler slept for */
	uint64_t clamped;	/* latencies below 0 (clock disagreement of a
				 * few ns) recorded as 0 */
	/* the ring, whole run: every record must be consumed exactly once,
	 * in order */
	uint64_t ring_records;	 /* consumed */
	uint64_t ring_lost;	 /* the program found no room (must be 0) */
	uint64_t ring_discarded; /* BPF_RINGBUF_DISCARD_BIT (must be 0) */
	uint64_t ring_bad;	 /* wrong size, VP, kind or order (must be 0) */
	uint64_t foreign;	 /* records of another thread (must be 0) */
	/* pread, fault: measured blocks in the page cache when the window
	 * opened */
	uint64_t resident_before;
	/* fault: the worker's major faults in its blocking calls (getrusage
	 * RUSAGE_THREAD around each touch): one per call, a call that did
	 * not block (a read done before the fault waited) too */
	uint64_t majflt;
	uint64_t fault_ns; /* fault: the worker's time in those touches */
	uint64_t worker_tid;
	/* anatomy: samples in which each stage's stamp was present */
	uint64_t stage_seen[UPCALL_NR_STAGES];
	int32_t sched_policy; /* the scheduler's policy as it ran */
};

/*
 * One worker thread (pinned to cpu) blocks warmup + nr_samples times; the
 * scheduler (the calling thread, pinned to sched_cpu) learns of each block
 * or unblock by `mechanism` and records latency_ns: its stamp on learning
 * minus the event's time (the program's bpf_ktime_get_ns(); futex_hint:
 * the worker's stamp before its FUTEX_WAKE; uring: the waker's stamp
 * before its wake-up call, or the timeout's deadline).  since_source_ns
 * (may be NULL) gets, for bpf unblock upcalls of futex, pipe and
 * nanosleep blocks, the stamp minus the source's own time (the waker's
 * stamp, the sleep's deadline).  One upcall at a time: the worker blocks
 * again only after the scheduler has taken the last one; a call that
 * returns without blocking makes no upcall and is repeated (not_blocked).
 * Returns 0 or -errno (-EINVAL: a bad config; -ETIMEDOUT: an event never
 * came; -EAGAIN: too many calls did not block).
 */
int upcall_run(struct lab_handshake *hs, const struct upcall_config *cfg,
	       const struct upcall_maps *maps, double *latency_ns,
	       double *since_source_ns, struct upcall_counts *out);

/*
 * Test helper for the ring consumer: a registered thread (on cpu) blocks
 * (10 us nanosleeps) blocks_per_round times while nobody reads the ring,
 * and an unregistered one bystander_blocks times; then the ring is
 * drained.  rounds times, so the records wrap around a small ring.
 */
struct upcall_burst_result {
	uint64_t blocks;	/* block calls of the registered thread (a
				 * sleep may end before it blocks) */
	uint64_t kernel_events; /* its VP slot's block_seq at the end */
	uint64_t records;	/* consumed */
	uint64_t lost;		/* ring_lost of the slot */
	uint64_t discarded;
	uint64_t out_of_order; /* seq not the previous one + 1 (after lost) */
	uint64_t foreign;      /* records of another tid */
	uint64_t bad;	       /* wrong size or kind */
	uint64_t max_batch;    /* most records one drain found */
};

int upcall_burst(const struct upcall_maps *maps, int cpu, uint32_t rounds,
		 uint32_t blocks_per_round, uint32_t bystander_blocks,
		 struct upcall_burst_result *out);

/*
 * How many times the kernel skipped a BPF program instead of running it
 * (bpf_prog_info.recursion_misses, Linux 5.12): a tracepoint program is
 * not run when its tracepoint fires while another kprobe or tracepoint
 * program runs on the same CPU.  0 or -errno.
 */
int upcall_program_misses(int prog_fd, uint64_t *misses);

/* Sizes of the structs shared with the BPF program (upcall_abi.h), for
 * the tests to hold against the program's maps. */
size_t upcall_vp_size(void);
size_t upcall_event_size(void);
size_t upcall_stages_size(void);

/*
 * A program another process loaded (the runner, once per suite) used for
 * one run: upcall_attach() attaches prog_fd to the raw tracepoint
 * (BPF_RAW_TRACEPOINT_OPEN) and returns the link's fd, or -errno; closing
 * it detaches, so a process that dies leaves nothing attached.
 * upcall_reset_maps() makes the maps as a fresh load has them: no thread
 * registered, every VP slot and the stages zero, the ring drained.
 */
int upcall_attach(int prog_fd, const char *tracepoint);
int upcall_reset_maps(const struct upcall_maps *maps);

/*
 * The kernel's own accounting of BPF programs' run time
 * (bpf_prog_info.run_time_ns / run_cnt), collected only while a
 * BPF_ENABLE_STATS fd is open: upcall_enable_stats() returns it (close it
 * to switch the accounting off again; nothing else to restore) or -errno.
 */
int upcall_enable_stats(void);
int upcall_program_stats(int prog_fd, uint64_t *run_time_ns, uint64_t *run_cnt);

#endif /* LAB_UPCALL_H */
