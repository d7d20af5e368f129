/*
 * Family `msgport`, reply ports that run code (msgport_upcall.c): seed 001's
 * upcall port, whose reply runs the port's function in the owner.  A raw
 * tracepoint program on io_uring:io_uring_complete (the reply-port program,
 * lab/families/_msgport_upcall.py) signals the submitting thread with
 * bpf_send_signal_thread(SIGUSR1); its SIGUSR1 handler is the port
 * function.  Part of the cffi cdef (see lab_native.h).
 */
#ifndef LAB_MSGPORT_UPCALL_H
#define LAB_MSGPORT_UPCALL_H

#include "lab_native.h"
#include "msgport.h"

enum msgport_upcall_mode {
	MSGPORT_UPCALL,	       /* every reply signals; the handler reaps */
	MSGPORT_CRITICAL,      /* no signal while the thread says it is in
				 * a critical section: flushed on leaving */
	MSGPORT_TIMEOUT_UPCALL /* passive; a POSIX timer armed at submission
				 * makes it an upcall after timeout_us */
};

/*
 * The word the program and the thread share: the one entry of the
 * program's BPF_F_MMAPABLE array lab_mp_port, mmap'ed by the thread.  The
 * thread writes tag, tid, passive and critical; the program writes the
 * rest.  Only replies whose user_data carries tag (bits 48..63) count.
 */
struct msgport_upcall_shared {
	uint64_t tag;	   /* the run's user_data tag, 0: off */
	uint32_t tid;	   /* the thread to signal */
	uint32_t passive;  /* 1: never signal (timeout_upcall) */
	uint32_t critical; /* 1: inside a critical section */
	uint32_t pending;  /* set by the program inside one */
	uint32_t raised;   /* a signal sent and not yet handled */
	uint32_t pad;
	uint64_t seen;	       /* tagged completions */
	uint64_t signals_sent; /* bpf_send_signal_thread() calls */
	uint64_t deferred;     /* completions inside a critical section */
	uint64_t foreign;      /* completions in another task (must be 0) */
	uint64_t send_errors;  /* bpf_send_signal_thread() failed */
};

#define MSGPORT_UPCALL_COUNTERS(X)                                          \
	/* SIGUSR1 handler runs (the port function) */                      \
	X(signals_handled)                                                  \
	/* replies the handler reaped */                                    \
	X(handler_replies)                                                  \
	/* handler runs that found no reply */                              \
	X(empty_signals)                                                    \
	/* SIGUSR1 that came from neither the program nor our timer */      \
	X(stray_signals)                                                    \
	/* the program's bpf_send_signal_thread() calls (window) */         \
	X(signals_sent)                                                     \
	/* tagged completions the program saw (window) */                   \
	X(completions_seen)                                                 \
	/* completions in another task (must be 0) */                       \
	X(foreign_completions)                                              \
	/* bpf_send_signal_thread() failures (must be 0) */                 \
	X(send_errors)                                                      \
	/* critical: completions while inside, told by pending (program) */ \
	X(deferred_replies)                                                 \
	/* critical: replies the flush on leaving reaped */                 \
	X(flushed_replies)                                                  \
	/* critical: handler runs while the word was set (must be 0) */     \
	X(critical_violations)                                              \
	/* timeout_upcall: timer expiries (each one upcall) */              \
	X(timeouts_fired)                                                   \
	/* timeout_upcall: batches the flush reaped before the timer */     \
	X(flushed_in_time)

#define MSGPORT_UPCALL_COUNTER_FIELD(name) uint64_t name;
struct msgport_upcall_counts {
	MSGPORT_UPCALL_COUNTERS(MSGPORT_UPCALL_COUNTER_FIELD)
};
#undef MSGPORT_UPCALL_COUNTER_FIELD

struct msgport_upcall_config {
	int mode;		 /* enum msgport_upcall_mode */
	int op;			 /* enum msgport_op */
	uint32_t batch;		 /* messages per io_uring_enter() */
	int cpu;		 /* the thread's CPU */
	int map_fd;		 /* the program's lab_mp_port array */
	uint64_t timeout_us;	 /* timeout_upcall: the timer */
	uint64_t flush_after_us; /* timeout_upcall: work before the flush */
	uint64_t warmup;	 /* unrecorded batches */
	uint64_t nr_samples;	 /* measured batches */
};

/*
 * The calling thread, pinned to cfg->cpu with SIGUSR1's disposition saved
 * (restored, with the mask, on every way out), sends warmup + nr_samples
 * batches and never waits: it spins until the port function has reaped the
 * batch (critical: until its own flush has; timeout_upcall: works
 * flush_after_us, then flushes what the timer's upcall has not).  The
 * program must be attached (io_uring_complete) and map_fd its array.
 * ns_per_message: one batch, first SQE prepared to last reply reaped, /
 * batch.  0 or -errno (-EINVAL a bad config or map, -ETIMEDOUT no reply
 * for 2 s, -EIO a bad reply).
 */
int msgport_upcall(struct lab_handshake *hs,
		   const struct msgport_upcall_config *cfg, const char *dir,
		   double *ns_per_message, struct msgport_port_counts *port,
		   struct msgport_upcall_counts *out);

/* Tests: SIGUSR1's disposition as the kernel holds it (handler, flags). */
int msgport_upcall_sigaction(uint64_t *handler, uint64_t *flags);

#endif /* LAB_MSGPORT_UPCALL_H */
