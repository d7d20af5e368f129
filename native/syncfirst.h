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
 * socket receives); lab/families/syncfirst.py reads them from cffi by
 * name (SYNCFIRST_NOWAIT_POOL: "nowait_pool") for its variants.
 */
enum syncfirst_mode {
	SYNCFIRST_SYNC = 0, /* pread / blocking recv */
	SYNCFIRST_POOL = 1, /* every call to a pool thread: fibrils */
	SYNCFIRST_NOWAIT_POOL =
		2, /* RWF_NOWAIT / MSG_DONTWAIT first, EAGAIN -> pool */
	SYNCFIRST_NOWAIT_URING =
		3, /* RWF_NOWAIT / MSG_DONTWAIT first, EAGAIN -> io_uring */
	SYNCFIRST_URING = 4, /* io_uring, the kernel's own inline attempt */
	SYNCFIRST_URING_ASYNC = 5, /* io_uring with IOSQE_ASYNC: always io-wq */
	SYNCFIRST_URING_SQPOLL = 6, /* io_uring with IORING_SETUP_SQPOLL */
	SYNCFIRST_NR_MODES = 7
};

/* What a worker counts besides its samples (the runner stores them as the
 * run's counters).  Every field covers the measured window unless its
 * comment says otherwise. */
struct syncfirst_counts {
	uint64_t ops;	      /* calls measured */
	uint64_t eagain;      /* sync-first attempts that said "would block" */
	uint64_t inline_done; /* calls completed by the caller's own attempt */
	uint64_t offloaded;   /* calls handed to the pool or to io_uring */
	uint64_t pool_wakes;  /* FUTEX_WAKEs of an idle pool thread */
	uint64_t caller_sleeps;	 /* waits for a completion (futex, GETEVENTS) */
	uint64_t sqpoll_wakeups; /* submits that had to wake the SQ thread */
	/* buffered file reads, sync-first attempts, by the block's state
	 * when the window opened (mincore; nothing else reads the file, and
	 * with FADV_RANDOM a read brings in its own page only); 0 with
	 * direct */
	uint64_t cold_inline; /* not resident, yet the attempt returned the
					 * data: the read it started had finished
					 * when filemap_get_pages() looked again */
	uint64_t hot_eagain;  /* resident, yet refused: the page left the
					 * cache before the call (reclaim, DAMON) */
	/* file reads: page-cache state of the measured blocks (mincore).
	 * The worker establishes it before the window or fails (-EBUSY): */
	uint64_t measured_blocks;
	uint64_t target_resident; /* blocks read back in before the window */
	uint64_t resident_before; /* resident when the window opened */
	uint64_t resident_after;  /* resident when it closed */
	uint64_t evict_passes;	  /* POSIX_FADV_DONTNEED passes it took */
	uint64_t evict_left;	  /* blocks of the file resident after the
					 * last pass: non-zero means -EBUSY */
	uint64_t warm_passes;	  /* mincore checks of the measured set */
	uint64_t warm_off;	  /* measured blocks not as planned (cached
					 * or not) after the last: non-zero means
					 * -EBUSY */
	/* socket receives */
	uint64_t ready_ops; /* calls whose data was sent before the call */
	uint64_t sent_after_call; /* not-ready calls: data sent after the call */
};

/*
 * Random 4 KiB reads of a file, each block of the measured set once.
 * The worker creates the file at path (non-zero data, fsync'ed), evicts it
 * from the page cache, reads round(hit_ratio * nr_samples) of the measured
 * blocks back in, warms up on a disjoint set of blocks, checks with
 * mincore() that exactly the chosen measured blocks are resident, then
 * opens the window.  Both steps are verified: eviction that leaves blocks
 * resident after its passes (evict_left) and a measured set that is not
 * as planned after its repair passes (warm_off) return -EBUSY before the
 * window, with the counts saying what missed.  The file is removed on
 * return.  With direct, reads use O_DIRECT and nothing is read back in.
 */
struct syncfirst_file_config {
	const char *path;
	uint64_t file_blocks;  /* 4 KiB blocks in the file */
	double hit_ratio;      /* 0..1 of the measured blocks cached */
	uint32_t depth;	       /* calls in flight (async modes) */
	uint32_t pool_threads; /* 0: one per call in flight (depth) */
	int direct;	       /* O_DIRECT */
	int cpu;	       /* the caller */
	int async_cpu;	       /* pool threads and io-wq workers */
	int sqpoll_cpu;	     /* SQ thread (IORING_SETUP_SQ_AFF); -1: unpinned */
	uint64_t seed;	     /* block choice and order */
	uint64_t warmup;     /* unrecorded reads, on other blocks */
	uint64_t nr_samples; /* measured reads */
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
 * Test helpers for what the kernel does with RWF_NOWAIT (Linux 6.18,
 * mm/filemap.c filemap_get_pages()): on a page-cache miss the IOCB_NOWAIT
 * read starts the read (page_cache_sync_ra(); IOCB_NOIO is the flag that
 * would refuse to), looks the page up again, and says -EAGAIN only if that
 * read has not finished yet; if it has (the device, or the CPU that takes
 * its interrupt, beat the caller to the second look) the call returns the
 * data.  Either way it never sleeps for the I/O.
 */
struct syncfirst_nowait_result {
	int64_t res; /* bytes read (4096, block 1's own) or -errno */
	int32_t resident_before;     /* mincore() just before the call */
	int32_t resident_after_ms;   /* first mincore() that showed the page
					 * resident, in ms after the call (0: at
					 * once); -1: not within watch_ms */
	uint64_t voluntary_switches; /* the caller's during the call (it slept) */
	uint64_t involuntary_switches; /* it was preempted */
	uint64_t evict_passes;
	uint64_t evict_left;
};

/*
 * Create a small file at path, evict it (verified), read block 1 back in
 * if cached, then one preadv2(RWF_NOWAIT) of block 1, timed by the
 * thread's context switches (getrusage(RUSAGE_THREAD)); then up to
 * watch_ms of mincore() checks for the page.  Returns 0 with *out filled
 * in, or -errno if the setup failed (-EBUSY: the eviction left pages, see
 * out->evict_left).  The file is removed.
 */
int syncfirst_nowait_probe(const char *path, int cached, int watch_ms,
			   struct syncfirst_nowait_result *out);

/*
 * Test helper for the eviction check: create a file of nr_blocks at path,
 * map block mapped_block into this process and touch it (a mapped page
 * POSIX_FADV_DONTNEED must leave; -1: none), then evict as the file-read
 * worker does.  Returns its result (0, or -EBUSY with counts->evict_left
 * and evict_passes saying what survived how many passes).  The file is
 * removed.
 */
int syncfirst_evict_check(const char *path, uint64_t nr_blocks,
			  int64_t mapped_block,
			  struct syncfirst_counts *counts);

#endif /* LAB_SYNCFIRST_H */
