/*
 * Family `chains` (chains.c): syslet chains (seed 003) rebuilt with linked
 * io_uring SQEs.  Part of the cffi cdef (see lab_native.h for the rules
 * such a header follows); lab/families/chains.py reads the ops, the ways
 * to submit and the counts from it by name (CHAINS_OP_READ: op "read",
 * CHAINS_URING_LINK: variant "uring_link").
 */
#ifndef LAB_CHAINS_H
#define LAB_CHAINS_H

#include "lab_native.h"

/* What each atom of a chain does. */
enum chains_op {
	CHAINS_OP_NOP,		  /* IORING_OP_NOP; syscall(SYS_getppid) */
	CHAINS_OP_READ,		  /* 4 KiB read of block i of a k-block file */
	CHAINS_OP_OPEN_READ_CLOSE /* openat, k-2 reads, close */
};

/* How the io_uring variants submit a chain and reap its completions. */
enum chains_submit {
	CHAINS_URING_SEPARATE, /* one io_uring_enter() per atom, wait for it */
	CHAINS_URING_LINK, /* k SQEs with IOSQE_IO_LINK, one enter waits for k */
	CHAINS_URING_HARDLINK,	/* the same with IOSQE_IO_HARDLINK */
	CHAINS_URING_LINK_WAIT1 /* linked, io_uring_wait_cqe() per completion */
};

enum {
	CHAINS_MAX_ATOMS = 64,
	CHAINS_BLOCK_SIZE = 4096,
	/* atom_results[] of an atom a stopped chain never ran (no errno is
	 * this large: they end at 4095) */
	CHAINS_NOT_RUN = -100000
};

struct chains_spec {
	int op;		   /* enum chains_op */
	uint32_t k;	   /* atoms per chain, 1..CHAINS_MAX_ATOMS */
	int cached;	   /* 0: evict the file (POSIX_FADV_DONTNEED) before
				 * each chain, outside the timed interval */
	uint32_t fail_at;  /* 0, or the atom (1..k) made to fail */
	int defer_taskrun; /* io_uring variants: IORING_SETUP_DEFER_TASKRUN
				 * (+ SINGLE_ISSUER, Linux 6.1) */
	int cpu;	   /* the worker's CPU, and io-wq's */
	const char *dir;   /* where the chain's file is created (ext4) */
};

/* Over the measured chains only; per-chain values are these / chains. */
struct chains_counts {
	uint64_t chains;
	uint64_t completions;	   /* atoms that returned (syscalls) or posted a
				 * CQE (io_uring), cancelled ones included */
	uint64_t ok;		   /* atoms that returned what they should */
	uint64_t failed;	   /* any other result but -ECANCELED */
	uint64_t canceled;	   /* -ECANCELED: cut off by a failed link */
	uint64_t not_run;	   /* never started: a stopped chain's tail */
	uint64_t kernel_entries;   /* system calls the chain made, as counted
				 * in user space (the probes check it) */
	uint64_t untimed_syscalls; /* eviction and clean-up between chains:
				 * in the probes' window, not in a sample */
	uint64_t blocks_verified;  /* blocks read with the right content */
	uint64_t blocks_corrupt;   /* blocks read with anything else */
	uint64_t checksum;	   /* sum of the 64-bit words read by the last
				 * chain (mod 2^64), for tests */
};

/*
 * Both workers run `warmup` unrecorded chains, open the handshake window,
 * record nr_samples chains (chain_ns: one chain, first atom's preparation
 * to last result), close it.  atom_results (k entries, may be NULL) gets
 * the last chain's per-atom results: syslets' ret_ptr.  Return 0 or
 * -errno; -EINVAL for a spec that cannot run, -EOPNOTSUPP when
 * cached = 0 but the file system keeps the pages after eviction.
 */
int chains_syscalls(struct lab_handshake *hs, const struct chains_spec *spec,
		    uint64_t warmup, uint64_t nr_samples, double *chain_ns,
		    int32_t *atom_results, struct chains_counts *out);
int chains_uring(struct lab_handshake *hs, int how,
		 const struct chains_spec *spec, uint64_t warmup,
		 uint64_t nr_samples, double *chain_ns, int32_t *atom_results,
		 struct chains_counts *out);

#endif /* LAB_CHAINS_H */
