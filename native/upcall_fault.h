/*
 * Family `upcall`, page-fault upcalls (upcall_fault.c): seeds 000 and
 * 002's "suffers a page fault", delivered by userfaultfd, the one
 * user-level page-fault handling Linux has: a fault in a registered range
 * becomes a message (struct uffd_msg) a handler thread reads, and the
 * faulting thread runs again when the handler resolves it by ioctl.
 * Part of the cffi cdef (see lab_native.h).
 */
#ifndef LAB_UPCALL_FAULT_H
#define LAB_UPCALL_FAULT_H

#include "lab_native.h"

/* The variants of lab/families/upcall.py, named as here without
 * UPCALL_FAULT_, in lower case (Python reads the names from cffi). */
enum upcall_fault_variant {
	/* missing-page faults on an anonymous private mapping
	 * (UFFDIO_REGISTER_MODE_MISSING), resolved with UFFDIO_COPY */
	UPCALL_FAULT_UFFD_COPY = 0,
	/* minor faults on a memfd mapped twice (UFFDIO_REGISTER_MODE_MINOR,
	 * UFFD_FEATURE_MINOR_SHMEM, Linux 5.14): the page is in the page
	 * cache, written through the handler's alias; UFFDIO_CONTINUE maps it */
	UPCALL_FAULT_UFFD_CONTINUE = 1,
	UPCALL_FAULT_NR_VARIANTS = 2
};

/* How the handler waits for the fault's message (param `handler`). */
enum upcall_fault_handler {
	UPCALL_FAULT_SLEEP = 0, /* poll() on the userfaultfd */
	UPCALL_FAULT_POLL = 1,	/* read() spinning on EAGAIN */
	UPCALL_FAULT_NR_HANDLERS = 2
};

/* The series, one row of nr_samples each (row-major), named as here
 * without UPCALL_FAULT_SERIES_ in lower case. */
enum upcall_fault_series {
	UPCALL_FAULT_SERIES_LATENCY = 0, /* t_msg - t_fault: the upcall */
	UPCALL_FAULT_SERIES_RESOLVE = 1, /* t_resolved - t_msg: the ioctl */
	UPCALL_FAULT_SERIES_RESUME = 2,	 /* t_resumed - t_resolved */
	UPCALL_FAULT_SERIES_TOTAL = 3,	 /* t_resumed - t_fault */
	UPCALL_FAULT_NR_SERIES = 4
};

struct upcall_fault_config {
	int variant;	     /* enum upcall_fault_variant */
	int handler;	     /* enum upcall_fault_handler */
	int cpu;	     /* the faulting thread */
	int handler_cpu;     /* the handler (the calling thread): cpu or
				 * another one */
	uint64_t seed;	     /* the pages' pattern: seed and sample number */
	uint64_t warmup;     /* unrecorded faults before the window */
	uint64_t nr_samples; /* faults measured */
	uint64_t extra_features; /* UFFDIO_API features asked for beyond
				  * the variant's (tests: a bit the kernel
				  * lacks takes the -EOPNOTSUPP path); 0 */
};

/* Over the measured window (leftover messages at the end included). */
struct upcall_fault_counts {
	uint64_t faults;   /* touches that faulted (the thread's
				* majflt + minflt moved) */
	uint64_t messages; /* uffd_msg read (= faults) */
	uint64_t resolved; /* UFFDIO_COPY / UFFDIO_CONTINUE succeeded */
	uint64_t eexist;   /* ... said EEXIST: a page resolved twice (0) */
	uint64_t bad_data; /* pages with a word not the pattern (0) */
	uint64_t bad_msgs; /* not UFFD_EVENT_PAGEFAULT of the page (0) */
	uint64_t majflt;   /* the faulting thread's, RUSAGE_THREAD */
	uint64_t minflt;
	uint64_t spun_reads;	 /* poll handler: read()s that said EAGAIN */
	uint64_t clamped;	 /* stage times below 0 recorded as 0 */
	uint64_t user_mode_only; /* 1: UFFD_USER_MODE_ONLY was accepted */
	uint64_t features;	 /* what UFFDIO_API granted */
	uint64_t faulting_tid;
};

/*
 * The faulting thread (pinned to cpu) reads one word of a page of the
 * registered range for each of warmup + nr_samples faults, stamping
 * t_fault before and t_resumed after, then checks every word of the page
 * and unmaps it again (MADV_DONTNEED) for a later fault; the handler (the
 * calling thread, pinned to handler_cpu) prepares each page's content
 * before the touch (copy: its source page; continue: the page cache,
 * through its own unregistered alias), waits for the message, stamps
 * t_msg, resolves, stamps t_resolved.  series_ns: UPCALL_FAULT_NR_SERIES
 * x nr_samples.  0 or -errno (-EINVAL: a bad config; -EOPNOTSUPP: the
 * kernel's userfaultfd lacks a feature the variant needs (out->features
 * says what it granted); -ENOSYS/-EPERM: no userfaultfd; -ETIMEDOUT: a
 * message never came).
 */
int upcall_fault_run(struct lab_handshake *hs,
		     const struct upcall_fault_config *cfg, double *series_ns,
		     struct upcall_fault_counts *out);

/* 0 if the variant can run here, else what upcall_fault_run() would say
 * (-EOPNOTSUPP, -ENOSYS, -EPERM). */
int upcall_fault_probe(int variant);

#endif /* LAB_UPCALL_FAULT_H */
