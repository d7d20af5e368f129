/*
 * Family `msgport`, protected procedure calls (K42, seed 004).
 *
 * K42's PPC is a call into another address space (or thread) and back:
 * synchronous (send the request, wait for the reply) or asynchronous (a
 * one-way stream the receiver drains).  Here: a client and a server, as
 * two threads or two processes, on one CPU or two, over
 * IORING_OP_MSG_RING between their rings (5.18), a futex or an eventfd
 * doorbell on shared-memory queues, a pair of pipes, a unix stream socket,
 * or a pipe whose request end signals a server that never waits (sigio).
 * Every request carries a sequence number, the server echoes it and the
 * client checks that each gets exactly one reply.
 *
 * Build: part of lab._native (native/build.py), -luring -lpthread.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "compat_uring.h"
#include "msgport_internal.h"

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
	_Atomic int32_t server_tid;
	/* a server process's CPU clock at the window's ends (ppc_clock_poll) */
	_Atomic uint32_t clock_req, clock_seen;
	_Atomic uint64_t clock_ns[2];
	_Atomic uint64_t server_requests;
	_Atomic uint64_t server_drains;
	/* sigio (struct msgport_ppc_counts says what they count) */
	_Atomic uint64_t server_signals;
	_Atomic uint64_t server_empty_signals;
	_Atomic uint64_t server_outside_requests;
	_Atomic uint64_t server_spins;
};

struct ppc {
	int transport;
	bool ring;  /* msg_ring or msg_ring_defer */
	bool defer; /* msg_ring_defer */
	bool spin;  /* receiver spin: the server polls */
	bool async;
	bool process;
	bool in_child; /* the server process's copy */
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
	/* sigio: the handler tells the server's loop to end */
	volatile sig_atomic_t sig_stop;
	struct kernel_sigaction old_sa; /* SIGUSR2's, put back at the end */
	bool have_sigaction;
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

static uint64_t ts_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000ull + (uint64_t)ts->tv_nsec;
}

/* A server process: read our CPU clock if the client asked for it. */
static void ppc_clock_poll(struct ppc *p)
{
	uint32_t req, seen;
	struct timespec ts;

	if (!p->in_child)
		return;
	req = atomic_load_explicit(&p->sh->clock_req, memory_order_acquire);
	seen = atomic_load_explicit(&p->sh->clock_seen, memory_order_relaxed);
	if (req == seen || seen >= 2)
		return;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	for (; seen < req && seen < 2; seen++)
		atomic_store(&p->sh->clock_ns[seen], ts_ns(&ts));
	atomic_store_explicit(&p->sh->clock_seen, seen, memory_order_release);
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
		ppc_clock_poll(p);
		if (p->transport == MSGPORT_PPC_FUTEX) {
			if (ppc_futex(p, &q->tail, FUTEX_WAIT, head) < 0 &&
			    errno != EAGAIN && errno != EINTR)
				return -errno;
		} else if (read(efd, &v, sizeof(v)) < 0 && errno != EINTR &&
			   errno != EAGAIN) {
			/* EAGAIN: a spinning server's non-blocking eventfd */
			return -errno;
		}
	}
	ppc_clock_poll(p); /* woken: before anything else */
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
		ppc_clock_poll(p);
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

/* A server tells the client it runs: its tid, its ring (a thread's; -1
 * otherwise), or why it cannot serve. */
static void ppc_publish(struct ppc *p, int fd, int err)
{
	atomic_store(&p->sh->server_tid, (int32_t)gettid());
	atomic_store(&p->sh->server_ring_fd, fd);
	atomic_store(&p->sh->server_err, err);
	atomic_store_explicit(&p->sh->ready, 1, memory_order_release);
	ppc_futex(p, &p->sh->ready, FUTEX_WAKE, 1);
}

/*
 * sigio: K42's asynchronous PPC raises a "soft interrupt bit" in the
 * receiver and enters it "at a special entry point".  Here the server
 * never waits for a request: it spins in its own loop (counted, nothing
 * else), and the kernel enters it at ppc_sigio_entry, a SIGUSR2 handler
 * that serves everything on the request pipe and replies.
 *
 * When the kernel raises it (6.18): pipe_write() ends every write with
 * kill_fasync(&pipe->fasync_readers, SIGIO, POLL_IN), whether the pipe
 * was empty or not (only the readers' wake-up is on the empty->non-empty
 * edge, or for epoll), once more each time it waits for room in a full
 * pipe, and pipe_release() raises it when the last writer closes.  On an
 * O_ASYNC read end, send_sigio_to_task() (fs/fcntl.c) queues F_SETSIG's
 * signal with si_code POLL_IN and si_fd; F_SETOWN_EX F_OWNER_TID makes it
 * PIDTYPE_PID: pending on the server thread alone, whose return to user
 * space (at once if it runs on another CPU: signal_wake_up()'s IPI) runs
 * the handler.  SIGUSR2 is no real-time signal: a second one while one is
 * pending is dropped with success (legacy_queue() in
 * __send_signal_locked(), kernel/signal.c), so writes coalesce into one
 * entry, and the fall-back to a plain SIGIO (taken when queueing fails: a
 * real-time signal over RLIMIT_SIGPENDING; SIGIO's default kills) never
 * fires.  A real-time signal would queue one per write, each an entry,
 * empty after the first one drained them all.  (SIGUSR1 is
 * msgport_upcall.c's, SIGRTMIN activations_k42.c's.)  While the handler
 * runs SIGUSR2 is blocked: a write then leaves one pending, taken when it
 * returns, that usually finds nothing (server_empty_signals).
 */
static struct ppc *volatile ppc_sigio_server;

/* Read what the request pipe holds (non-blocking) and reply to it, until
 * it is empty, STOP or end of file (*stop) or an error (*err): the count
 * served.  Async-signal-safe: read(), write(), no allocation. */
static uint64_t ppc_sigio_drain(struct ppc *p, uint64_t *buf, bool *stop,
				int *err)
{
	uint64_t served = 0, k, i;
	size_t have;
	ssize_t n;

	while (!*stop && !*err) {
		/* a server process's window clock: the handler may serve the
		 * whole window, STOP included, without going back to its loop
		 * (clock_gettime is async-signal-safe) */
		ppc_clock_poll(p);
		n = read(p->s_rfd, buf, PPC_QCAP * sizeof(uint64_t));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno != EAGAIN)
				*err = -errno;
			break;
		}
		if (n == 0) {
			*stop = true; /* the client is gone */
			break;
		}
		/* a word cut by a write still under way: its rest follows */
		for (have = (size_t)n; have % sizeof(uint64_t) && !*err;) {
			n = read(p->s_rfd, (char *)buf + have,
				 sizeof(uint64_t) - have % sizeof(uint64_t));
			if (n > 0)
				have += (size_t)n;
			else if (n == 0)
				*err = -EPROTO;
			else if (errno != EAGAIN && errno != EINTR)
				*err = -errno;
		}
		k = have / sizeof(uint64_t);
		for (i = 0; i < k; i++)
			if (buf[i] == PPC_STOP) {
				*stop = true;
				k = i;
				break;
			}
		if (k && !*err)
			*err = write_full(p->s_wfd, buf, k * sizeof(uint64_t));
		served += k;
	}
	return served;
}

/* The entry point: SIGUSR2, raised by the kernel on the request pipe. */
static void ppc_sigio_entry(int sig, siginfo_t *si, void *uc)
{
	struct ppc *p = ppc_sigio_server;
	uint64_t buf[PPC_QCAP];
	int saved_errno = errno, err = 0;
	bool stop = false;
	uint64_t k;

	(void)sig;
	(void)si;
	(void)uc;
	atomic_fetch_add(&p->sh->server_signals, 1);
	k = ppc_sigio_drain(p, buf, &stop, &err);
	atomic_fetch_add(&p->sh->server_requests, k);
	atomic_fetch_add(
		k ? &p->sh->server_drains : &p->sh->server_empty_signals, 1);
	if (err)
		atomic_store(&p->sh->server_err, err);
	if (stop || err)
		p->sig_stop = 1;
	errno = saved_errno;
}

/*
 * The server's side: the request pipe's read end signals this thread,
 * then the loop until the handler says stop; on the way out (every way)
 * the signal is blocked, the fd's flags, signal and owner are put back,
 * a signal still pending is taken here (sigtimedwait: the last writer's
 * close raises one), and any request the handler did not serve is served
 * and counted (server_outside_requests).
 */
static int ppc_serve_sigio(struct ppc *p)
{
	struct f_owner_ex me = { F_OWNER_TID, gettid() }, old_owner;
	struct timespec zero = { 0 };
	uint64_t buf[PPC_QCAP], spins = 0, k;
	sigset_t usr2, old_mask;
	int old_fl, old_sig, err = 0;
	bool stop = false;

	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	old_fl = fcntl(p->s_rfd, F_GETFL);
	old_sig = fcntl(p->s_rfd, F_GETSIG);
	if (old_fl < 0 || old_sig < 0 ||
	    fcntl(p->s_rfd, F_GETOWN_EX, &old_owner) < 0) {
		err = -errno;
		ppc_publish(p, -1, err);
		return err;
	}
	err = -pthread_sigmask(SIG_UNBLOCK, &usr2, &old_mask);
	if (!err &&
	    (fcntl(p->s_rfd, F_SETOWN_EX, &me) < 0 ||
	     fcntl(p->s_rfd, F_SETSIG, SIGUSR2) < 0 ||
	     fcntl(p->s_rfd, F_SETFL, old_fl | O_ASYNC | O_NONBLOCK) < 0))
		err = -errno;
	ppc_publish(p, -1, err);
	while (!err && !p->sig_stop) {
		spins++;
		ppc_clock_poll(p);
	}
	pthread_sigmask(SIG_BLOCK, &usr2, NULL);
	fcntl(p->s_rfd, F_SETFL, old_fl | O_NONBLOCK); /* no more signals */
	while (sigtimedwait(&usr2, NULL, &zero) == SIGUSR2)
		;
	if (!err) {
		k = ppc_sigio_drain(p, buf, &stop, &err);
		atomic_fetch_add(&p->sh->server_outside_requests, k);
		atomic_fetch_add(&p->sh->server_requests, k);
	}
	fcntl(p->s_rfd, F_SETFL, old_fl);
	fcntl(p->s_rfd, F_SETSIG, old_sig);
	fcntl(p->s_rfd, F_SETOWN_EX, &old_owner);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	atomic_store(&p->sh->server_spins, spins);
	return err ?: atomic_load(&p->sh->server_err);
}

/* The process's SIGUSR2 disposition for a sigio run, put back whole by
 * ppc_sigio_restore (a server process inherits it across fork). */
static int ppc_sigio_install(struct ppc *p)
{
	struct sigaction sa;
	int err;

	err = msgport_rt_sigaction(SIGUSR2, NULL, &p->old_sa);
	if (err)
		return err;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = ppc_sigio_entry;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	ppc_sigio_server = p;
	if (sigaction(SIGUSR2, &sa, NULL)) {
		ppc_sigio_server = NULL;
		return -errno;
	}
	p->have_sigaction = true;
	return 0;
}

static void ppc_sigio_restore(struct ppc *p)
{
	if (!p->have_sigaction)
		return;
	msgport_rt_sigaction(SIGUSR2, &p->old_sa, NULL);
	ppc_sigio_server = NULL;
	p->have_sigaction = false;
}

static unsigned ppc_ring_flags(struct ppc *p)
{
	return p->defer ?
		       IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN :
		       0;
}

/*
 * Submit the last drain's replies and wait for the next request.  park:
 * both in one enter (K42's "reply and wait"), asleep until a CQE is
 * posted.  spin: submit, then read the CQ tail until it moves; a
 * DEFER_TASKRUN ring's MSG_RINGs wait as task work that only an enter
 * runs, so that loop is io_uring_get_events() (an enter with GETEVENTS,
 * min_complete 0).  No PAUSE in the loop: on KVM a PAUSE loop exits to
 * the host (pause-loop exiting), which is not what a spinning receiver
 * costs on bare metal.
 */
static int ppc_ring_wait(struct ppc *p, struct io_uring *ring)
{
	int ret;

	if (!p->spin) {
		do
			ret = io_uring_submit_and_wait(ring, 1);
		while (ret == -EINTR);
		return ret < 0 ? ret : 0;
	}
	do
		ret = io_uring_submit(ring);
	while (ret == -EINTR);
	if (ret < 0)
		return ret;
	while (!io_uring_cq_ready(ring)) {
		ppc_clock_poll(p);
		if (p->defer) {
			ret = io_uring_get_events(ring);
			if (ret < 0 && ret != -EINTR)
				return ret;
		}
	}
	return 0;
}

/*
 * The server's ring.  A server thread makes its own; a server process
 * uses the one its parent made before fork(), because a ring fd cannot be
 * handed to another process afterwards: the kernel refuses io_uring files
 * in SCM_RIGHTS (-EINVAL, net/core/scm.c, since "io_uring/af_unix: disable
 * sending io_uring over sockets", Linux 6.7).  The parent only keeps a dup
 * of its fd as a MSG_RING target and unmaps the ring; the client's ring is
 * MADV_DONTFORK, so the child gets only its fd.  msg_ring's rings are
 * not SINGLE_ISSUER: that ties a ring to the task that created it.
 * msg_ring_defer's are (DEFER_TASKRUN needs it), and its MSG_RINGs are
 * then posted as task work the target's task runs when it waits or
 * flushes: a thread makes its ring itself; a process's ring is made
 * IORING_SETUP_R_DISABLED by the parent and enabled by the child
 * (IORING_REGISTER_ENABLE_RINGS makes the enabling task the submitter).
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
					  ring, ppc_ring_flags(p));
		ppc_publish(p, ret < 0 ? -1 : ring->ring_fd, ret < 0 ? ret : 0);
		if (ret < 0)
			return ret;
	} else {
		ret = p->defer ? lab_uring_enable_rings(ring->ring_fd) : 0;
		ppc_publish(p, -1, ret < 0 ? ret : 0);
		if (ret < 0)
			return ret;
	}
	while (!stop) {
		ret = ppc_ring_wait(p, ring);
		if (ret < 0)
			goto out;
		ppc_clock_poll(p);
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

	/* These two publish themselves, once they can serve: a sigio server
	 * told ready before its pipe signals it would miss the first request
	 * (the client writes it at once, and no write raises it again). */
	if (p->ring)
		return ppc_serve_ring(p);
	if (p->transport == MSGPORT_PPC_SIGIO)
		return ppc_serve_sigio(p);
	ppc_publish(p, -1, 0);
	switch (p->transport) {
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
	case MSGPORT_PPC_MSG_RING_DEFER:
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
	case MSGPORT_PPC_MSG_RING_DEFER:
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
	case MSGPORT_PPC_MSG_RING_DEFER:
		/* defer: replies still waiting as task work count too */
		if (p->defer)
			io_uring_get_events(&p->cring);
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
		    int receiver, uint32_t batch, int server_cpu,
		    struct msgport_ppc_counts *c)
{
	int fds[2], err;

	memset(p, 0, sizeof(*p));
	p->transport = transport;
	p->ring = transport == MSGPORT_PPC_MSG_RING ||
		  transport == MSGPORT_PPC_MSG_RING_DEFER;
	p->defer = transport == MSGPORT_PPC_MSG_RING_DEFER;
	p->spin = receiver == MSGPORT_RECEIVER_SPIN;
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
	case MSGPORT_PPC_MSG_RING_DEFER:
		/* the client's ring is ours: this thread waits on it */
		err = io_uring_queue_init(ring_entries(2 * (p->batch + 2)),
					  &p->cring, ppc_ring_flags(p));
		if (err == -EINVAL && p->defer)
			return -EOPNOTSUPP; /* before 6.1: no DEFER_TASKRUN */
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
		/* defer: the child enables it and becomes its submitter */
		err = io_uring_queue_init(
			ring_entries(2 * (p->batch + 2)), &p->sring,
			p->defer ? ppc_ring_flags(p) | IORING_SETUP_R_DISABLED :
				   0);
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
		/* spin: the server's read() returns EAGAIN instead of
		 * sleeping */
		p->efd_req =
			eventfd(0, EFD_CLOEXEC | (p->spin ? EFD_NONBLOCK : 0));
		p->efd_rep = eventfd(0, EFD_CLOEXEC);
		return p->efd_req < 0 || p->efd_rep < 0 ? -errno : 0;
	case MSGPORT_PPC_PIPE:
	case MSGPORT_PPC_SIGIO: /* the same two pipes */
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

/* The client's side of set-up once the server runs: its tid, a server
 * thread's ring fd (a process's defer ring: enabled). */
static int ppc_server_ready(struct ppc *p)
{
	int err;

	while (!atomic_load_explicit(&p->sh->ready, memory_order_acquire))
		ppc_futex(p, &p->sh->ready, FUTEX_WAIT, 0);
	err = atomic_load(&p->sh->server_err);
	if (err)
		return err;
	p->c->server_tid = atomic_load(&p->sh->server_tid);
	if (!p->ring || p->process)
		return 0;
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
		p->in_child = true;
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
	case MSGPORT_PPC_MSG_RING_DEFER:
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
		if (err && p->ring) {
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

/*
 * The CPU time Linux charged each side so far, and the wall clock.  A
 * server thread's clock is read from here at the window's ends
 * (pthread_getcpuclockid).  Another process's thread clocks are refused
 * (posix-cpu-timers: same thread group only), and neither its process
 * clock nor /proc/PID/schedstat counts a running task's current slice, so
 * a server process reads its own CLOCK_THREAD_CPUTIME_ID when it sees the
 * client's request in shared memory (ppc_clock_poll): at once when
 * spinning; parked, when it next wakes, before doing anything (asleep, its
 * clock does not move): for the window's end that is the STOP message.
 */
struct ppc_clocks {
	uint64_t client, server, wall;
};

static int ppc_read_clocks(struct ppc *p, clockid_t server_clock,
			   struct ppc_clocks *t)
{
	struct timespec c, s = { 0 };

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c) < 0)
		return -errno;
	if (!p->process && clock_gettime(server_clock, &s) < 0)
		return -errno;
	t->wall = now_ns();
	t->client = ts_ns(&c);
	t->server = ts_ns(&s);
	/* a server process: ask it (1: the window begins, 2: it ended) */
	atomic_fetch_add_explicit(&p->sh->clock_req, 1, memory_order_release);
	return 0;
}

static int ppc_window_cpu(struct ppc *p, clockid_t server_clock,
			  const struct ppc_clocks *t0,
			  const struct ppc_clocks *t1)
{
	p->c->client_cpu_ns = t1->client - t0->client;
	p->c->wall_ns = t1->wall - t0->wall;
	if (!p->process) {
		p->c->server_cpu_ns = t1->server - t0->server;
		return 0;
	}
	/* after the server process ended: it answered both requests */
	if (atomic_load(&p->sh->clock_seen) != 2)
		return -EPROTO;
	p->c->server_cpu_ns = atomic_load(&p->sh->clock_ns[1]) -
			      atomic_load(&p->sh->clock_ns[0]);
	return 0;
}

static bool ppc_has_spin(int transport)
{
	return transport == MSGPORT_PPC_MSG_RING ||
	       transport == MSGPORT_PPC_MSG_RING_DEFER ||
	       transport == MSGPORT_PPC_EVENTFD;
}

int msgport_ppc(struct lab_handshake *hs, int transport, int async, int process,
		int receiver, int cpu, int server_cpu, uint32_t batch,
		uint64_t warmup, uint64_t nr_samples, double *ns_per_call,
		struct msgport_ppc_counts *out)
{
	struct ppc_clocks t0 = { 0 }, t1 = { 0 };
	clockid_t server_clock = 0;
	struct ppc p;
	cpu_set_t saved;
	uint64_t s;
	int err, stop_err;

	if (transport < MSGPORT_PPC_MSG_RING || transport > MSGPORT_PPC_SIGIO ||
	    batch < 1 || batch > MSGPORT_MAX_BATCH || nr_samples < 1 ||
	    !ns_per_call || !out || receiver < MSGPORT_RECEIVER_PARK ||
	    receiver > MSGPORT_RECEIVER_SPIN ||
	    (receiver == MSGPORT_RECEIVER_SPIN && !ppc_has_spin(transport)))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->client_tid = (int32_t)gettid();
	err = lab_pin_saving(cpu, &saved);
	if (err)
		return err;
	err = ppc_init(&p, transport, async, process, receiver, batch,
		       server_cpu, out);
	if (!err && transport == MSGPORT_PPC_SIGIO)
		err = ppc_sigio_install(&p);
	if (err)
		goto out;
	err = ppc_start_server(&p, cpu);
	if (err)
		goto out;
	out->server_tgid = p.process ? p.child : getpid();
	err = ppc_server_ready(&p);
	if (!err)
		err = p.process ?
			      0 :
			      -pthread_getcpuclockid(p.thread, &server_clock);
	for (s = 0; !err && s < warmup + nr_samples; s++) {
		if (s == warmup) {
			err = lab_handshake_ready(
				hs, p.process ? &p.child : NULL, p.process);
			if (!err)
				err = ppc_read_clocks(&p, server_clock, &t0);
			if (err)
				break;
		}
		err = ppc_call(&p,
			       s >= warmup ? &ns_per_call[s - warmup] : NULL);
	}
	if (!err)
		err = ppc_read_clocks(&p, server_clock, &t1);
	if (!err)
		err = lab_handshake_done(hs);
	stop_err = ppc_stop_server(&p);
	if (!err)
		err = stop_err;
	if (!err)
		err = ppc_window_cpu(&p, server_clock, &t0, &t1);
	ppc_leftovers(&p);
	out->server_requests = atomic_load(&p.sh->server_requests);
	out->server_drains = atomic_load(&p.sh->server_drains);
	out->server_signals = atomic_load(&p.sh->server_signals);
	out->server_empty_signals = atomic_load(&p.sh->server_empty_signals);
	out->server_outside_requests =
		atomic_load(&p.sh->server_outside_requests);
	out->server_spins = atomic_load(&p.sh->server_spins);
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
	/* the server has ended: no handler can run any more */
	ppc_sigio_restore(&p);
	ppc_deinit(&p);
	lab_unpin(&saved);
	return err;
}
