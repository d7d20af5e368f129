/*
 * Family `msgport`: system calls as messages with reply ports (DragonFly,
 * seed 001: msgport_port.c), live messages (seed 001: msgport_live.c) and
 * protected procedure calls (K42, seed 004: msgport_ppc.c), on io_uring and
 * its neighbours.  Part of the cffi cdef (see lab_native.h for the rules
 * such a header follows).
 *
 * These enums and structs are the only declaration of the family's modes,
 * ops, kinds, transports and counters: lab/families/msgport.py reads their
 * names from cffi (an enumerator's name, prefix stripped and lower-cased,
 * is the name a suite uses), so a new one here is a new one there.
 */
#ifndef LAB_MSGPORT_H
#define LAB_MSGPORT_H

#include "lab_native.h"

/* ---- reply ports ------------------------------------------------------- */

/* How the caller learns that its messages' replies are there. */
enum msgport_mode {
	MSGPORT_POLL,	  /* reap the CQ ring, never enter to wait */
	MSGPORT_WAIT,	  /* waitsys: io_uring_enter(GETEVENTS) per batch */
	MSGPORT_EVENTFD,  /* a registered eventfd wakes the caller */
	MSGPORT_DEFERRED, /* DEFER_TASKRUN: flushsys() = io_uring_get_events */
	MSGPORT_SYNC	  /* plain system calls, for reference */
};

/* What one message asks the kernel to do. */
enum msgport_op {
	MSGPORT_OP_NOP,	       /* IORING_OP_NOP; sync: getppid() */
	MSGPORT_OP_READ,       /* 4 KiB read of a cached block; sync: pread() */
	MSGPORT_OP_PIPE_WRITE, /* 8 bytes to a pipe with room; sync: write() */
	MSGPORT_OP_PIPE_READ   /* 1 byte from an empty pipe the caller fills
				 * after submitting; sync: write(), read()s */
};

enum {
	MSGPORT_MAX_BATCH = 1024,
	MSGPORT_FILE_BLOCKS = 256, /* op read: a 1 MiB file, kept cached */
	MSGPORT_BLOCK_SIZE = 4096
};

/* Counts over the measured window only. */
struct msgport_port_counts {
	uint64_t messages;	   /* messages sent */
	uint64_t completions;	   /* replies reaped (CQEs; sync: returns) */
	uint64_t bad_completions;  /* a wrong result, content or user_data */
	uint64_t submissions;	   /* io_uring_enter() calls that submitted;
				 * sync: the message system calls */
	uint64_t reap_syscalls;	   /* system calls made only to wait for or
				 * flush replies (enter, eventfd read) */
	uint64_t source_syscalls;  /* pipe_read: the write()s that make
				 * the replies ready (timed) */
	uint64_t untimed_syscalls; /* pipe_write: drains of the pipe
				 * between samples (in no sample) */
	uint64_t taskrun_flagged;  /* deferred: batches that found
				 * IORING_SQ_TASKRUN set before the flush */
	uint64_t ready_at_submit;  /* batches whose replies were all in the
				 * CQ ring when io_uring_enter() returned */
};

/*
 * `warmup` unrecorded batches, the handshake, nr_samples batches of
 * `batch` messages (ns_per_message: one batch, first SQE prepared to last
 * reply reaped, / batch), the handshake again.  dir: where op read's file
 * is made (ext4, resident before the window).  Returns 0 or -errno;
 * -EINVAL for a mode, op or batch out of range; -EIO when a reply was
 * wrong (counts->bad_completions says how many).
 */
int msgport_port(struct lab_handshake *hs, int mode, int op, uint32_t batch,
		 const char *dir, int cpu, uint64_t warmup, uint64_t nr_samples,
		 double *ns_per_message, struct msgport_port_counts *out);

/*
 * Test hook for DEFER_TASKRUN: submit one request whose completion comes
 * from outside the caller (enum msgport_defer_source), stay out of
 * io_uring for hold_us after the event, look at the CQ, then flush
 * (io_uring_get_events) and look again.  defer 0 is the control: a ring
 * without DEFER_TASKRUN, whose task work runs on any return to user space.
 */
struct msgport_defer_report {
	uint32_t cq_ready_before; /* CQEs in the ring before the flush */
	uint32_t taskrun_before;  /* IORING_SQ_TASKRUN seen set */
	uint32_t cq_ready_after;  /* CQEs after io_uring_get_events() */
	uint32_t taskrun_after;
	int32_t res;	/* the request's result */
	uint32_t flags; /* ring setup flags used */
};

/* Where msgport_defer_check's completion comes from. */
enum msgport_defer_source {
	MSGPORT_DEFER_PIPE,   /* a read of an empty pipe another thread
			       * writes */
	MSGPORT_DEFER_TIMEOUT /* a 1 ms timeout */
};

int msgport_defer_check(int source, int defer, uint32_t hold_us,
			struct msgport_defer_report *out);

/* ---- live messages ------------------------------------------------------ */

enum msgport_live_kind {
	MSGPORT_LIVE_MULTISHOT_TIMEOUT, /* one SQE, `count` CQEs (6.4) */
	MSGPORT_LIVE_ONESHOT_TIMEOUT,	/* a timeout re-armed per CQE */
	MSGPORT_LIVE_MULTISHOT_POLL,	/* IORING_POLL_ADD_MULTI (5.13) */
	MSGPORT_LIVE_ONESHOT_POLL	/* a poll re-armed per CQE */
};

struct msgport_live_counts {
	uint64_t submissions;	   /* SQEs that armed a live request */
	uint64_t cancels;	   /* multishot poll: removals after `count` */
	uint64_t completions;	   /* CQEs the live requests posted */
	uint64_t completions_more; /* of them with IORING_CQE_F_MORE */
	uint64_t max_per_submission; /* most CQEs one SQE delivered */
	uint64_t consume_syscalls;   /* poll: eventfd reads after each CQE */
	uint64_t signals; /* poll: eventfd writes of the source thread */
	int64_t drift_ns; /* timeouts: last CQE minus (start +
				 * completions * interval) */
	uint64_t clamped; /* timeouts: gaps under the interval,
				 * recorded as lateness 0 */
};

/*
 * `warmup` and nr_samples completions (rounded up to whole requests of
 * `count` completions for multishot; the last request of the window
 * carries the remainder).  out[i]: timeouts: the gap since the previous
 * completion was seen minus the interval (lateness); poll: the source's
 * stamp before its eventfd write to the CQE seen (latency).  source_cpu:
 * the poll source thread's CPU.
 */
int msgport_live(struct lab_handshake *hs, int kind, uint32_t count,
		 uint64_t interval_ns, int cpu, int source_cpu, uint64_t warmup,
		 uint64_t nr_samples, double *out,
		 struct msgport_live_counts *counts);

/* ---- protected procedure calls ------------------------------------------ */

enum msgport_transport {
	MSGPORT_PPC_MSG_RING,	    /* IORING_OP_MSG_RING between two rings */
	MSGPORT_PPC_FUTEX,	    /* shared queues, futex doorbells */
	MSGPORT_PPC_EVENTFD,	    /* shared queues, eventfd doorbells */
	MSGPORT_PPC_PIPE,	    /* two pipes, messages in-band */
	MSGPORT_PPC_UNIX_SOCKET,    /* a SOCK_STREAM socketpair, in-band */
	MSGPORT_PPC_MSG_RING_DEFER, /* MSG_RING to DEFER_TASKRUN |
				     * SINGLE_ISSUER rings (each made or
				     * enabled by the task that waits on it) */
	MSGPORT_PPC_SIGIO	    /* K42's soft interrupt: the server never
				     * waits, it runs its own loop; a request
				     * on its pipe (O_ASYNC, F_SETSIG SIGUSR2
				     * to its thread) makes the kernel signal
				     * it, and the handler (the entry point)
				     * serves and replies; replies as pipe */
};

/* How the server waits for a request (msg_ring, msg_ring_defer, eventfd;
 * the others park only).  The client always parks. */
enum msgport_receiver {
	MSGPORT_RECEIVER_PARK, /* io_uring_enter(GETEVENTS, min 1) / read() */
	MSGPORT_RECEIVER_SPIN  /* poll the CQ ring (defer: io_uring_get_events
				* in the loop, to run the task work) / a
				* non-blocking eventfd read() loop */
};

/* Over the whole run, warm-up included: every request is checked. */
struct msgport_ppc_counts {
	uint64_t requests;	     /* requests the client sent */
	uint64_t replies;	     /* first replies to them */
	uint64_t duplicate_replies;  /* a second reply to a request */
	uint64_t missing_replies;    /* requests left without a reply */
	uint64_t unexpected_replies; /* a sequence number never sent */
	uint64_t server_requests;    /* requests the server received */
	uint64_t server_drains;	     /* times the server woke and drained */
	uint64_t window_requests;    /* requests inside the window */
	/* sigio: the server's entry point and its own loop */
	uint64_t server_signals;	  /* handler entries (SIGUSR2 taken) */
	uint64_t server_empty_signals;	  /* entries that served no request */
	uint64_t server_outside_requests; /* requests read outside the
					   * handler, at the end (0) */
	uint64_t server_spins;		  /* the server's loop iterations */
	/* K42's accounting, over the window (first sample's send to the
	 * last sample's reply): the CPU time Linux charged the client
	 * thread (CLOCK_THREAD_CPUTIME_ID) and the server (its thread's
	 * clock; a process: its process clock, it has one thread), and the
	 * window's wall time */
	uint64_t client_cpu_ns;
	uint64_t server_cpu_ns;
	uint64_t wall_ns;
	int32_t server_tgid; /* the server's process (thread: ours) */
	int32_t server_tid;  /* the server's thread (process: = tgid) */
	int32_t client_tid;
};

/*
 * Client on cpu, server (a thread, or with process != 0 a forked child)
 * on server_cpu, waiting as `receiver` says (enum msgport_receiver).
 * async 0: nr_samples round trips, one request at a time (ns_per_call:
 * request sent to its reply seen).  async 1: nr_samples batches of
 * `batch` requests sent with one kernel entry, the server drains what has
 * arrived and replies in one go (ns_per_call: batch time / batch).
 * Returns 0 or -errno; -EINVAL for RECEIVER_SPIN on a transport without
 * it; -EOPNOTSUPP when the kernel lacks IORING_OP_MSG_RING (or
 * DEFER_TASKRUN); -EIO when the reply accounting does not add up.
 */
int msgport_ppc(struct lab_handshake *hs, int transport, int async, int process,
		int receiver, int cpu, int server_cpu, uint32_t batch,
		uint64_t warmup, uint64_t nr_samples, double *ns_per_call,
		struct msgport_ppc_counts *out);

#endif /* LAB_MSGPORT_H */
