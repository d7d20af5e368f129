/*
 * The lab's native API: everything Python reaches through cffi.
 *
 * This header is fed verbatim to cffi's cdef() (native/build.py drops the
 * preprocessor lines), so it holds only plain declarations: no macros, no
 * inline functions, no includes beyond the two below.  Helpers the C files
 * share but Python does not see live in native/internal.h.
 *
 * Conventions (drgn / liburing style): a function that can fail returns 0 or
 * a negative errno; out parameters come last.  Samples are written into
 * caller-owned double arrays (NumPy buffers on the Python side), one value
 * per sample, in nanoseconds.
 */
#ifndef LAB_NATIVE_H
#define LAB_NATIVE_H

#include <stddef.h>
#include <stdint.h>

/* ---- timing (timing.c) ------------------------------------------------ */

/* CLOCK_MONOTONIC in ns: the one clock every timestamp of the lab uses, so
 * user-side times and bpf_ktime_get_ns() from the probes are comparable. */
uint64_t lab_now_ns(void);

/* Pin the calling thread to one CPU (sched_setaffinity on the thread). */
int lab_pin_self(int cpu);

/* ---- the runner handshake (handshake.c) -------------------------------- */

/*
 * The measured window of a worker.  A worker sets up (threads, rings,
 * children) and warms up, then calls lab_handshake_ready(): it tells the
 * runner which thread groups to watch and blocks until the runner answers
 * "go" (probes armed on exactly those pids).  After the hot loop,
 * lab_handshake_done() lets the runner read the probes before teardown.
 * With ready_fd < 0 (tests, no runner) both only take the timestamps.
 */
struct lab_handshake {
	int ready_fd;		/* worker -> runner: "ready <tgid>...", "done" */
	int go_fd;		/* runner -> worker: "go", "ack" */
	uint64_t window_begin_ns;
	uint64_t window_end_ns;
};

int lab_handshake_ready(struct lab_handshake *hs, const int *extra_tgids,
			int nr_extra);
int lab_handshake_done(struct lab_handshake *hs);

/* ---- futex (futex.c) --------------------------------------------------- */

/* FUTEX_WAIT_PRIVATE / FUTEX_WAKE_PRIVATE: returns 0 (or woken count) or
 * -errno (-EAGAIN when *word != expected). */
int lab_futex_wait(uint32_t *word, uint32_t expected);
int lab_futex_wake(uint32_t *word, int nr_wake);

/* ---- fibers (fiber.c) -------------------------------------------------- */

/*
 * A fiber is a user-level context: a stack and a saved stack pointer.  The
 * switch is our own x86-64 assembly (callee-saved registers, MXCSR and the
 * x87 control word, no signal mask: that is the point of comparing it with
 * swapcontext(3), which makes a sigprocmask system call every time).
 */
struct lab_fiber {
	void *sp;		/* saved stack pointer while switched out */
	void *stack;		/* mmap'ed stack, guard page at the bottom */
	size_t stack_size;
};

/* 1 on x86-64; 0 elsewhere, where lab_fiber_init() returns -ENOTSUP. */
int lab_fiber_supported(void);
int lab_fiber_init(struct lab_fiber *fiber, size_t stack_size,
		   void (*entry)(void *), void *arg);
void lab_fiber_deinit(struct lab_fiber *fiber);
/* Save the caller's context in from, resume to.  from may be a zeroed
 * struct lab_fiber standing for the thread's own stack. */
void lab_fiber_switch(struct lab_fiber *from, struct lab_fiber *to);

/* ---- io_uring (uring.c) ----------------------------------------------- */

/*
 * What the kernel's io_uring offers: 0, or -errno from io_uring_setup()
 * (-ENOSYS: not built in; -EPERM: kernel.io_uring_disabled or a seccomp /
 * LSM policy).  supported[op] is 1 for each opcode the kernel's
 * IORING_REGISTER_PROBE reports; *last_op is the kernel's last opcode.
 */
int lab_uring_probe(uint8_t *supported, int nr_ops, int *last_op,
		    uint32_t *features);

/* ---- family `baseline` (baseline.c) ----------------------------------- */

/*
 * Every baseline worker runs `warmup` unrecorded samples, opens the
 * handshake window, records nr_samples samples, closes it.  A sample is
 * the mean over ops_per_sample operations where one operation is too short
 * to time alone; ping-pongs time every round trip.
 */
int baseline_clock_read(struct lab_handshake *hs, uint64_t warmup,
			uint64_t nr_samples, uint32_t ops_per_sample,
			double *ns_per_op);
int baseline_null_syscall(struct lab_handshake *hs, uint64_t warmup,
			  uint64_t nr_samples, uint32_t ops_per_sample,
			  double *ns_per_op);
/* handoff_ns gets 2 * nr_samples one-way handoffs (ping->pong, pong->ping). */
int baseline_futex_pingpong(struct lab_handshake *hs, int cpu, int peer_cpu,
			    uint64_t warmup, uint64_t nr_samples,
			    double *round_trip_ns, double *handoff_ns);
int baseline_pipe_pingpong(struct lab_handshake *hs, int cpu, int peer_cpu,
			   uint64_t warmup, uint64_t nr_samples,
			   double *round_trip_ns);
int baseline_fiber_switch(struct lab_handshake *hs, uint64_t warmup,
			  uint64_t nr_samples, uint32_t ops_per_sample,
			  double *ns_per_switch);
int baseline_swapcontext(struct lab_handshake *hs, uint64_t warmup,
			 uint64_t nr_samples, uint32_t ops_per_sample,
			 double *ns_per_switch);
/* batch NOPs per io_uring_enter(); batch 1 is one NOP per system call.  A
 * sample is max(1, ops_per_sample / batch) enters, in ns per NOP. */
int baseline_uring_nop(struct lab_handshake *hs, uint32_t batch,
		       uint64_t warmup, uint64_t nr_samples,
		       uint32_t ops_per_sample, double *ns_per_op);

#endif /* LAB_NATIVE_H */
