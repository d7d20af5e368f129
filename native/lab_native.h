/*
 * The lab's native API: everything Python reaches through cffi.
 *
 * This header and every family header (native/<family>.h) are fed verbatim
 * to cffi's cdef() (native/build.py drops the preprocessor lines), so they
 * hold only plain declarations: no macros, no inline functions, no includes
 * beyond stddef.h and stdint.h.  Helpers the C files share but Python does
 * not see live in native/internal.h (and compat_uring.h).
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
	int ready_fd; /* worker -> runner: "ready <tgid>...", "done" */
	int go_fd;    /* runner -> worker: "go", "ack" */
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
	void *sp;    /* saved stack pointer while switched out */
	void *stack; /* mmap'ed stack, guard page at the bottom */
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

/* Each family declares its workers in native/<family>.h, in the same
 * cdef-clean style; native/build.py feeds them all to cffi. */

#endif /* LAB_NATIVE_H */
