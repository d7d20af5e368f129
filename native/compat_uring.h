/*
 * io_uring opcodes and flags newer than Debian 12's liburing 2.3 (which
 * matches kernel 6.1).  The running kernel decides what works: callers
 * probe (lab_uring_probe) or treat -EINVAL / -EOPNOTSUPP as "kernel lacks
 * it" and skip.  Values are the kernel's UAPI (include/uapi/linux/io_uring.h).
 *
 * Build: included by the C files of native/ that need it; nothing to link.
 */
#ifndef LAB_COMPAT_URING_H
#define LAB_COMPAT_URING_H

#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Setup flags.  DEFER_TASKRUN and SINGLE_ISSUER: Linux 6.1, present in
 * liburing 2.3; repeated here so older headers build too. */
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

/* Opcodes after IORING_OP_SENDMSG_ZC (48), the last one liburing 2.3 knows.
 * An enum in liburing, so they cannot be #ifndef-guarded: prefixed LAB_. */
#define LAB_IORING_OP_MSG_RING	     40 /* Linux 5.18 */
#define LAB_IORING_OP_READ_MULTISHOT 49 /* Linux 6.7 */
#define LAB_IORING_OP_WAITID	     50 /* Linux 6.7 */
#define LAB_IORING_OP_FUTEX_WAIT     51 /* Linux 6.7 */
#define LAB_IORING_OP_FUTEX_WAKE     52 /* Linux 6.7 */
#define LAB_IORING_OP_FUTEX_WAITV    53 /* Linux 6.7 */

/* IORING_REGISTER_ENABLE_RINGS (5.10) for a ring made
 * IORING_SETUP_R_DISABLED: liburing 2.3 declares io_uring_enable_rings()
 * but its shared library does not export it. */
static inline int lab_uring_enable_rings(int ring_fd)
{
	long ret = syscall(__NR_io_uring_register, ring_fd,
			   IORING_REGISTER_ENABLE_RINGS, NULL, 0);

	return ret < 0 ? -errno : 0;
}

/* Timeout flags. */
#ifndef IORING_TIMEOUT_MULTISHOT
#define IORING_TIMEOUT_MULTISHOT (1U << 6) /* Linux 6.4 */
#endif

/* MSG_RING: command in sqe->addr, flags in sqe->msg_ring_flags. */
#ifndef IORING_MSG_RING_CQE_SKIP
#define IORING_MSG_RING_CQE_SKIP (1U << 0) /* Linux 6.2 */
#endif
#ifndef IORING_MSG_RING_FLAGS_PASS
#define IORING_MSG_RING_FLAGS_PASS (1U << 1) /* Linux 6.3 */
#endif

/* futex2 flags for the io_uring futex opcodes (include/uapi/linux/futex.h,
 * Linux 6.7), carried in sqe->fd. */
#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 0x02
#endif
#ifndef FUTEX2_PRIVATE
#define FUTEX2_PRIVATE 128
#endif
#ifndef FUTEX_BITSET_MATCH_ANY
#define FUTEX_BITSET_MATCH_ANY 0xffffffff
#endif

/*
 * IORING_OP_FUTEX_WAIT / _WAKE (io_uring/futex.c, Linux 6.7): sqe->addr is
 * the futex word, sqe->addr2 the expected value (wait) or the number to
 * wake (wake), sqe->addr3 the bitset mask, sqe->fd the futex2 flags, and
 * the op-flags word (futex_flags in the kernel's union) must be zero.
 */
static inline void lab_prep_futex(struct io_uring_sqe *sqe, uint8_t op,
				  uint32_t *futex, uint64_t val)
{
	io_uring_prep_rw(op, sqe, FUTEX2_SIZE_U32 | FUTEX2_PRIVATE, futex, 0,
			 val);
	sqe->rw_flags = 0;
	sqe->addr3 = FUTEX_BITSET_MATCH_ANY;
}

static inline void lab_prep_futex_wait(struct io_uring_sqe *sqe,
				       uint32_t *futex, uint32_t expected)
{
	lab_prep_futex(sqe, LAB_IORING_OP_FUTEX_WAIT, futex, expected);
}

static inline void lab_prep_futex_wake(struct io_uring_sqe *sqe,
				       uint32_t *futex, uint32_t nr_wake)
{
	lab_prep_futex(sqe, LAB_IORING_OP_FUTEX_WAKE, futex, nr_wake);
}

/* Multishot timeout (Linux 6.4): one SQE, a CQE with IORING_CQE_F_MORE every
 * interval; count 0 means until cancelled.  The repeat count rides in
 * sqe->off, where a one-shot timeout keeps its completion count. */
static inline void lab_prep_timeout_multishot(struct io_uring_sqe *sqe,
					      struct __kernel_timespec *ts,
					      unsigned count)
{
	io_uring_prep_timeout(sqe, ts, count, IORING_TIMEOUT_MULTISHOT);
}

#endif /* LAB_COMPAT_URING_H */
