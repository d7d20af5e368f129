/*
 * Family `syncfirst` (syncfirst.c): Linus's async() against fibrils (seed
 * 003).  Part of the cffi cdef (see lab_native.h for the rules such a
 * header follows: plain declarations only).
 */
#ifndef LAB_SYNCFIRST_H
#define LAB_SYNCFIRST_H

#include "lab_native.h"

/*
 * How a call is made.  The same modes serve both workloads (file reads and
 * socket receives); lab/families/syncfirst.py names them as variants.
 */
enum syncfirst_mode {
	SYNCFIRST_SYNC = 0,		/* pread / blocking recv */
	SYNCFIRST_POOL = 1,		/* every call to a pool thread: fibrils */
	SYNCFIRST_NOWAIT_POOL = 2,	/* RWF_NOWAIT / MSG_DONTWAIT first, EAGAIN -> pool */
	SYNCFIRST_NOWAIT_URING = 3,	/* RWF_NOWAIT / MSG_DONTWAIT first, EAGAIN -> io_uring */
	SYNCFIRST_URING = 4,		/* io_uring, the kernel's own inline attempt */
	SYNCFIRST_URING_ASYNC = 5,	/* io_uring with IOSQE_ASYNC: always io-wq */
	SYNCFIRST_URING_SQPOLL = 6,	/* io_uring with IORING_SETUP_SQPOLL */
	SYNCFIRST_NR_MODES = 7
};

/* What a worker counts besides its samples (the runner stores them as the
 * run's counters).  Every field covers the measured window unless its
 * comment says otherwise. */
struct syncfirst_counts {
	uint64_t ops;			/* calls measured */
	uint64_t eagain;		/* sync-first attempts that said "would block" */
	uint64_t inline_done;		/* calls completed by the caller's own attempt */
	uint64_t offloaded;		/* calls handed to the pool or to io_uring */
	uint64_t pool_wakes;		/* FUTEX_WAKEs of an idle pool thread */
	uint64_t caller_sleeps;		/* waits for a completion (futex, GETEVENTS) */
	uint64_t sqpoll_wakeups;	/* submits that had to wake the SQ thread */
	/* file reads: page-cache state of the measured blocks (mincore) */
	uint64_t measured_blocks;
	uint64_t target_resident;	/* blocks read back in before the window */
	uint64_t resident_before;	/* resident when the window opened */
	uint64_t resident_after;	/* resident when it closed */
	uint64_t evict_passes;		/* POSIX_FADV_DONTNEED passes it took */
	/* socket receives */
	uint64_t ready_ops;		/* calls whose data was sent before the call */
	uint64_t sent_after_call;	/* not-ready calls: data sent after the call */
};

/*
 * Random 4 KiB reads of a file, each block of the measured set once.
 * The worker creates the file at path (non-zero data, fsync'ed), evicts it
 * from the page cache, reads round(hit_ratio * nr_samples) of the measured
 * blocks back in, warms up on a disjoint set of blocks, checks with
 * mincore() what is resident, then opens the window.  The file is removed
 * on return.  With direct, reads use O_DIRECT and nothing is read back in.
 */
struct syncfirst_file_config {
	const char *path;
	uint64_t file_blocks;		/* 4 KiB blocks in the file */
	double hit_ratio;		/* 0..1 of the measured blocks cached */
	uint32_t depth;			/* calls in flight (async modes) */
	uint32_t pool_threads;		/* 0: one per call in flight (depth) */
	int direct;			/* O_DIRECT */
	int cpu;			/* the caller */
	int async_cpu;			/* pool threads and io-wq workers */
	int sqpoll_cpu;			/* SQ thread (IORING_SETUP_SQ_AFF); -1: unpinned */
	uint64_t seed;			/* block choice and order */
	uint64_t warmup;		/* unrecorded reads, on other blocks */
	uint64_t nr_samples;		/* measured reads */
};

/* latency_ns gets nr_samples values: caller's submit to the caller seeing
 * the completion.  Returns 0 or -errno (-EINVAL: bad config). */
int syncfirst_file_read(struct lab_handshake *hs, int mode,
			const struct syncfirst_file_config *cfg,
			double *latency_ns, struct syncfirst_counts *out);

/*
 * One receive of msg_bytes on an AF_UNIX SOCK_SEQPACKET pair at a time.
 * A producer thread on producer_cpu sends each message either before the
 * consumer asks (probability ready_probability) or send_delay_ns after it
 * asked.  Pool threads and io-wq workers run on cpu, beside the consumer.
 */
struct syncfirst_recv_config {
	double ready_probability;
	uint32_t msg_bytes;
	uint32_t send_delay_ns;
	int cpu;
	int producer_cpu;
	uint64_t seed;
	uint64_t warmup;
	uint64_t nr_samples;
};

/* latency_ns: call to completion seen; after_data_ns: completion seen
 * minus the later of the call and the producer's send. */
int syncfirst_recv(struct lab_handshake *hs, int mode,
		   const struct syncfirst_recv_config *cfg, double *latency_ns,
		   double *after_data_ns, struct syncfirst_counts *out);

/*
 * Test helper: create a small file at path, evict it, read block 1 back in
 * if cached, then one preadv2(RWF_NOWAIT) of block 1.  Returns the bytes
 * read (4096), or -errno (-EAGAIN: the page was not in the page cache).
 * With watch_ms > 0, an EAGAIN is followed by up to watch_ms of mincore()
 * checks: -EINPROGRESS if the page arrived (the refused call started the
 * read), -EAGAIN if it never did.  The file is removed.
 */
int syncfirst_nowait_probe(const char *path, int cached, int watch_ms);

#endif /* LAB_SYNCFIRST_H */
