/*
 * Family `chains`: Ingo Molnar's syslets (seed 003) on today's kernel.
 *
 * A syslet is a chain of atoms (system call number, argument pointers,
 * ret_ptr, next) that the kernel runs one after the other without going
 * back to user space; SYSLET_STOP_ON_NEGATIVE ends the chain at the first
 * failure, completions land in a ring and async_wait(min_events) sleeps
 * until enough of them are there.  The saving is one user/kernel round
 * trip per atom.  Syslets never reached mainline; io_uring's linked SQEs
 * are the closest thing: IOSQE_IO_LINK (Linux 5.3) runs the next SQE only
 * when the previous one succeeded and completes the rest with -ECANCELED
 * otherwise (STOP_ON_NEGATIVE), IOSQE_IO_HARDLINK (5.5) keeps going after a
 * failure, the CQ ring is the completion ring and io_uring_enter()'s
 * min_complete is async_wait(min_events).
 *
 * One chain of k atoms is timed four ways against k plain system calls:
 * one enter per atom, one enter for a linked chain (link or hardlink), and
 * a linked chain reaped one io_uring_wait_cqe() at a time.  Every variant
 * does the same work; what a sample leaves out (evicting the page cache,
 * poisoning and checking the read buffers, closing what a failed chain
 * left open) happens between chains, and is counted.
 *
 * Build: part of lab._native (native/build.py), -luring.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "chains.h"
#include "compat_uring.h"
#include "internal.h"

#define BLOCK	  CHAINS_BLOCK_SIZE
#define WORDS	  (BLOCK / sizeof(uint64_t))
#define FILE_NAME "chains.dat"
/* never created: an openat that fails with -ENOENT */
#define MISSING_NAME "chains.missing"
/* Direct descriptors (registered file table, Linux 5.15 for openat_direct
 * and close_direct): a linked chain cannot hand an fd from one atom to the
 * next, but it can name a slot the open fills. */
#define SLOT_FILE  0
#define SLOT_EMPTY 1 /* never filled: fixed-file reads/closes -EBADF */
#define NR_SLOTS   2

struct chain {
	const struct chains_spec *spec;
	uint32_t nr_blocks; /* blocks the chain reads (the file's size) */
	int dirfd;	    /* O_PATH of spec->dir: openat atoms use it */
	int fd;		    /* the file: read atoms (op read), eviction */
	int chain_fd;	    /* syscalls, open_read_close: atom 1's fd */
	char *bufs;	    /* nr_blocks read buffers, then a sink block */
	char *sink;	    /* where a failing read atom points */
	struct io_uring ring;
	bool have_ring;
	uint64_t entries; /* kernel entries of the current chain */
	int32_t res[CHAINS_MAX_ATOMS];
	struct chains_counts *out;
};

/* The file's content: distinct per block and word, never the poison (0). */
static inline uint64_t file_word(uint32_t block, uint32_t w)
{
	return ((((uint64_t)block << 32) | w) * 0x9e3779b97f4a7c15ull) ^
	       0x5ca1ab1e5ca1ab1eull;
}

static inline bool fails(const struct chain *c, uint32_t atom)
{
	return c->spec->fail_at == atom + 1;
}

/* Which block atom i reads, or -1 for an atom that is not a read. */
static inline int atom_block(const struct chain *c, uint32_t i)
{
	switch (c->spec->op) {
	case CHAINS_OP_READ:
		return (int)i;
	case CHAINS_OP_OPEN_READ_CLOSE:
		return (i == 0 || i == c->spec->k - 1) ? -1 : (int)i - 1;
	default:
		return -1;
	}
}

static inline char *block_buf(const struct chain *c, int block)
{
	return c->bufs + (size_t)block * BLOCK;
}

/* What a successful atom i returns. */
static bool atom_ok(const struct chain *c, uint32_t i, int32_t res)
{
	if (atom_block(c, i) >= 0)
		return res == BLOCK;
	if (c->spec->op == CHAINS_OP_OPEN_READ_CLOSE && i == c->spec->k - 1)
		return res == 0; /* close */
	return res >= 0;	 /* NOP 0, getppid a pid, openat an fd / 0 */
}

static int spec_check(const struct chains_spec *spec)
{
	if (spec->k < 1 || spec->k > CHAINS_MAX_ATOMS ||
	    spec->fail_at > spec->k)
		return -EINVAL;
	if (spec->op < CHAINS_OP_NOP || spec->op > CHAINS_OP_OPEN_READ_CLOSE)
		return -EINVAL;
	/* openat, at least one read, close */
	if (spec->op == CHAINS_OP_OPEN_READ_CLOSE && spec->k < 3)
		return -EINVAL;
	if (spec->op != CHAINS_OP_NOP && !spec->dir)
		return -EINVAL;
	return 0;
}

/* ---- set-up and tear-down ----------------------------------------------- */

static int write_file(int fd, uint32_t nr_blocks)
{
	uint64_t words[WORDS];
	uint32_t b, w;
	size_t done;
	ssize_t n;

	for (b = 0; b < nr_blocks; b++) {
		for (w = 0; w < WORDS; w++)
			words[w] = file_word(b, w);
		for (done = 0; done < BLOCK; done += (size_t)n) {
			n = pwrite(fd, (char *)words + done, BLOCK - done,
				   (off_t)b * BLOCK + (off_t)done);
			if (n < 0 && errno == EINTR)
				n = 0;
			else if (n <= 0)
				return n < 0 ? -errno : -EIO;
		}
	}
	/* POSIX_FADV_DONTNEED drops clean pages only: write them back now */
	return fdatasync(fd) < 0 ? -errno : 0;
}

/*
 * Drop the file from the page cache before a chain.  The chain's first read
 * then goes to the disk and starts readahead for the blocks after it, as
 * for any sequential reader: later atoms mostly wait for that I/O rather
 * than start their own.
 */
static int evict(struct chain *c)
{
	/* a system call, but between chains: counted, never timed */
	c->out->untimed_syscalls++;
	return -posix_fadvise(c->fd, 0, 0, POSIX_FADV_DONTNEED);
}

/* Does eviction work on this file system?  (tmpfs keeps every page.) */
static int check_eviction(struct chain *c)
{
	size_t len = (size_t)c->nr_blocks * BLOCK, i, pages;
	unsigned char vec[CHAINS_MAX_ATOMS];
	void *map;
	int err;

	err = evict(c);
	if (err)
		return err;
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, c->fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	/* at most CHAINS_MAX_ATOMS blocks of 4 KiB: vec is large enough */
	pages = (len + (size_t)getpagesize() - 1) / (size_t)getpagesize();
	err = mincore(map, len, vec) < 0 ? -errno : 0;
	for (i = 0; !err && i < pages; i++)
		if (vec[i] & 1)
			err = -EOPNOTSUPP;
	munmap(map, len);
	return err;
}

static void chain_deinit(struct chain *c)
{
	if (c->have_ring)
		io_uring_queue_exit(&c->ring);
	if (c->chain_fd >= 0)
		close(c->chain_fd);
	if (c->fd >= 0)
		close(c->fd);
	if (c->dirfd >= 0)
		close(c->dirfd);
	free(c->bufs);
}

static int chain_init(struct chain *c, const struct chains_spec *spec,
		      struct chains_counts *out)
{
	size_t size;
	int err;

	memset(c, 0, sizeof(*c));
	c->spec = spec;
	c->out = out;
	c->dirfd = c->fd = c->chain_fd = -1;
	switch (spec->op) {
	case CHAINS_OP_READ:
		c->nr_blocks = spec->k;
		break;
	case CHAINS_OP_OPEN_READ_CLOSE:
		c->nr_blocks = spec->k - 2;
		break;
	default:
		c->nr_blocks = 0;
	}
	size = ((size_t)c->nr_blocks + 1) * BLOCK;
	if (posix_memalign((void **)&c->bufs, BLOCK, size))
		return -ENOMEM;
	memset(c->bufs, 0, size); /* fault the pages in, outside the loop */
	c->sink = block_buf(c, (int)c->nr_blocks);
	if (spec->op == CHAINS_OP_NOP)
		return 0;

	c->dirfd = open(spec->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->dirfd < 0)
		return -errno;
	c->fd = openat(c->dirfd, FILE_NAME,
		       O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (c->fd < 0)
		return -errno;
	err = write_file(c->fd, c->nr_blocks);
	if (err)
		return err;
	if (unlinkat(c->dirfd, MISSING_NAME, 0) < 0 && errno != ENOENT)
		return -errno;
	if (!spec->cached) {
		err = check_eviction(c);
		if (err)
			return err;
	}
	return 0;
}

static int ring_init(struct chain *c)
{
	unsigned flags = IORING_SETUP_SUBMIT_ALL;
	cpu_set_t cpus;
	int ret;

	/*
	 * SUBMIT_ALL (5.18): an SQE that fails early does not stop the
	 * submission of the rest: every atom posts a CQE.
	 *
	 * Each link of a chain is issued from task work when the one before
	 * completes (io_queue_next).  Normally that is task_work_add(), run
	 * before the enter returns to user space; with DEFER_TASKRUN (6.1) it
	 * is a ring-local list the task runs only inside
	 * io_uring_enter(GETEVENTS), until min_complete CQEs are there:
	 * cheaper per link, but nothing runs unless someone waits.
	 */
	if (c->spec->defer_taskrun)
		flags |= IORING_SETUP_SINGLE_ISSUER |
			 IORING_SETUP_DEFER_TASKRUN;
	ret = io_uring_queue_init(CHAINS_MAX_ATOMS, &c->ring, flags);
	if (ret < 0)
		return ret;
	c->have_ring = true;
	/* Whatever is punted to io-wq (an uncached openat, a retried read)
	 * runs on the worker's CPU, as the system call variant's work does
	 * (IORING_REGISTER_IOWQ_AFF, 5.14): a chain gets no second CPU. */
	CPU_ZERO(&cpus);
	CPU_SET(c->spec->cpu, &cpus);
	ret = io_uring_register_iowq_aff(&c->ring, sizeof(cpus), &cpus);
	if (ret < 0)
		return ret;
	if (c->spec->op == CHAINS_OP_OPEN_READ_CLOSE) {
		ret = io_uring_register_files_sparse(&c->ring, NR_SLOTS);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* ---- between chains (never timed) ---------------------------------------- */

static int chain_prepare(struct chain *c)
{
	uint32_t i;

	for (i = 0; i < c->spec->k; i++)
		c->res[i] = CHAINS_NOT_RUN;
	c->entries = 0;
	/* poison: a block counts as read only if the chain wrote it */
	memset(c->bufs, 0, (size_t)c->nr_blocks * BLOCK);
	if (!c->spec->cached && c->spec->op != CHAINS_OP_NOP)
		return evict(c);
	return 0;
}

/* Close what a chain opened but did not close (it failed before its close
 * atom, or the close was the failing atom). */
static int chain_cleanup(struct chain *c)
{
	int minus_one = -1, ret;

	if (c->spec->op != CHAINS_OP_OPEN_READ_CLOSE)
		return 0;
	if (!c->have_ring) {
		if (c->chain_fd < 0)
			return 0;
		c->out->untimed_syscalls++;
		ret = close(c->chain_fd);
		c->chain_fd = -1;
		return ret < 0 ? -errno : 0;
	}
	if (c->res[0] < 0 || c->res[c->spec->k - 1] == 0)
		return 0;
	c->out->untimed_syscalls++;
	ret = io_uring_register_files_update(&c->ring, SLOT_FILE, &minus_one,
					     1);
	return ret < 0 ? ret : 0;
}

/* Is block b in its buffer, as the file holds it?  Adds its words to *sum. */
static bool block_verify(const struct chain *c, int b, uint64_t *sum)
{
	const uint64_t *words = (const uint64_t *)block_buf(c, b);
	bool good = true;
	uint32_t w;

	for (w = 0; w < WORDS; w++) {
		*sum += words[w];
		good &= words[w] == file_word((uint32_t)b, w);
	}
	return good;
}

static void chain_account(struct chain *c, bool measured)
{
	struct chains_counts *out = c->out;
	uint64_t sum = 0;
	uint32_t i;
	int32_t r;
	int b;

	if (!measured)
		return;
	out->chains++;
	out->kernel_entries += c->entries;
	for (i = 0; i < c->spec->k; i++) {
		r = c->res[i];
		if (r == CHAINS_NOT_RUN) {
			out->not_run++;
			continue;
		}
		out->completions++;
		if (r == -ECANCELED)
			out->canceled++;
		else if (!atom_ok(c, i, r))
			out->failed++;
		else
			out->ok++;
		b = atom_block(c, i);
		if (b < 0 || r != BLOCK)
			continue;
		if (block_verify(c, b, &sum))
			out->blocks_verified++;
		else
			out->blocks_corrupt++;
	}
	out->checksum = sum;
}

typedef int (*chain_fn)(struct chain *c);

static int chains_measure(struct lab_handshake *hs, struct chain *c,
			  chain_fn run, uint64_t warmup, uint64_t nr_samples,
			  double *chain_ns)
{
	uint64_t s, t0, t1;
	int err;

	for (s = 0; s < warmup + nr_samples; s++) {
		if (s == warmup) {
			err = lab_handshake_ready(hs, NULL, 0);
			if (err)
				return err;
			memset(c->out, 0, sizeof(*c->out));
		}
		err = chain_prepare(c);
		if (err)
			return err;
		t0 = now_ns();
		err = run(c);
		t1 = now_ns();
		if (err)
			return err;
		chain_account(c, s >= warmup);
		err = chain_cleanup(c);
		if (err)
			return err;
		if (s >= warmup)
			chain_ns[s - warmup] = (double)(t1 - t0);
	}
	return lab_handshake_done(hs);
}

/* ---- k system calls ------------------------------------------------------ */

static inline int32_t sys_ret(long ret)
{
	return ret < 0 ? -errno : (int32_t)ret;
}

static int32_t syscall_atom(struct chain *c, uint32_t i)
{
	const struct chains_spec *spec = c->spec;
	bool fail = fails(c, i);
	int32_t ret;
	int b;

	switch (spec->op) {
	case CHAINS_OP_NOP:
		if (fail)
			return sys_ret(pread(-1, c->sink, BLOCK, 0));
		/* syscall(2), not getppid(3): one real kernel entry */
		return sys_ret(syscall(SYS_getppid));
	case CHAINS_OP_READ:
		return sys_ret(pread(fail ? -1 : c->fd, block_buf(c, (int)i),
				     BLOCK, (off_t)i * BLOCK));
	default:
		break;
	}
	if (i == 0) {
		ret = sys_ret(openat(c->dirfd, fail ? MISSING_NAME : FILE_NAME,
				     O_RDONLY | O_CLOEXEC));
		c->chain_fd = ret >= 0 ? ret : -1;
		return ret;
	}
	if (i == spec->k - 1) {
		ret = sys_ret(close(fail ? -1 : c->chain_fd));
		if (ret == 0)
			c->chain_fd = -1;
		return ret;
	}
	b = atom_block(c, i);
	return sys_ret(pread(fail ? -1 : c->chain_fd, block_buf(c, b), BLOCK,
			     (off_t)b * BLOCK));
}

static int chain_syscalls(struct chain *c)
{
	uint32_t i;

	for (i = 0; i < c->spec->k; i++) {
		c->res[i] = syscall_atom(c, i);
		c->entries++;
		/* what a syslet with SYSLET_STOP_ON_NEGATIVE does: the rest of
		 * the chain is never started */
		if (c->res[i] < 0)
			break;
	}
	return 0;
}

/* ---- io_uring ------------------------------------------------------------ */

static void uring_prep_atom(struct chain *c, struct io_uring_sqe *sqe,
			    uint32_t i)
{
	const struct chains_spec *spec = c->spec;
	bool fail = fails(c, i);
	int b = atom_block(c, i);

	switch (spec->op) {
	case CHAINS_OP_NOP:
		if (fail)
			io_uring_prep_read(sqe, -1, c->sink, BLOCK, 0);
		else
			io_uring_prep_nop(sqe);
		break;
	case CHAINS_OP_READ:
		io_uring_prep_read(sqe, fail ? -1 : c->fd, block_buf(c, b),
				   BLOCK, (uint64_t)b * BLOCK);
		break;
	default:
		if (i == 0) {
			/* no O_CLOEXEC: a direct descriptor is no fd, and
			 * the kernel refuses the flag with -EINVAL */
			io_uring_prep_openat_direct(
				sqe, c->dirfd, fail ? MISSING_NAME : FILE_NAME,
				O_RDONLY, 0, SLOT_FILE);
		} else if (i == spec->k - 1) {
			io_uring_prep_close_direct(sqe, fail ? SLOT_EMPTY :
							       SLOT_FILE);
		} else {
			io_uring_prep_read(sqe, fail ? SLOT_EMPTY : SLOT_FILE,
					   block_buf(c, b), BLOCK,
					   (uint64_t)b * BLOCK);
			sqe->flags |= IOSQE_FIXED_FILE;
		}
	}
	io_uring_sqe_set_data64(sqe, i);
}

/* Reap n CQEs into res[], entering the kernel only when the CQ is empty:
 * io_uring_wait_cqe() one completion at a time. */
static int uring_reap(struct chain *c, uint32_t n)
{
	struct io_uring_cqe *cqe;
	int ret;

	while (n) {
		ret = io_uring_peek_cqe(&c->ring, &cqe);
		if (ret == -EAGAIN) {
			c->entries++;
			ret = io_uring_wait_cqe(&c->ring, &cqe);
		}
		if (ret == -EINTR)
			continue;
		if (ret < 0)
			return ret;
		if (cqe->user_data < c->spec->k)
			c->res[cqe->user_data] = cqe->res;
		io_uring_cqe_seen(&c->ring, cqe);
		n--;
	}
	return 0;
}

static int chain_uring_separate(struct chain *c)
{
	struct io_uring_sqe *sqe;
	uint32_t i;
	int ret;

	for (i = 0; i < c->spec->k; i++) {
		sqe = io_uring_get_sqe(&c->ring);
		if (!sqe)
			return -EBUSY;
		uring_prep_atom(c, sqe, i);
		ret = io_uring_submit_and_wait(&c->ring, 1);
		c->entries++;
		if (ret < 0)
			return ret;
		ret = uring_reap(c, 1);
		if (ret)
			return ret;
		/* the program sees the failure before it submits the next
		 * atom: STOP_ON_NEGATIVE in user space, as with syscalls */
		if (c->res[i] < 0)
			break;
	}
	return 0;
}

static int uring_submit_chain(struct chain *c, unsigned link_flag,
			      unsigned wait_nr)
{
	struct io_uring_sqe *sqe;
	uint32_t i, k = c->spec->k;
	int ret;

	for (i = 0; i < k; i++) {
		sqe = io_uring_get_sqe(&c->ring);
		if (!sqe)
			return -EBUSY;
		uring_prep_atom(c, sqe, i);
		if (i + 1 < k)
			sqe->flags |= link_flag;
	}
	/* to_submit k, min_complete wait_nr: async_wait(min_events) rides
	 * on the same enter as the submission */
	ret = io_uring_submit_and_wait(&c->ring, wait_nr);
	c->entries++;
	if (ret < 0)
		return ret;
	if ((uint32_t)ret != k)
		return -EIO;
	return uring_reap(c, k);
}

static int chain_uring_link(struct chain *c)
{
	return uring_submit_chain(c, IOSQE_IO_LINK, c->spec->k);
}

static int chain_uring_hardlink(struct chain *c)
{
	return uring_submit_chain(c, IOSQE_IO_HARDLINK, c->spec->k);
}

static int chain_uring_link_wait1(struct chain *c)
{
	/* submit only; completions already posted by the time the enter
	 * returns (inline, or by task work on the way out) cost nothing,
	 * each later one costs a wait of its own */
	return uring_submit_chain(c, IOSQE_IO_LINK, 0);
}

/* ---- the workers ---------------------------------------------------------- */

static int chains_worker(struct lab_handshake *hs,
			 const struct chains_spec *spec, int how, bool uring,
			 uint64_t warmup, uint64_t nr_samples, double *chain_ns,
			 int32_t *atom_results, struct chains_counts *out)
{
	static const chain_fn uring_fns[] = {
		[CHAINS_URING_SEPARATE] = chain_uring_separate,
		[CHAINS_URING_LINK] = chain_uring_link,
		[CHAINS_URING_HARDLINK] = chain_uring_hardlink,
		[CHAINS_URING_LINK_WAIT1] = chain_uring_link_wait1,
	};
	struct chain c;
	cpu_set_t saved;
	chain_fn run;
	int err;

	err = spec_check(spec);
	if (err)
		return err;
	if (uring &&
	    (how < CHAINS_URING_SEPARATE || how > CHAINS_URING_LINK_WAIT1))
		return -EINVAL;
	run = uring ? uring_fns[how] : chain_syscalls;
	memset(out, 0, sizeof(*out));
	err = lab_pin_saving(spec->cpu, &saved);
	if (err)
		return err;
	err = chain_init(&c, spec, out);
	if (!err && uring)
		err = ring_init(&c);
	if (!err)
		err = chains_measure(hs, &c, run, warmup, nr_samples, chain_ns);
	if (atom_results)
		memcpy(atom_results, c.res, spec->k * sizeof(*c.res));
	chain_deinit(&c);
	lab_unpin(&saved);
	return err;
}

int chains_syscalls(struct lab_handshake *hs, const struct chains_spec *spec,
		    uint64_t warmup, uint64_t nr_samples, double *chain_ns,
		    int32_t *atom_results, struct chains_counts *out)
{
	return chains_worker(hs, spec, 0, false, warmup, nr_samples, chain_ns,
			     atom_results, out);
}

int chains_uring(struct lab_handshake *hs, int how,
		 const struct chains_spec *spec, uint64_t warmup,
		 uint64_t nr_samples, double *chain_ns, int32_t *atom_results,
		 struct chains_counts *out)
{
	return chains_worker(hs, spec, how, true, warmup, nr_samples, chain_ns,
			     atom_results, out);
}
