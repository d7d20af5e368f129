/*
 * Family `msgport`, reply ports: system calls as messages (DragonFly, seed
 * 001) on today's kernel.
 *
 * DragonFly's design sends a system call as a message to a kernel port;
 * the reply comes back on a reply port that may queue it silently, queue
 * it and wake (or upcall) the owner, or queue it and defer everything to a
 * flushsys() that user code calls when it leaves a critical section.
 * io_uring is the nearest thing Linux has: an SQE is the message, the CQ
 * ring the reply port, and its modes map one to one:
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
 * Build: part of lab._native (native/build.py), -luring -lpthread.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "compat_uring.h"
#include "msgport_port_internal.h"

#define FILE_NAME    "msgport.dat"
#define DRAIN_CHUNK  (64 * 1024)
#define POLL_SPIN_NS 2000000000ull /* poll mode gives up after 2 s */

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

void port_deinit(struct port *p)
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

int port_init(struct port *p, int mode, int op, uint32_t batch, const char *dir)
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

void port_prep(struct port *p, struct io_uring_sqe *sqe, uint32_t i)
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
void port_reply(struct port *p, uint64_t seq, int64_t res)
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

int port_prep_batch(struct port *p, uint64_t tag)
{
	struct io_uring_sqe *sqe;
	uint32_t i;

	for (i = 0; i < p->batch; i++) {
		sqe = io_uring_get_sqe(&p->ring);
		if (!sqe)
			return -EBUSY;
		port_prep(p, sqe, i);
		sqe->user_data |= tag;
	}
	return 0;
}

int port_submitted(struct port *p, int ret)
{
	if (ret >= 0 && (uint32_t)ret != p->batch)
		ret = -EIO;
	if (ret < 0)
		return ret;
	p->c.submissions++;
	if (io_uring_cq_ready(&p->ring) >= p->batch)
		p->c.ready_at_submit++;
	return 0;
}

int port_source(struct port *p)
{
	int ret;

	if (p->op != MSGPORT_OP_PIPE_READ)
		return 0;
	/* the event the replies wait for: the reads are poll-armed on the
	 * empty pipe until it comes */
	memset(p->bufs, 'm', p->batch);
	ret = write_full(p->pipe_w, p->bufs, p->batch);
	if (ret)
		return ret;
	p->c.source_syscalls++;
	return 0;
}

int port_batch_done(struct port *p, uint64_t t0, uint64_t t1, double *sample)
{
	p->seq += p->batch;
	p->c.messages += p->batch;
	if (sample)
		*sample = (double)(t1 - t0) / p->batch;
	if (p->op == MSGPORT_OP_PIPE_WRITE)
		return port_drain_pipe(p);
	return 0;
}

static int port_batch(struct port *p, double *sample)
{
	uint64_t t0, t1;
	int ret;

	memset(p->seen, 0, p->batch);
	t0 = now_ns();
	if (p->mode == MSGPORT_SYNC) {
		ret = port_sync_batch(p);
	} else {
		ret = port_prep_batch(p, 0);
		if (ret)
			return ret;
		/* sendsys() for the whole batch: one io_uring_enter() */
		ret = port_submitted(p, io_uring_submit(&p->ring));
		if (!ret)
			ret = port_source(p);
		if (!ret)
			ret = port_collect(p);
	}
	t1 = now_ns();
	if (ret)
		return ret;
	return port_batch_done(p, t0, t1, sample);
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

	if ((source != MSGPORT_DEFER_PIPE && source != MSGPORT_DEFER_TIMEOUT) ||
	    !out)
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
	if (source == MSGPORT_DEFER_PIPE) {
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
	if (source == MSGPORT_DEFER_PIPE) {
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
