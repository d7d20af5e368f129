/*
 * Family `msgport`: system calls as messages (DragonFly, seed 001) and
 * protected procedure calls (K42, seed 004) on today's kernel.
 *
 * DragonFly's design sends a system call as a message to a kernel port;
 * the reply comes back on a reply port that may queue it silently, queue
 * it and wake (or upcall) the owner, or queue it and defer everything to a
 * flushsys() that user code calls when it leaves a critical section.
 * Signals and timers are messages that stay live and return again and
 * again.  io_uring is the nearest thing Linux has: an SQE is the message,
 * the CQ ring the reply port, and its modes map one to one:
 *
 *   poll      the CQ ring is read from user space: no system call to reap
 *   wait      waitsys(): io_uring_enter(IORING_ENTER_GETEVENTS)
 *   eventfd   a registered eventfd is signalled with each flush of CQEs
 *   deferred  IORING_SETUP_DEFER_TASKRUN (6.1): completions that arrive
 *             from outside the caller (poll wake-ups, timers, io-wq) wait
 *             as task work until the owner enters with GETEVENTS; with
 *             IORING_SETUP_TASKRUN_FLAG (5.19) the kernel sets
 *             IORING_SQ_TASKRUN in the SQ ring's flags meanwhile, and
 *             io_uring_get_events() is flushsys()
 *   sync      the same work as plain system calls
 *
 * Live messages are multishot requests (IORING_TIMEOUT_MULTISHOT, 6.4;
 * IORING_POLL_ADD_MULTI, 5.13): one SQE, a CQE with IORING_CQE_F_MORE per
 * event, against a one-shot request re-armed after every completion.
 *
 * K42's PPC is a call into another address space (or thread) and back:
 * synchronous (send the request, wait for the reply) or asynchronous (a
 * one-way stream the receiver drains).  Here: a client and a server, as
 * two threads or two processes, on one CPU or two, over
 * IORING_OP_MSG_RING between their rings (5.18), a futex or an eventfd
 * doorbell on shared-memory queues, a pair of pipes, a unix stream socket.
 * Every request carries a sequence number, the server echoes it and the
 * client checks that each gets exactly one reply.
 *
 * Build: part of lab._native (native/build.py), -luring -lpthread.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "compat_uring.h"
#include "internal.h"
#include "msgport.h"

#define BLOCK	     MSGPORT_BLOCK_SIZE
#define FILE_NAME    "msgport.dat"
#define PIPE_MSG     sizeof(uint64_t) /* op pipe_write: one word */
#define PIPE_WANT    (1 << 20)	      /* F_SETPIPE_SZ: room for 128 Ki words */
#define DRAIN_CHUNK  (64 * 1024)
#define POLL_SPIN_NS 2000000000ull /* poll mode gives up after 2 s */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read at least one byte: the count, -EPIPE at end of file, or -errno. */
static ssize_t read_some(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = read(fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == 0 ? -EPIPE : n;
}

static int sleep_ns(uint64_t ns)
{
	struct timespec ts;
	uint64_t until = now_ns() + ns;

	ts.tv_sec = (time_t)(until / 1000000000ull);
	ts.tv_nsec = (long)(until % 1000000000ull);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
	return 0;
}

/*
 * Start a thread already on its CPU (pthread_create() fails with EINVAL
 * for a CPU it may not use): it never runs anywhere else, and a bad CPU is
 * an error here, not a peer that silently never answers.
 */
static int start_thread_on(pthread_t *thread, int cpu, void *(*fn)(void *),
			   void *arg)
{
	pthread_attr_t attr;
	cpu_set_t set;
	int err;

	if (cpu < 0 || cpu >= CPU_SETSIZE)
		return -EINVAL;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	err = pthread_attr_init(&attr);
	if (err)
		return -err;
	err = pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	if (!err)
		err = pthread_create(thread, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return -err;
}

static unsigned ring_entries(uint32_t n)
{
	unsigned entries = 8;

	while (entries < n)
		entries <<= 1;
	return entries;
}

/* ==== reply ports ======================================================== */

/* The content of op read's file: one word per block, repeated. */
static inline uint64_t block_word(uint64_t block)
{
	return (block + 1) * 0x9e3779b97f4a7c15ull;
}

struct port {
	int mode;
	int op;
	uint32_t batch;
	struct io_uring ring;
	bool have_ring;
	int efd;	    /* eventfd mode: registered with the ring */
	int fd;		    /* op read: the cached file */
	int pipe_r, pipe_w; /* pipe ops */
	size_t pipe_size;
	uint64_t pipe_pending; /* pipe_write: bytes not drained yet */
	char *bufs;	       /* read: batch blocks; pipe_read: batch bytes */
	uint64_t *words;       /* pipe_write: the batch's message words */
	char *drain;	       /* pipe_write: DRAIN_CHUNK */
	uint8_t seen[MSGPORT_MAX_BATCH];
	uint64_t seq; /* first message of the current batch */
	struct msgport_port_counts c;
};

static void port_deinit(struct port *p)
{
	if (p->have_ring)
		io_uring_queue_exit(&p->ring);
	if (p->efd >= 0)
		close(p->efd);
	if (p->fd >= 0)
		close(p->fd);
	if (p->pipe_r >= 0)
		close(p->pipe_r);
	if (p->pipe_w >= 0)
		close(p->pipe_w);
	free(p->bufs);
	free(p->words);
	free(p->drain);
}

static int port_make_file(struct port *p, const char *dir)
{
	uint64_t words[BLOCK / sizeof(uint64_t)];
	char path[4096];
	uint64_t b;
	size_t w;
	int err;

	if (snprintf(path, sizeof(path), "%s/%s", dir, FILE_NAME) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	p->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (p->fd < 0)
		return -errno;
	/* nothing left behind, whatever happens: the fd keeps it alive */
	unlink(path);
	for (b = 0; b < MSGPORT_FILE_BLOCKS; b++) {
		for (w = 0; w < BLOCK / sizeof(uint64_t); w++)
			words[w] = block_word(b);
		if (pwrite(p->fd, words, BLOCK, (off_t)(b * BLOCK)) != BLOCK)
			return errno ? -errno : -EIO;
	}
	/* Written pages are in the page cache; read them back anyway, so
	 * every message is a cached read that completes inline. */
	for (b = 0; b < MSGPORT_FILE_BLOCKS; b++) {
		err = (int)pread(p->fd, words, BLOCK, (off_t)(b * BLOCK));
		if (err != BLOCK)
			return err < 0 ? -errno : -EIO;
	}
	return 0;
}

static int port_init(struct port *p, int mode, int op, uint32_t batch,
		     const char *dir)
{
	struct io_uring_params params;
	int err;

	memset(p, 0, sizeof(*p));
	p->mode = mode;
	p->op = op;
	p->batch = batch;
	p->efd = p->fd = p->pipe_r = p->pipe_w = -1;

	if (op == MSGPORT_OP_READ) {
		err = port_make_file(p, dir);
		if (err)
			return err;
		p->bufs = aligned_alloc(BLOCK, (size_t)batch * BLOCK);
		if (!p->bufs)
			return -ENOMEM;
	}
	if (op == MSGPORT_OP_PIPE_WRITE || op == MSGPORT_OP_PIPE_READ) {
		int fds[2];

		if (pipe2(fds, O_CLOEXEC) < 0)
			return -errno;
		p->pipe_r = fds[0];
		p->pipe_w = fds[1];
		/* a bigger pipe means fewer drains (pipe-max-size permitting) */
		fcntl(p->pipe_w, F_SETPIPE_SZ, PIPE_WANT);
		err = fcntl(p->pipe_w, F_GETPIPE_SZ);
		if (err < 0)
			return -errno;
		p->pipe_size = (size_t)err;
		p->bufs = malloc(batch);
		p->words = calloc(batch, sizeof(uint64_t));
		p->drain = malloc(DRAIN_CHUNK);
		if (!p->bufs || !p->words || !p->drain)
			return -ENOMEM;
		if ((size_t)batch * PIPE_MSG > p->pipe_size / 2)
			return -EINVAL;
	}
	if (mode == MSGPORT_SYNC)
		return 0;

	memset(&params, 0, sizeof(params));
	if (mode == MSGPORT_DEFERRED)
		/* DEFER_TASKRUN needs SINGLE_ISSUER (6.1); TASKRUN_FLAG makes
		 * the kernel show pending task work in the SQ ring flags */
		params.flags = IORING_SETUP_SINGLE_ISSUER |
			       IORING_SETUP_DEFER_TASKRUN |
			       IORING_SETUP_TASKRUN_FLAG;
	err = io_uring_queue_init_params(ring_entries(batch), &p->ring,
					 &params);
	if (err < 0)
		return err == -EINVAL && mode == MSGPORT_DEFERRED ?
			       -EOPNOTSUPP :
			       err;
	p->have_ring = true;
	if (mode == MSGPORT_EVENTFD) {
		p->efd = eventfd(0, EFD_CLOEXEC);
		if (p->efd < 0)
			return -errno;
		err = io_uring_register_eventfd(&p->ring, p->efd);
		if (err < 0)
			return err;
	}
	return 0;
}

static void port_prep(struct port *p, struct io_uring_sqe *sqe, uint32_t i)
{
	uint64_t seq = p->seq + i;

	switch (p->op) {
	case MSGPORT_OP_NOP:
		io_uring_prep_nop(sqe);
		break;
	case MSGPORT_OP_READ:
		/* poison the word the reply is checked by */
		*(uint64_t *)(p->bufs + (size_t)i * BLOCK) = 0;
		io_uring_prep_read(sqe, p->fd, p->bufs + (size_t)i * BLOCK,
				   BLOCK, (seq % MSGPORT_FILE_BLOCKS) * BLOCK);
		break;
	case MSGPORT_OP_PIPE_WRITE:
		p->words[i] = seq;
		/* offset -1: a pipe has no position */
		io_uring_prep_write(sqe, p->pipe_w, &p->words[i], PIPE_MSG,
				    (uint64_t)-1);
		break;
	case MSGPORT_OP_PIPE_READ:
		io_uring_prep_read(sqe, p->pipe_r, p->bufs + i, 1,
				   (uint64_t)-1);
		break;
	}
	sqe->user_data = seq;
}

static bool port_result_ok(const struct port *p, uint32_t i, int64_t res)
{
	switch (p->op) {
	case MSGPORT_OP_NOP:
		return res >= 0; /* 0; getppid() a pid */
	case MSGPORT_OP_READ:
		return res == BLOCK &&
		       *(uint64_t *)(p->bufs + (size_t)i * BLOCK) ==
			       block_word((p->seq + i) % MSGPORT_FILE_BLOCKS);
	case MSGPORT_OP_PIPE_WRITE:
		return res == PIPE_MSG;
	case MSGPORT_OP_PIPE_READ:
		return res == 1;
	}
	return false;
}

/* One reply: a message of this batch, replied once, with the right result. */
static void port_reply(struct port *p, uint64_t seq, int64_t res)
{
	uint64_t i = seq - p->seq;

	p->c.completions++;
	if (seq < p->seq || i >= p->batch || p->seen[i] ||
	    !port_result_ok(p, (uint32_t)i, res)) {
		p->c.bad_completions++;
		return;
	}
	p->seen[i] = 1;
}

/* Reap what the CQ ring holds: loads and stores, no system call. */
static uint32_t port_reap_ring(struct port *p)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&p->ring, head, cqe)
	{
		port_reply(p, cqe->user_data, cqe->res);
		n++;
	}
	io_uring_cq_advance(&p->ring, n);
	return n;
}

static int port_sync_batch(struct port *p)
{
	uint32_t i;
	int64_t res;
	int err;

	if (p->op == MSGPORT_OP_PIPE_READ) {
		memset(p->bufs, 'm', p->batch);
		err = write_full(p->pipe_w, p->bufs, p->batch);
		if (err)
			return err;
		p->c.source_syscalls++;
	}
	for (i = 0; i < p->batch; i++) {
		uint64_t seq = p->seq + i;

		switch (p->op) {
		case MSGPORT_OP_NOP:
			/* syscall(2), not getppid(3): one kernel entry */
			res = syscall(SYS_getppid);
			break;
		case MSGPORT_OP_READ:
			*(uint64_t *)(p->bufs + (size_t)i * BLOCK) = 0;
			res = pread(
				p->fd, p->bufs + (size_t)i * BLOCK, BLOCK,
				(off_t)((seq % MSGPORT_FILE_BLOCKS) * BLOCK));
			break;
		case MSGPORT_OP_PIPE_WRITE:
			p->words[i] = seq;
			res = write(p->pipe_w, &p->words[i], PIPE_MSG);
			break;
		default:
			res = read(p->pipe_r, p->bufs + i, 1);
			break;
		}
		if (res < 0)
			res = -errno;
		p->c.submissions++;
		port_reply(p, seq, res);
	}
	return 0;
}

/* Wait for (or flush) the batch's replies the way the mode says. */
static int port_collect(struct port *p)
{
	uint32_t got = 0, spins = 0;
	uint64_t deadline = 0, v;
	bool flagged = false;
	int ret;

	switch (p->mode) {
	case MSGPORT_POLL:
		/* DragonFly's silent queue: look, never ask the kernel.  A
		 * reply that needs task work (pipe_read) is posted on the way
		 * out of the write() that made it ready (TWA_SIGNAL). */
		while ((got += port_reap_ring(p)) < p->batch) {
			cpu_relax();
			if (++spins % 4096)
				continue;
			if (!deadline)
				deadline = now_ns() + POLL_SPIN_NS;
			else if (now_ns() > deadline)
				return -ETIMEDOUT;
		}
		return 0;
	case MSGPORT_WAIT:
		/* waitsys(): always the system call, even when the replies
		 * are there already (liburing's io_uring_wait_cqe() would
		 * peek first and skip it: that is poll mode) */
		while (got < p->batch) {
			ret = io_uring_enter(p->ring.ring_fd, 0, p->batch - got,
					     IORING_ENTER_GETEVENTS, NULL);
			p->c.reap_syscalls++;
			if (ret < 0 && ret != -EINTR)
				return ret;
			got += port_reap_ring(p);
		}
		return 0;
	case MSGPORT_EVENTFD:
		/* queue and wake: sleep in read() until the ring signals.
		 * The counter is a wake-up, not a count (one signal per flush
		 * of CQEs), so the CQ ring says how many are there. */
		do {
			if (read(p->efd, &v, sizeof(v)) < 0 && errno != EINTR)
				return -errno;
			p->c.reap_syscalls++;
			got += port_reap_ring(p);
		} while (got < p->batch);
		return 0;
	case MSGPORT_DEFERRED:
		/* The critical section is over: flushsys() if the kernel
		 * flagged pending work, else the replies are already there
		 * (inline completions) or not ready yet (then wait).  Since
		 * 6.13 one flush runs at most 20 task-work items
		 * (IO_LOCAL_TW_DEFAULT_MAX) when not waiting for more: a
		 * batch of 64 late replies takes several. */
		for (;;) {
			if (IO_URING_READ_ONCE(*p->ring.sq.kflags) &
			    IORING_SQ_TASKRUN) {
				if (!flagged)
					p->c.taskrun_flagged++;
				flagged = true;
				ret = io_uring_get_events(&p->ring);
				p->c.reap_syscalls++;
				if (ret < 0 && ret != -EINTR)
					return ret;
			}
			got += port_reap_ring(p);
			if (got >= p->batch)
				return 0;
			if (IO_URING_READ_ONCE(*p->ring.sq.kflags) &
			    IORING_SQ_TASKRUN)
				continue;
			ret = io_uring_enter(p->ring.ring_fd, 0, p->batch - got,
					     IORING_ENTER_GETEVENTS, NULL);
			p->c.reap_syscalls++;
			if (ret < 0 && ret != -EINTR)
				return ret;
		}
	}
	return -EINVAL;
}

/* pipe_write: empty the pipe outside the timed batches, before it fills. */
static int port_drain_pipe(struct port *p)
{
	ssize_t n;

	p->pipe_pending += (uint64_t)p->batch * PIPE_MSG;
	if (p->pipe_pending + (uint64_t)p->batch * PIPE_MSG <= p->pipe_size / 2)
		return 0;
	while (p->pipe_pending > 0) {
		n = read_some(p->pipe_r, p->drain,
			      p->pipe_pending < DRAIN_CHUNK ?
				      (size_t)p->pipe_pending :
				      DRAIN_CHUNK);
		p->c.untimed_syscalls++;
		if (n < 0)
			return (int)n;
		p->pipe_pending -= (uint64_t)n;
	}
	return 0;
}

static int port_batch(struct port *p, double *sample)
{
	struct io_uring_sqe *sqe;
	uint64_t t0, t1;
	uint32_t i;
	int ret;

	memset(p->seen, 0, p->batch);
	t0 = now_ns();
	if (p->mode == MSGPORT_SYNC) {
		ret = port_sync_batch(p);
	} else {
		for (i = 0; i < p->batch; i++) {
			sqe = io_uring_get_sqe(&p->ring);
			if (!sqe)
				return -EBUSY;
			port_prep(p, sqe, i);
		}
		/* sendsys() for the whole batch: one io_uring_enter() */
		ret = io_uring_submit(&p->ring);
		if (ret >= 0 && (uint32_t)ret != p->batch)
			ret = -EIO;
		if (ret < 0)
			return ret;
		p->c.submissions++;
		if (io_uring_cq_ready(&p->ring) >= p->batch)
			p->c.ready_at_submit++;
		if (p->op == MSGPORT_OP_PIPE_READ) {
			/* the event the replies wait for: the reads are
			 * poll-armed on the empty pipe until it comes */
			memset(p->bufs, 'm', p->batch);
			ret = write_full(p->pipe_w, p->bufs, p->batch);
			if (ret)
				return ret;
			p->c.source_syscalls++;
		}
		ret = port_collect(p);
	}
	t1 = now_ns();
	if (ret)
		return ret;
	p->seq += p->batch;
	p->c.messages += p->batch;
	if (sample)
		*sample = (double)(t1 - t0) / p->batch;
	if (p->op == MSGPORT_OP_PIPE_WRITE)
		return port_drain_pipe(p);
	return 0;
}

int msgport_port(struct lab_handshake *hs, int mode, int op, uint32_t batch,
		 const char *dir, int cpu, uint64_t warmup, uint64_t nr_samples,
		 double *ns_per_message, struct msgport_port_counts *out)
{
	struct port *p;
	cpu_set_t saved;
	uint64_t s;
	int err;

	if (mode < MSGPORT_POLL || mode > MSGPORT_SYNC || op < MSGPORT_OP_NOP ||
	    op > MSGPORT_OP_PIPE_READ || batch < 1 ||
	    batch > MSGPORT_MAX_BATCH || (op == MSGPORT_OP_READ && !dir) ||
	    nr_samples < 1 || !ns_per_message || !out)
		return -EINVAL;
	err = lab_pin_saving(cpu, &saved);
	if (err)
		return err;
	p = malloc(sizeof(*p));
	if (!p) {
		err = -ENOMEM;
		goto out_unpin;
	}
	err = port_init(p, mode, op, batch, dir);
	if (err)
		goto out;
	for (s = 0; s < warmup + nr_samples; s++) {
		if (s == warmup) {
			err = lab_handshake_ready(hs, NULL, 0);
			if (err)
				goto out;
			/* the counts cover the window, as the probes do */
			memset(&p->c, 0, sizeof(p->c));
		}
		err = port_batch(p, s >= warmup ? &ns_per_message[s - warmup] :
						  NULL);
		if (err)
			goto out;
	}
	err = lab_handshake_done(hs);
	*out = p->c;
	if (!err && p->c.bad_completions)
		err = -EIO;
out:
	port_deinit(p);
	free(p);
out_unpin:
	lab_unpin(&saved);
	return err;
}

/* ---- the deferred reply port, looked at directly (tests) ----------------- */

struct defer_writer {
	int fd;
	int err;
};

static void *defer_writer_fn(void *arg)
{
	struct defer_writer *w = arg;

	w->err = write_full(w->fd, "r", 1);
	return NULL;
}

int msgport_defer_check(int source, int defer, uint32_t hold_us,
			struct msgport_defer_report *out)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 1000000 };
	struct io_uring_params params;
	struct defer_writer w = { .fd = -1 };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct io_uring ring;
	int fds[2] = { -1, -1 }, err;
	pthread_t writer;
	unsigned head;
	char byte;

	if ((source != 0 && source != 1) || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memset(&params, 0, sizeof(params));
	if (defer)
		params.flags = IORING_SETUP_SINGLE_ISSUER |
			       IORING_SETUP_DEFER_TASKRUN |
			       IORING_SETUP_TASKRUN_FLAG;
	out->flags = params.flags;
	err = io_uring_queue_init_params(4, &ring, &params);
	if (err < 0)
		return err;
	sqe = io_uring_get_sqe(&ring);
	if (source == 0) {
		if (pipe2(fds, O_CLOEXEC) < 0) {
			err = -errno;
			goto out_ring;
		}
		/* empty pipe: the read is poll-armed */
		io_uring_prep_read(sqe, fds[0], &byte, 1, (uint64_t)-1);
	} else {
		io_uring_prep_timeout(sqe, &ts, 0, 0);
	}
	sqe->user_data = 1;
	err = io_uring_submit(&ring);
	if (err != 1) {
		err = err < 0 ? err : -EIO;
		goto out_pipe;
	}
	if (source == 0) {
		/* the reply becomes ready from another thread's write(): the
		 * poll wake-up queues task work for the ring's owner */
		w.fd = fds[1];
		err = -pthread_create(&writer, NULL, defer_writer_fn, &w);
		if (err)
			goto out_pipe;
		pthread_join(writer, NULL);
		err = w.err;
		if (err)
			goto out_pipe;
	} else {
		sleep_ns(1000000); /* the timer fires meanwhile */
	}
	/* the critical section: system calls, but none into io_uring */
	sleep_ns((uint64_t)hold_us * 1000);
	out->cq_ready_before = io_uring_cq_ready(&ring);
	out->taskrun_before =
		(IO_URING_READ_ONCE(*ring.sq.kflags) & IORING_SQ_TASKRUN) != 0;
	/* flushsys() */
	err = io_uring_get_events(&ring);
	if (err < 0)
		goto out_pipe;
	out->cq_ready_after = io_uring_cq_ready(&ring);
	out->taskrun_after =
		(IO_URING_READ_ONCE(*ring.sq.kflags) & IORING_SQ_TASKRUN) != 0;
	io_uring_for_each_cqe(&ring, head, cqe)
	{
		out->res = cqe->res;
		break;
	}
	err = 0;
out_pipe:
	if (fds[0] >= 0) {
		close(fds[0]);
		close(fds[1]);
	}
out_ring:
	io_uring_queue_exit(&ring);
	return err;
}

/* ==== live messages ======================================================= */

#define LIVE_TAG   0x6c697665ull /* "live" */
#define REMOVE_TAG 0x72656dull	 /* "rem" */

/* The event source of the poll variants: a thread that signals an eventfd
 * once per interval, and only once the receiver has consumed the previous
 * signal (two signals before one wake-up would merge into one CQE). */
struct live_source {
	_Alignas(LAB_CACHELINE) _Atomic uint64_t acked;
	_Alignas(LAB_CACHELINE) _Atomic uint64_t sent_ns;
	_Atomic uint64_t signals;
	_Atomic int stop;
	uint64_t interval;
	int efd;
	int err;
};

static void *live_source_fn(void *arg)
{
	struct live_source *src = arg;
	struct timespec ts;
	uint64_t k = 0, next, one = 1;

	next = now_ns() + src->interval;
	while (!atomic_load_explicit(&src->stop, memory_order_acquire)) {
		ts.tv_sec = (time_t)(next / 1000000000ull);
		ts.tv_nsec = (long)(next % 1000000000ull);
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		next += src->interval;
		if (next < now_ns())
			next = now_ns() + src->interval;
		if (atomic_load_explicit(&src->acked, memory_order_acquire) !=
		    k)
			continue; /* the receiver is behind: next tick */
		atomic_store_explicit(&src->sent_ns, now_ns(),
				      memory_order_release);
		atomic_store_explicit(&src->signals, k + 1,
				      memory_order_release);
		if (write(src->efd, &one, sizeof(one)) != sizeof(one)) {
			src->err = -errno;
			return NULL;
		}
		k++;
	}
	return NULL;
}

struct live {
	int kind;
	uint32_t count;
	uint64_t interval;
	struct io_uring ring;
	bool have_ring;
	int efd;
	struct live_source *src;
	pthread_t source;
	bool have_source;
	uint64_t consumed; /* completions consumed, warm-up included */
	struct msgport_live_counts c;
};

static double live_late(struct live *l, uint64_t seen, uint64_t prev)
{
	uint64_t due = prev + l->interval;

	/* a multishot timeout re-arms just before its CQE is posted, so the
	 * next one can come a little under an interval after we saw this
	 * one: lateness 0, counted */
	if (seen < due) {
		l->c.clamped++;
		return 0.0;
	}
	return (double)(seen - due);
}

static int live_wait(struct live *l, struct io_uring_cqe **cqe)
{
	int ret;

	do
		ret = io_uring_wait_cqe(&l->ring, cqe);
	while (ret == -EINTR);
	return ret;
}

/* Submit the prepared SQE and wait for the first CQE in the same enter
 * (every live variant arms this way: what differs is how often). */
static int live_arm(struct live *l)
{
	int ret;

	do
		ret = io_uring_submit_and_wait(&l->ring, 1);
	while (ret == -EINTR);
	if (ret >= 0)
		l->c.submissions++;
	return ret;
}

/* Multishot timeout: one SQE with a count, k CQEs, all but the last with
 * IORING_CQE_F_MORE.  The kernel re-arms relative to when its task work
 * posts each CQE (io_timeout_complete()), so there is no grid to measure
 * against: lateness is each gap between CQEs seen minus the interval. */
static int live_timeouts_multishot(struct live *l, uint64_t n, double *out,
				   uint64_t *last)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	uint64_t done = 0, prev, now, k, j;
	uint64_t tag;
	unsigned flags;
	int ret, res;

	ts.tv_sec = (int64_t)(l->interval / 1000000000ull);
	ts.tv_nsec = (long long)(l->interval % 1000000000ull);
	while (done < n) {
		k = n - done < l->count ? n - done : l->count;
		sqe = io_uring_get_sqe(&l->ring);
		lab_prep_timeout_multishot(sqe, &ts, (unsigned)k);
		sqe->user_data = LIVE_TAG;
		prev = now_ns();
		/* arm and wait for the first in one enter, as the one-shot
		 * variant re-arms and waits: the difference is the re-arm */
		ret = live_arm(l);
		if (ret < 0)
			return ret;
		for (j = 0; j < k; j++) {
			ret = live_wait(l, &cqe);
			now = now_ns();
			if (ret < 0)
				return ret;
			res = cqe->res;
			flags = cqe->flags;
			tag = cqe->user_data;
			io_uring_cqe_seen(&l->ring, cqe);
			if (res == -EINVAL)
				return -EOPNOTSUPP; /* before 6.4 */
			if (res != -ETIME || tag != LIVE_TAG)
				return res < 0 ? res : -EIO;
			l->c.completions++;
			if (flags & IORING_CQE_F_MORE)
				l->c.completions_more++;
			/* F_MORE on all but the count's last one */
			if (!!(flags & IORING_CQE_F_MORE) != (j + 1 < k))
				return -EIO;
			if (out)
				out[done + j] = live_late(l, now, prev);
			prev = now;
		}
		if (k > l->c.max_per_submission)
			l->c.max_per_submission = k;
		done += k;
		*last = prev;
	}
	return 0;
}

/* The one-shot timeout re-armed as soon as its CQE is seen: one SQE per
 * completion, the re-arm and the wait in one io_uring_enter(). */
static int live_timeouts_oneshot(struct live *l, uint64_t n, double *out,
				 uint64_t *last)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	uint64_t i, prev = now_ns(), now;
	int ret, res;

	ts.tv_sec = (int64_t)(l->interval / 1000000000ull);
	ts.tv_nsec = (long long)(l->interval % 1000000000ull);
	for (i = 0; i < n; i++) {
		sqe = io_uring_get_sqe(&l->ring);
		io_uring_prep_timeout(sqe, &ts, 0, 0);
		sqe->user_data = LIVE_TAG;
		ret = live_arm(l);
		if (ret < 0)
			return ret;
		ret = live_wait(l, &cqe);
		now = now_ns();
		if (ret < 0)
			return ret;
		res = cqe->res;
		io_uring_cqe_seen(&l->ring, cqe);
		if (res != -ETIME)
			return res < 0 ? res : -EIO;
		l->c.completions++;
		if (out)
			out[i] = live_late(l, now, prev);
		prev = now;
	}
	if (n && l->c.max_per_submission < 1)
		l->c.max_per_submission = 1;
	*last = prev;
	return 0;
}

/* A poll completion: consume the event (read the eventfd, as a program
 * would read what became readable) and let the source go on. */
static int live_poll_consume(struct live *l, uint64_t seen, double *sample,
			     bool ack)
{
	uint64_t v, sent = atomic_load_explicit(&l->src->sent_ns,
						memory_order_acquire);

	if (read(l->efd, &v, sizeof(v)) != sizeof(v))
		return -errno;
	l->c.consume_syscalls++;
	l->consumed++;
	if (sample)
		*sample = seen > sent ? (double)(seen - sent) : 0.0;
	if (ack)
		atomic_store_explicit(&l->src->acked, l->consumed,
				      memory_order_release);
	return 0;
}

/* Wait for the removal of a multishot poll: its last CQE (no F_MORE) and
 * the remove request's own. */
static int live_poll_cancel(struct live *l)
{
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	bool poll_done = false, remove_done = false;
	int ret;

	sqe = io_uring_get_sqe(&l->ring);
	io_uring_prep_poll_remove(sqe, LIVE_TAG);
	sqe->user_data = REMOVE_TAG;
	ret = io_uring_submit(&l->ring);
	if (ret != 1)
		return ret < 0 ? ret : -EIO;
	l->c.cancels++;
	while (!poll_done || !remove_done) {
		ret = live_wait(l, &cqe);
		if (ret < 0)
			return ret;
		if (cqe->user_data == REMOVE_TAG) {
			remove_done = true;
			if (cqe->res < 0 && cqe->res != -ENOENT &&
			    cqe->res != -EALREADY)
				ret = cqe->res;
		} else if (!(cqe->flags & IORING_CQE_F_MORE)) {
			poll_done = true;
		} else {
			ret = -EIO; /* an event no one signalled */
		}
		io_uring_cqe_seen(&l->ring, cqe);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int live_polls(struct live *l, uint64_t n, double *out)
{
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	bool multi = l->kind == MSGPORT_LIVE_MULTISHOT_POLL;
	uint64_t done = 0, k, j, now;
	unsigned flags;
	int ret, res;

	while (done < n) {
		k = multi ? (n - done < l->count ? n - done : l->count) : 1;
		sqe = io_uring_get_sqe(&l->ring);
		if (multi)
			io_uring_prep_poll_multishot(sqe, l->efd, POLLIN);
		else
			io_uring_prep_poll_add(sqe, l->efd, POLLIN);
		sqe->user_data = LIVE_TAG;
		/* arm and wait for the (first) event in the same enter */
		ret = live_arm(l);
		if (ret < 0)
			return ret;
		for (j = 0; j < k; j++) {
			ret = live_wait(l, &cqe);
			now = now_ns();
			if (ret < 0)
				return ret;
			res = cqe->res;
			flags = cqe->flags;
			if (cqe->user_data != LIVE_TAG || res < 0 ||
			    !(res & POLLIN))
				return res < 0 ? res : -EIO;
			io_uring_cqe_seen(&l->ring, cqe);
			l->c.completions++;
			if (flags & IORING_CQE_F_MORE)
				l->c.completions_more++;
			/* a multishot poll that ended by itself (no F_MORE)
			 * before its count is an error here */
			if (multi && !(flags & IORING_CQE_F_MORE))
				return -EIO;
			/* the last event of a multishot request is acked
			 * after the cancel: no event may race it */
			ret = live_poll_consume(l, now,
						out ? &out[done + j] : NULL,
						!multi || j + 1 < k);
			if (ret)
				return ret;
		}
		if (multi) {
			ret = live_poll_cancel(l);
			if (ret)
				return ret;
			atomic_store_explicit(&l->src->acked, l->consumed,
					      memory_order_release);
		}
		if (k > l->c.max_per_submission)
			l->c.max_per_submission = k;
		done += k;
	}
	return 0;
}

static int live_phase(struct live *l, uint64_t n, double *out)
{
	uint64_t start = now_ns(), last = start;
	int err;

	switch (l->kind) {
	case MSGPORT_LIVE_MULTISHOT_TIMEOUT:
		err = live_timeouts_multishot(l, n, out, &last);
		break;
	case MSGPORT_LIVE_ONESHOT_TIMEOUT:
		err = live_timeouts_oneshot(l, n, out, &last);
		break;
	default:
		return live_polls(l, n, out);
	}
	if (!err && out)
		l->c.drift_ns = (int64_t)(last - (start + n * l->interval));
	return err;
}

static void live_stop_source(struct live *l)
{
	if (!l->have_source)
		return;
	atomic_store_explicit(&l->src->stop, 1, memory_order_release);
	pthread_join(l->source, NULL);
	l->have_source = false;
}

int msgport_live(struct lab_handshake *hs, int kind, uint32_t count,
		 uint64_t interval_ns, int cpu, int source_cpu, uint64_t warmup,
		 uint64_t nr_samples, double *out,
		 struct msgport_live_counts *counts)
{
	struct live l;
	struct io_uring_params params;
	cpu_set_t saved;
	int err;

	if (kind < MSGPORT_LIVE_MULTISHOT_TIMEOUT ||
	    kind > MSGPORT_LIVE_ONESHOT_POLL || count < 1 ||
	    interval_ns < 1000 || nr_samples < 1 || !out || !counts)
		return -EINVAL;
	memset(&l, 0, sizeof(l));
	l.kind = kind;
	l.count = count;
	l.interval = interval_ns;
	l.efd = -1;
	err = lab_pin_saving(cpu, &saved);
	if (err)
		return err;
	/* Room in the CQ ring for every completion of one multishot SQE: a
	 * multishot request that finds the CQ ring full ends early (its last
	 * CQE without F_MORE), so a reader late by a few periods would turn
	 * a stall into an error. */
	memset(&params, 0, sizeof(params));
	params.flags = IORING_SETUP_CQSIZE;
	params.cq_entries = ring_entries(2 * (count + 2));
	err = io_uring_queue_init_params(8, &l.ring, &params);
	if (err < 0)
		goto out_unpin;
	l.have_ring = true;
	if (kind == MSGPORT_LIVE_MULTISHOT_POLL ||
	    kind == MSGPORT_LIVE_ONESHOT_POLL) {
		l.efd = eventfd(0, EFD_CLOEXEC);
		if (l.efd < 0) {
			err = -errno;
			goto out;
		}
		l.src = aligned_alloc(LAB_CACHELINE, sizeof(*l.src));
		if (!l.src) {
			err = -ENOMEM;
			goto out;
		}
		memset(l.src, 0, sizeof(*l.src));
		l.src->interval = interval_ns;
		l.src->efd = l.efd;
		err = start_thread_on(&l.source, source_cpu, live_source_fn,
				      l.src);
		if (err)
			goto out;
		l.have_source = true;
	}
	err = live_phase(&l, warmup, NULL);
	if (!err)
		err = lab_handshake_ready(hs, NULL, 0);
	if (err)
		goto out;
	memset(&l.c, 0, sizeof(l.c));
	err = live_phase(&l, nr_samples, out);
	if (!err)
		err = lab_handshake_done(hs);
out:
	live_stop_source(&l);
	if (l.src) {
		l.c.signals = atomic_load(&l.src->signals);
		if (!err)
			err = l.src->err;
	}
	*counts = l.c;
	free(l.src);
	if (l.efd >= 0)
		close(l.efd);
	if (l.have_ring)
		io_uring_queue_exit(&l.ring);
out_unpin:
	lab_unpin(&saved);
	return err;
}

/* ==== protected procedure calls =========================================== */

#define PPC_QCAP 2048		    /* > MSGPORT_MAX_BATCH + 1: never full */
#define PPC_STOP ((1ull << 63) - 1) /* the last message */
#define PPC_OWN	 (1ull << 63)	    /* user_data of our own MSG_RING SQEs */

/* A single-producer single-consumer queue in shared memory; tail is the
 * futex word (or the eventfd's companion): what the consumer waits on. */
struct ppc_queue {
	_Alignas(LAB_CACHELINE) _Atomic uint32_t tail;
	_Alignas(LAB_CACHELINE) _Atomic uint32_t head;
	_Alignas(LAB_CACHELINE) uint64_t slot[PPC_QCAP];
};

/* MAP_SHARED: the same memory for a server thread or a forked server. */
struct ppc_shared {
	struct ppc_queue req, rep;
	_Alignas(LAB_CACHELINE) _Atomic uint32_t ready;
	_Atomic int32_t server_ring_fd;
	_Atomic int32_t server_err;
	_Atomic uint64_t server_requests;
	_Atomic uint64_t server_drains;
};

struct ppc {
	int transport;
	bool async;
	bool process;
	uint32_t batch;
	int server_cpu;
	struct ppc_shared *sh;
	int c_rfd, c_wfd; /* stream: client reads replies, writes requests */
	int s_rfd, s_wfd; /* the server's ends */
	int efd_req, efd_rep;
	struct io_uring cring; /* msg_ring: the client's reply port */
	bool have_cring;
	int s_ring_fd;	       /* msg_ring: the server's ring, as we see it */
	bool own_s_ring_fd;    /* ours to close */
	struct io_uring sring; /* process msg_ring: the server's ring, made
				 * before fork; the child uses it */
	bool have_sring;
	pthread_t thread;
	bool have_thread;
	pid_t child;
	uint64_t *buf; /* PPC_QCAP reply words */
	uint8_t *seen; /* the current batch's replies */
	uint64_t next_seq;
	struct msgport_ppc_counts *c;
};

static inline long ppc_futex(struct ppc *p, _Atomic uint32_t *word, int op,
			     uint32_t val)
{
	/* shared futexes for processes (keyed by the page), private ones
	 * (keyed by the mm) for threads */
	return syscall(SYS_futex, (uint32_t *)word,
		       op | (p->process ? 0 : FUTEX_PRIVATE_FLAG), val, NULL,
		       NULL, 0);
}

static void ppc_ring_bell(struct ppc *p, struct ppc_queue *q, int efd)
{
	uint64_t one = 1;

	/* (an eventfd write fails only on counter overflow: never here) */
	if (p->transport == MSGPORT_PPC_FUTEX)
		ppc_futex(p, &q->tail, FUTEX_WAKE, 1);
	else
		lab_keep(write(efd, &one, sizeof(one)));
}

/* Sleep until the queue holds something past `head`. */
static int ppc_wait_bell(struct ppc *p, struct ppc_queue *q, int efd,
			 uint32_t head)
{
	uint64_t v;

	while (atomic_load_explicit(&q->tail, memory_order_acquire) == head) {
		if (p->transport == MSGPORT_PPC_FUTEX) {
			if (ppc_futex(p, &q->tail, FUTEX_WAIT, head) < 0 &&
			    errno != EAGAIN && errno != EINTR)
				return -errno;
		} else if (read(efd, &v, sizeof(v)) < 0 && errno != EINTR) {
			return -errno;
		}
	}
	return 0;
}

/* ---- the server ----------------------------------------------------------- */

static int ppc_serve_stream(struct ppc *p, uint64_t *buf)
{
	size_t have, k, i;
	ssize_t n;
	bool stop;
	int err;

	for (;;) {
		n = read_some(p->s_rfd, buf, PPC_QCAP * sizeof(uint64_t));
		if (n == -EPIPE)
			return 0; /* the client is gone */
		if (n < 0)
			return (int)n;
		have = (size_t)n;
		/* a stream may cut a word: read the rest of it */
		while (have % sizeof(uint64_t)) {
			n = read_some(p->s_rfd, (char *)buf + have,
				      sizeof(uint64_t) -
					      have % sizeof(uint64_t));
			if (n < 0)
				return (int)n;
			have += (size_t)n;
		}
		atomic_fetch_add(&p->sh->server_drains, 1);
		k = have / sizeof(uint64_t);
		stop = false;
		for (i = 0; i < k; i++)
			if (buf[i] == PPC_STOP) {
				stop = true;
				k = i;
				break;
			}
		atomic_fetch_add(&p->sh->server_requests, k);
		/* the replies to everything drained, in one write */
		if (k) {
			err = write_full(p->s_wfd, buf, k * sizeof(uint64_t));
			if (err)
				return err;
		}
		if (stop)
			return 0;
	}
}

static int ppc_serve_queue(struct ppc *p)
{
	struct ppc_queue *req = &p->sh->req, *rep = &p->sh->rep;
	uint32_t head = 0, tail, rtail = 0, k;
	bool stop;
	int err;

	for (;;) {
		err = ppc_wait_bell(p, req, p->efd_req, head);
		if (err)
			return err;
		tail = atomic_load_explicit(&req->tail, memory_order_acquire);
		atomic_fetch_add(&p->sh->server_drains, 1);
		stop = false;
		for (k = 0; head != tail; head++) {
			uint64_t s = req->slot[head % PPC_QCAP];

			if (s == PPC_STOP) {
				stop = true;
				head++;
				break;
			}
			rep->slot[(rtail + k) % PPC_QCAP] = s;
			k++;
		}
		atomic_store_explicit(&req->head, head, memory_order_release);
		atomic_fetch_add(&p->sh->server_requests, k);
		if (k) {
			rtail += k;
			atomic_store_explicit(&rep->tail, rtail,
					      memory_order_release);
			ppc_ring_bell(p, rep, p->efd_rep);
		}
		if (stop)
			return 0;
	}
}

/* A server thread tells the client its ring (or why there is none). */
static void ppc_publish_ring(struct ppc *p, int fd, int err)
{
	atomic_store(&p->sh->server_ring_fd, fd);
	atomic_store(&p->sh->server_err, err);
	atomic_store_explicit(&p->sh->ready, 1, memory_order_release);
	ppc_futex(p, &p->sh->ready, FUTEX_WAKE, 1);
}

/*
 * The server's ring.  A server thread makes its own; a server process
 * uses the one its parent made before fork(), because a ring fd cannot be
 * handed to another process afterwards: the kernel refuses io_uring files
 * in SCM_RIGHTS (-EINVAL, net/core/scm.c, since "io_uring/af_unix: disable
 * sending io_uring over sockets", Linux 6.7).  The parent only keeps a dup
 * of its fd as a MSG_RING target and unmaps the ring; the client's ring is
 * MADV_DONTFORK, so the child gets only its fd.  Neither ring is
 * SINGLE_ISSUER: that would tie each to the task that created it.
 * Replies go back by IORING_OP_MSG_RING to the client's ring fd;
 * IOSQE_CQE_SKIP_SUCCESS (5.17) keeps the sender's own CQE off its ring
 * unless the message fails.
 */
static int ppc_serve_ring(struct ppc *p)
{
	struct io_uring local, *ring = &p->sring;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	unsigned head, n;
	uint64_t k;
	bool stop = false;
	int ret;

	if (!p->process) {
		ring = &local;
		ret = io_uring_queue_init(ring_entries(2 * (p->batch + 2)),
					  ring, 0);
		ppc_publish_ring(p, ret < 0 ? -1 : ring->ring_fd,
				 ret < 0 ? ret : 0);
		if (ret < 0)
			return ret;
	}
	while (!stop) {
		/* reply to the last drain and wait for the next request in
		 * one enter: K42's "reply and wait" */
		do
			ret = io_uring_submit_and_wait(ring, 1);
		while (ret == -EINTR);
		if (ret < 0)
			goto out;
		atomic_fetch_add(&p->sh->server_drains, 1);
		n = 0;
		k = 0;
		io_uring_for_each_cqe(ring, head, cqe)
		{
			uint64_t s = cqe->user_data;

			n++;
			if (s & PPC_OWN) {
				ret = cqe->res < 0 ? cqe->res : -EIO;
				continue;
			}
			if (s == PPC_STOP) {
				stop = true;
				continue;
			}
			sqe = io_uring_get_sqe(ring);
			if (!sqe) {
				ret = -EBUSY;
				continue;
			}
			io_uring_prep_msg_ring(sqe, p->cring.ring_fd, 0, s, 0);
			sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
			sqe->user_data = PPC_OWN | s;
			k++;
		}
		io_uring_cq_advance(ring, n);
		atomic_fetch_add(&p->sh->server_requests, k);
		if (ret < 0)
			goto out;
	}
	ret = io_uring_submit(ring); /* the last replies */
	ret = ret < 0 ? ret : 0;
out:
	/* a server process just exits: the kernel tears its ring down */
	if (!p->process)
		io_uring_queue_exit(ring);
	return ret;
}

static int ppc_serve(struct ppc *p)
{
	uint64_t buf[PPC_QCAP];

	switch (p->transport) {
	case MSGPORT_PPC_MSG_RING:
		return ppc_serve_ring(p);
	case MSGPORT_PPC_FUTEX:
	case MSGPORT_PPC_EVENTFD:
		return ppc_serve_queue(p);
	default:
		return ppc_serve_stream(p, buf);
	}
}

static void *ppc_server_thread(void *arg)
{
	struct ppc *p = arg;
	int err = ppc_serve(p);

	if (err)
		atomic_store(&p->sh->server_err, err);
	return NULL;
}

/* ---- the client ----------------------------------------------------------- */

static void ppc_account(struct ppc *p, uint64_t base, uint32_t n, uint64_t s,
			uint32_t *got)
{
	if (s < base) {
		/* every earlier request has had its reply already */
		p->c->duplicate_replies++;
	} else if (s >= base + n) {
		p->c->unexpected_replies++;
	} else if (p->seen[s - base]) {
		p->c->duplicate_replies++;
	} else {
		p->seen[s - base] = 1;
		p->c->replies++;
		(*got)++;
	}
}

/* Send n requests base.. with one kernel entry (msg_ring: and wait for n
 * completions in the same enter). */
static int ppc_send(struct ppc *p, uint64_t base, uint32_t n, bool wait)
{
	struct io_uring_sqe *sqe;
	struct ppc_queue *q;
	uint32_t i, tail;
	int ret;

	switch (p->transport) {
	case MSGPORT_PPC_MSG_RING:
		for (i = 0; i < n; i++) {
			sqe = io_uring_get_sqe(&p->cring);
			if (!sqe)
				return -EBUSY;
			io_uring_prep_msg_ring(sqe, p->s_ring_fd, 0, base + i,
					       0);
			sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
			sqe->user_data = PPC_OWN | (base + i);
		}
		do
			ret = wait ? io_uring_submit_and_wait(&p->cring, n) :
				     io_uring_submit(&p->cring);
		while (ret == -EINTR);
		return ret < 0 ? ret : 0;
	case MSGPORT_PPC_FUTEX:
	case MSGPORT_PPC_EVENTFD:
		q = &p->sh->req;
		tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
		for (i = 0; i < n; i++)
			q->slot[(tail + i) % PPC_QCAP] = base + i;
		atomic_store_explicit(&q->tail, tail + n, memory_order_release);
		ppc_ring_bell(p, q, p->efd_req);
		return 0;
	default:
		for (i = 0; i < n; i++)
			p->buf[i] = base + i;
		return write_full(p->c_wfd, p->buf, n * sizeof(uint64_t));
	}
}

/* Take the replies that are there (waiting for at least one). */
static int ppc_recv(struct ppc *p, uint64_t base, uint32_t n, uint32_t *got)
{
	struct io_uring_cqe *cqe;
	struct ppc_queue *q;
	uint32_t head, tail;
	unsigned h, seen = 0;
	size_t have, i;
	ssize_t r;
	int ret = 0;

	switch (p->transport) {
	case MSGPORT_PPC_MSG_RING:
		if (!io_uring_cq_ready(&p->cring)) {
			ret = io_uring_enter(p->cring.ring_fd, 0, n - *got,
					     IORING_ENTER_GETEVENTS, NULL);
			if (ret < 0 && ret != -EINTR)
				return ret;
			ret = 0;
		}
		io_uring_for_each_cqe(&p->cring, h, cqe)
		{
			seen++;
			if (cqe->user_data & PPC_OWN)
				ret = cqe->res < 0 ? cqe->res : -EIO;
			else
				ppc_account(p, base, n, cqe->user_data, got);
		}
		io_uring_cq_advance(&p->cring, seen);
		return ret;
	case MSGPORT_PPC_FUTEX:
	case MSGPORT_PPC_EVENTFD:
		q = &p->sh->rep;
		head = atomic_load_explicit(&q->head, memory_order_relaxed);
		ret = ppc_wait_bell(p, q, p->efd_rep, head);
		if (ret)
			return ret;
		tail = atomic_load_explicit(&q->tail, memory_order_acquire);
		for (; head != tail; head++)
			ppc_account(p, base, n, q->slot[head % PPC_QCAP], got);
		atomic_store_explicit(&q->head, head, memory_order_release);
		return 0;
	default:
		r = read_some(p->c_rfd, p->buf, PPC_QCAP * sizeof(uint64_t));
		if (r < 0)
			return (int)r;
		have = (size_t)r;
		while (have % sizeof(uint64_t)) {
			r = read_some(p->c_rfd, (char *)p->buf + have,
				      sizeof(uint64_t) -
					      have % sizeof(uint64_t));
			if (r < 0)
				return (int)r;
			have += (size_t)r;
		}
		for (i = 0; i < have / sizeof(uint64_t); i++)
			ppc_account(p, base, n, p->buf[i], got);
		return 0;
	}
}

/* One call (sync) or one batch of calls (async): a sample. */
static int ppc_call(struct ppc *p, double *sample)
{
	uint32_t n = p->async ? p->batch : 1, got = 0;
	uint64_t base = p->next_seq, t0, t1;
	int err;

	memset(p->seen, 0, n);
	t0 = now_ns();
	err = ppc_send(p, base, n, true);
	p->c->requests += n;
	p->next_seq += n;
	while (!err && got < n)
		err = ppc_recv(p, base, n, &got);
	t1 = now_ns();
	if (err)
		return err;
	if (sample)
		*sample = (double)(t1 - t0) / n;
	return 0;
}

/* After the server has ended: any reply still queued is one too many. */
static void ppc_leftovers(struct ppc *p)
{
	struct io_uring_cqe *cqe;
	uint32_t head, tail, got = 0;
	unsigned h, seen = 0;
	uint64_t end = p->next_seq;
	ssize_t r;

	switch (p->transport) {
	case MSGPORT_PPC_MSG_RING:
		io_uring_for_each_cqe(&p->cring, h, cqe)
		{
			seen++;
			if (!(cqe->user_data & PPC_OWN))
				ppc_account(p, end, 0, cqe->user_data, &got);
		}
		io_uring_cq_advance(&p->cring, seen);
		return;
	case MSGPORT_PPC_FUTEX:
	case MSGPORT_PPC_EVENTFD:
		head = atomic_load(&p->sh->rep.head);
		tail = atomic_load(&p->sh->rep.tail);
		for (; head != tail; head++)
			ppc_account(p, end, 0, p->sh->rep.slot[head % PPC_QCAP],
				    &got);
		return;
	default:
		if (fcntl(p->c_rfd, F_SETFL, O_NONBLOCK) < 0)
			return;
		while ((r = read(p->c_rfd, p->buf,
				 PPC_QCAP * sizeof(uint64_t))) > 0) {
			size_t i;

			/* a cut word counts as one reply too many */
			for (i = 0; i < ((size_t)r + 7) / sizeof(uint64_t); i++)
				ppc_account(p, end, 0, p->buf[i], &got);
		}
		return;
	}
}

/* ---- set-up and tear-down ------------------------------------------------- */

static int ppc_msg_ring_supported(struct io_uring *ring)
{
	struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
	int ok;

	if (!probe)
		return -EOPNOTSUPP;
	ok = io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
	io_uring_free_probe(probe);
	return ok ? 0 : -EOPNOTSUPP;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int ppc_init(struct ppc *p, int transport, bool async, bool process,
		    uint32_t batch, int server_cpu,
		    struct msgport_ppc_counts *c)
{
	int fds[2], err;

	memset(p, 0, sizeof(*p));
	p->transport = transport;
	p->async = async;
	p->process = process;
	p->batch = async ? batch : 1;
	p->server_cpu = server_cpu;
	p->c = c;
	p->c_rfd = p->c_wfd = p->s_rfd = p->s_wfd = -1;
	p->efd_req = p->efd_rep = -1;
	p->s_ring_fd = -1;
	p->child = -1;

	p->sh = mmap(NULL, sizeof(*p->sh), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p->sh == MAP_FAILED) {
		p->sh = NULL;
		return -errno;
	}
	atomic_store(&p->sh->server_ring_fd, -1);
	p->buf = calloc(PPC_QCAP, sizeof(uint64_t));
	p->seen = calloc(MSGPORT_MAX_BATCH, 1);
	if (!p->buf || !p->seen)
		return -ENOMEM;

	switch (transport) {
	case MSGPORT_PPC_MSG_RING:
		err = io_uring_queue_init(ring_entries(2 * (p->batch + 2)),
					  &p->cring, 0);
		if (err < 0)
			return err;
		p->have_cring = true;
		err = ppc_msg_ring_supported(&p->cring);
		if (err)
			return err;
		if (!process)
			return 0;
		/* the child inherits the fd (its MSG_RING target), not the
		 * ring's memory */
		err = io_uring_ring_dontfork(&p->cring);
		if (err < 0)
			return err;
		err = io_uring_queue_init(ring_entries(2 * (p->batch + 2)),
					  &p->sring, 0);
		if (err < 0)
			return err;
		p->have_sring = true;
		p->s_ring_fd = fcntl(p->sring.ring_fd, F_DUPFD_CLOEXEC, 0);
		if (p->s_ring_fd < 0)
			return -errno;
		p->own_s_ring_fd = true;
		return 0;
	case MSGPORT_PPC_FUTEX:
		return 0;
	case MSGPORT_PPC_EVENTFD:
		p->efd_req = eventfd(0, EFD_CLOEXEC);
		p->efd_rep = eventfd(0, EFD_CLOEXEC);
		return p->efd_req < 0 || p->efd_rep < 0 ? -errno : 0;
	case MSGPORT_PPC_PIPE:
		if (pipe2(fds, O_CLOEXEC) < 0)
			return -errno;
		p->s_rfd = fds[0];
		p->c_wfd = fds[1];
		if (pipe2(fds, O_CLOEXEC) < 0)
			return -errno;
		p->c_rfd = fds[0];
		p->s_wfd = fds[1];
		return 0;
	case MSGPORT_PPC_UNIX_SOCKET:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
			return -errno;
		p->c_rfd = fds[0];
		p->c_wfd = dup(fds[0]);
		p->s_rfd = fds[1];
		p->s_wfd = dup(fds[1]);
		return p->c_wfd < 0 || p->s_wfd < 0 ? -errno : 0;
	}
	return -EINVAL;
}

/* The client's side of set-up once the server runs: its ring fd. */
static int ppc_server_ready(struct ppc *p)
{
	if (p->transport != MSGPORT_PPC_MSG_RING || p->process)
		return 0;
	int err;

	while (!atomic_load_explicit(&p->sh->ready, memory_order_acquire))
		ppc_futex(p, &p->sh->ready, FUTEX_WAIT, 0);
	err = atomic_load(&p->sh->server_err);
	if (err)
		return err;
	/* our own reference: the ring outlives a server thread that ended */
	p->s_ring_fd =
		fcntl(atomic_load(&p->sh->server_ring_fd), F_DUPFD_CLOEXEC, 0);
	if (p->s_ring_fd < 0)
		return -errno;
	p->own_s_ring_fd = true;
	return 0;
}

static int ppc_start_server(struct ppc *p, int client_cpu)
{
	int err;

	if (!p->process) {
		err = start_thread_on(&p->thread, p->server_cpu,
				      ppc_server_thread, p);
		if (err)
			return err;
		p->have_thread = true;
		return 0;
	}
	/* the child inherits the forking thread's CPU: fork from there */
	err = lab_pin_self(p->server_cpu);
	if (err)
		return err;
	p->child = fork();
	if (p->child < 0) {
		err = -errno;
		lab_pin_self(client_cpu);
		return err;
	}
	if (p->child == 0) {
		/* The server process never returns into Python. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close_fd(&p->c_rfd);
		close_fd(&p->c_wfd);
		err = ppc_serve(p);
		if (err)
			atomic_store(&p->sh->server_err, err);
		_exit(err ? 1 : 0);
	}
	err = lab_pin_self(client_cpu);
	if (err)
		return err;
	/* the parent keeps only the client's ends: EOF reaches the server */
	close_fd(&p->s_rfd);
	close_fd(&p->s_wfd);
	if (p->have_sring) {
		/* the child's now: keep only the fd dup'ed as a target */
		io_uring_queue_exit(&p->sring);
		p->have_sring = false;
	}
	return 0;
}

/* End the server: the STOP message through the transport itself. */
static int ppc_stop_server(struct ppc *p)
{
	uint64_t stop = PPC_STOP;
	int err = 0, status;

	if (!p->have_thread && p->child <= 0)
		return 0;
	switch (p->transport) {
	case MSGPORT_PPC_MSG_RING:
		if (p->s_ring_fd >= 0)
			err = ppc_send(p, PPC_STOP, 1, false);
		break;
	case MSGPORT_PPC_FUTEX:
	case MSGPORT_PPC_EVENTFD:
		err = ppc_send(p, PPC_STOP, 1, false);
		break;
	default:
		err = write_full(p->c_wfd, &stop, sizeof(stop));
		/* and end of file, whatever happens (the socket's read end is
		 * the same socket: shut its sending side) */
		if (p->transport == MSGPORT_PPC_UNIX_SOCKET)
			shutdown(p->c_wfd, SHUT_WR);
		close_fd(&p->c_wfd);
		break;
	}
	if (p->have_thread) {
		if (err && p->transport == MSGPORT_PPC_MSG_RING) {
			/* no way to reach the server's ring: leave it */
			pthread_detach(p->thread);
		} else {
			pthread_join(p->thread, NULL);
		}
		p->have_thread = false;
	} else {
		if (err)
			kill(p->child, SIGKILL);
		while (waitpid(p->child, &status, 0) < 0 && errno == EINTR)
			;
		if (!err && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
			err = atomic_load(&p->sh->server_err) ?: -ECHILD;
		p->child = -1;
	}
	if (!err)
		err = atomic_load(&p->sh->server_err);
	return err;
}

static void ppc_deinit(struct ppc *p)
{
	close_fd(&p->c_rfd);
	close_fd(&p->c_wfd);
	close_fd(&p->s_rfd);
	close_fd(&p->s_wfd);
	close_fd(&p->efd_req);
	close_fd(&p->efd_rep);
	if (p->have_sring)
		io_uring_queue_exit(&p->sring);
	if (p->own_s_ring_fd)
		close_fd(&p->s_ring_fd);
	if (p->have_cring)
		io_uring_queue_exit(&p->cring);
	free(p->buf);
	free(p->seen);
	if (p->sh)
		munmap(p->sh, sizeof(*p->sh));
}

int msgport_ppc(struct lab_handshake *hs, int transport, int async, int process,
		int cpu, int server_cpu, uint32_t batch, uint64_t warmup,
		uint64_t nr_samples, double *ns_per_call,
		struct msgport_ppc_counts *out)
{
	struct ppc p;
	cpu_set_t saved;
	uint64_t s;
	int err, stop_err;

	if (transport < MSGPORT_PPC_MSG_RING ||
	    transport > MSGPORT_PPC_UNIX_SOCKET || batch < 1 ||
	    batch > MSGPORT_MAX_BATCH || nr_samples < 1 || !ns_per_call || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	err = lab_pin_saving(cpu, &saved);
	if (err)
		return err;
	err = ppc_init(&p, transport, async, process, batch, server_cpu, out);
	if (err)
		goto out;
	err = ppc_start_server(&p, cpu);
	if (err)
		goto out;
	out->server_tgid = p.process ? p.child : getpid();
	err = ppc_server_ready(&p);
	for (s = 0; !err && s < warmup + nr_samples; s++) {
		if (s == warmup) {
			err = lab_handshake_ready(
				hs, p.process ? &p.child : NULL, p.process);
			if (err)
				break;
		}
		err = ppc_call(&p,
			       s >= warmup ? &ns_per_call[s - warmup] : NULL);
	}
	if (!err)
		err = lab_handshake_done(hs);
	stop_err = ppc_stop_server(&p);
	if (!err)
		err = stop_err;
	ppc_leftovers(&p);
	out->server_requests = atomic_load(&p.sh->server_requests);
	out->server_drains = atomic_load(&p.sh->server_drains);
	out->missing_replies = out->requests - out->replies;
	out->window_requests = nr_samples * p.batch;
	if (!err &&
	    (out->missing_replies || out->duplicate_replies ||
	     out->unexpected_replies || out->server_requests != out->requests))
		err = -EIO;
out:
	/* a server that never got going is stopped here too */
	if (p.sh && (p.have_thread || p.child > 0))
		ppc_stop_server(&p);
	ppc_deinit(&p);
	lab_unpin(&saved);
	return err;
}
