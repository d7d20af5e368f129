/*
 * Family `syncfirst` (seed 003): Linus's async() against fibrils.
 *
 * Linus's claim: almost every "asynchronous" system call completes without
 * blocking, so the best design pays nothing up front and goes asynchronous
 * only when the call would block; fibrils hand every call to its own
 * context.  Today's mechanisms for both:
 *
 *   sync-first   preadv2(RWF_NOWAIT) / recv(MSG_DONTWAIT) in the caller; on
 *                EAGAIN the call goes to a thread pool or to io_uring.
 *                io_uring itself works this way: it first issues a read
 *                with IOCB_NOWAIT inline, in the submitting task.
 *   fibrils      every call to a pool thread (our own futex queue), or
 *                io_uring with IOSQE_ASYNC (every request to an io-wq
 *                worker), or an SQPOLL thread that issues every request.
 *
 * One engine runs every mode: the caller keeps up to `depth` calls in
 * flight, reaps completions without waiting whenever it can, and sleeps
 * (futex, or io_uring_enter(GETEVENTS)) only when it must.  A sample is
 * one call: from the caller's stamp just before it issues the call to its
 * stamp when it sees the completion.
 *
 * Kernel behaviour this relies on (read in 6.18's mm/filemap.c and checked
 * on it: tests/test_syncfirst.py): RWF_NOWAIT on a page-cache miss is not
 * "no I/O": it sets IOCB_NOWAIT only (IOCB_NOIO, Linux 5.8, is the flag
 * that refuses I/O), so filemap_get_pages() starts the read
 * (page_cache_sync_ra(), one page under FADV_RANDOM) and looks the page up
 * again.  Only if the folio is still locked and not uptodate then
 * (filemap_update_page(): folio_trylock() fails) does the call return
 * -EAGAIN, and the call that follows finds the I/O in flight.  If the read
 * has already finished (a fast device, or the submitting CPU held up
 * between submitting and looking, while another CPU took the completion
 * interrupt) the "miss" returns the data, without having slept.  So EAGAIN
 * on every miss is not a guarantee: the worker counts, for each attempt,
 * whether its block was resident when the window opened (cold_inline,
 * hot_eagain).
 * On O_DIRECT, RWF_NOWAIT only refuses to wait for locks and request
 * allocation: a synchronous caller still waits for the device.
 *
 * Build: part of lab._native (native/build.py), -luring -lpthread.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "syncfirst.h"
#include "compat_uring.h"
#include "internal.h"

#define SF_BLOCK	4096u
#define SF_MAX_DEPTH	256u
#define SF_MAX_THREADS	256u
#define SF_MAX_MSG	65536u
#define SF_CREATE_CHUNK (1u << 20)
/* POSIX_FADV_DONTNEED skips a folio it cannot drop at that moment
 * (mm/truncate.c mapping_evict_folio(): locked, dirty, under writeback,
 * mapped, or holding an extra reference, e.g. while DAMON's sampler or
 * another CPU's LRU batch has it): the passes are spaced by a growing nap
 * so a transient holder lets go; a page still there after the last pass
 * fails the run (-EBUSY) rather than being measured as a miss. */
#define SF_EVICT_TRIES 8
/* The measured set's planned state (these blocks cached, the others not)
 * is checked with mincore() just before the window and repaired (a missing
 * block read back, a stray one dropped) at most this many times: a
 * reclaimer (on this VM DAMON pages out idle page cache) may take a page
 * between the read-back and the window. */
#define SF_WARM_TRIES 4
/* A producer that waits longer than this stops spinning and naps: the
 * runner's handshake can take a second, and a spinning peer CPU would slow
 * it; inside the window every wait is far shorter. */
#define SF_SPIN_NS 1000000ull
#define SF_NAP_NS  50000L

static inline void sf_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void sf_nap(void)
{
	struct timespec ts = { 0, SF_NAP_NS };

	nanosleep(&ts, NULL);
}

static void sf_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* splitmix64: the same seed gives every variant the same blocks, order and
 * ready/not-ready schedule. */
static uint64_t sf_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double sf_rand01(uint64_t *state)
{
	return (double)(sf_rand(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- calls ------------------------------------------------------------- */

enum sf_op {
	SF_OP_READ,
	SF_OP_RECV
};

/* One call, as the caller fills it in and a pool thread executes it. */
struct sf_req {
	int op;
	int fd;
	void *buf;
	size_t len;
	off_t off;
	ssize_t res;	       /* bytes or -errno */
	_Atomic uint32_t done; /* set by the pool thread (release) */
};

static ssize_t sf_call_blocking(struct sf_req *r)
{
	ssize_t n;

	do {
		if (r->op == SF_OP_READ)
			n = pread(r->fd, r->buf, r->len, r->off);
		else
			n = recv(r->fd, r->buf, r->len, 0);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

/* The sync-first attempt: completes only if it need not block. */
static ssize_t sf_call_nowait(struct sf_req *r)
{
	struct iovec iov = { .iov_base = r->buf, .iov_len = r->len };
	ssize_t n;

	if (r->op == SF_OP_READ)
		n = preadv2(r->fd, &iov, 1, r->off, RWF_NOWAIT);
	else
		n = recv(r->fd, r->buf, r->len, MSG_DONTWAIT);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

/* ---- the pool: fibrils as threads, a futex queue ----------------------- */

/*
 * Submission: a ring of request pointers, one producer (the caller), many
 * consumers (pool threads claim entries with a CAS on sq_head).  Idle
 * threads sleep on sq_tail; the caller wakes one only when `idle` says
 * someone may sleep (seq_cst on both sides: either the caller sees the
 * sleeper's idle++ or the sleeper sees the new tail before futex_wait).
 *
 * Completion: the pool thread sets the request's done flag, bumps
 * `completed` and wakes the caller only if it sleeps on that word.  The
 * caller finds completions by scanning its (at most depth) slots.
 *
 * A NULL request is a poison pill: the thread that takes it exits.
 */
struct sf_pool {
	_Alignas(LAB_CACHELINE) _Atomic uint32_t sq_tail;
	_Alignas(LAB_CACHELINE) _Atomic uint32_t sq_head;
	_Atomic uint32_t idle;
	_Alignas(LAB_CACHELINE) _Atomic uint32_t completed;
	_Atomic uint32_t caller_waiting;
	_Alignas(LAB_CACHELINE) struct sf_req **sq;
	uint32_t sq_mask;
	uint32_t nr_threads;
	uint32_t seen_completed; /* caller: `completed` at its last scan */
	pthread_t *threads;
};

static void *sf_pool_thread(void *arg)
{
	struct sf_pool *pool = arg;
	struct sf_req *req;
	uint32_t head, tail;

	for (;;) {
		/* head before tail: then head <= tail, and head != tail means
		 * an entry to claim */
		head = atomic_load_explicit(&pool->sq_head,
					    memory_order_acquire);
		tail = atomic_load(&pool->sq_tail);
		if (head != tail) {
			if (!atomic_compare_exchange_weak(&pool->sq_head, &head,
							  head + 1))
				continue;
			req = pool->sq[head & pool->sq_mask];
			if (!req)
				break;
			req->res = sf_call_blocking(req);
			atomic_store_explicit(&req->done, 1,
					      memory_order_release);
			atomic_fetch_add(&pool->completed, 1);
			if (atomic_load(&pool->caller_waiting))
				futex_wake((uint32_t *)&pool->completed, 1);
			continue;
		}
		atomic_fetch_add(&pool->idle, 1);
		if (atomic_load(&pool->sq_tail) == tail)
			futex_wait((uint32_t *)&pool->sq_tail, tail);
		atomic_fetch_sub(&pool->idle, 1);
	}
	return NULL;
}

static void sf_pool_submit(struct sf_pool *pool, struct sf_req *req,
			   struct syncfirst_counts *counts)
{
	uint32_t tail =
		atomic_load_explicit(&pool->sq_tail, memory_order_relaxed);

	pool->sq[tail & pool->sq_mask] = req;
	atomic_store(&pool->sq_tail, tail + 1);
	if (atomic_load(&pool->idle)) {
		futex_wake((uint32_t *)&pool->sq_tail, 1);
		if (counts)
			counts->pool_wakes++;
	}
}

/* Stop and join the first nr threads (all in flight calls are done). */
static void sf_pool_stop(struct sf_pool *pool, uint32_t nr)
{
	uint32_t i;

	for (i = 0; i < nr; i++)
		sf_pool_submit(pool, NULL, NULL);
	futex_wake((uint32_t *)&pool->sq_tail, INT32_MAX);
	for (i = 0; i < nr; i++)
		pthread_join(pool->threads[i], NULL);
}

static void sf_pool_destroy(struct sf_pool *pool)
{
	if (!pool)
		return;
	sf_pool_stop(pool, pool->nr_threads);
	free(pool->threads);
	free(pool->sq);
	free(pool);
}

static int sf_pool_create(uint32_t nr_threads, uint32_t depth, int cpu,
			  struct sf_pool **out)
{
	struct sf_pool *pool;
	pthread_attr_t attr;
	cpu_set_t set;
	uint32_t cap = 1, i;
	int err;

	pool = aligned_alloc(LAB_CACHELINE, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	memset(pool, 0, sizeof(*pool));
	/* room for every call in flight, and for one pill per thread */
	while (cap < depth || cap < nr_threads)
		cap <<= 1;
	pool->sq = calloc(cap, sizeof(*pool->sq));
	pool->threads = calloc(nr_threads, sizeof(*pool->threads));
	if (!pool->sq || !pool->threads) {
		err = -ENOMEM;
		goto err_free;
	}
	pool->sq_mask = cap - 1;
	err = -pthread_attr_init(&attr);
	if (err)
		goto err_free;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	/* born pinned: a fibril runs where it is placed, not where the
	 * scheduler's load balancer would like it */
	err = -pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	for (i = 0; !err && i < nr_threads; i++) {
		err = -pthread_create(&pool->threads[i], &attr, sf_pool_thread,
				      pool);
		if (!err)
			pool->nr_threads++;
	}
	pthread_attr_destroy(&attr);
	if (err) {
		sf_pool_stop(pool, pool->nr_threads);
		goto err_free;
	}
	*out = pool;
	return 0;

err_free:
	free(pool->threads);
	free(pool->sq);
	free(pool);
	return err;
}

/* ---- the engine -------------------------------------------------------- */

struct sf_slot {
	struct sf_req req;
	uint64_t t_submit;
	uint64_t op;  /* index in the batch */
	uint64_t tag; /* the first 8 bytes the data must hold */
	bool busy;
};

struct sf_engine {
	int mode;
	uint32_t depth;
	struct sf_slot *slots;
	uint32_t *free_slots;
	uint32_t nr_free;
	struct sf_pool *pool;
	struct io_uring ring;
	bool have_ring;
	unsigned sqe_flags;
	struct syncfirst_counts *counts;
};

/*
 * One pass of the engine: the warm-up or the measured window.
 * before_call(ctx, op, req, tag) fills in call `op` (and, for receives,
 * plays its part of the producer protocol) right before the caller's
 * stamp; after_call(ctx, op, t_submit, t_seen) sees each completion.
 */
struct sf_batch {
	uint64_t nr;
	double *latency_ns; /* NULL: not recorded */
	int (*before_call)(void *ctx, uint64_t op, struct sf_req *req,
			   uint64_t *tag);
	void (*after_call)(void *ctx, uint64_t op, uint64_t t_submit,
			   uint64_t t_seen);
	void *ctx;
	/* file reads in the window: was call op's block resident when the
	 * window opened (1) or not (0); NULL: not classified */
	const unsigned char *resident_at_open;
};

static bool sf_uses_pool(int mode)
{
	return mode == SYNCFIRST_POOL || mode == SYNCFIRST_NOWAIT_POOL;
}

static bool sf_uses_ring(int mode)
{
	return mode >= SYNCFIRST_NOWAIT_URING;
}

static bool sf_nowait_first(int mode)
{
	return mode == SYNCFIRST_NOWAIT_POOL || mode == SYNCFIRST_NOWAIT_URING;
}

static int sf_ring_init(struct sf_engine *e, int async_cpu, int sqpoll_cpu)
{
	struct io_uring_params p;
	unsigned entries = 8;
	cpu_set_t set;
	int err;

	/* twice the depth: the kernel posts a completion before it moves the
	 * SQ head past the request's SQE (io_submit_sqes() commits the head
	 * last), so with SQPOLL a slot can be free before its SQE is */
	while (entries < 2 * e->depth)
		entries <<= 1;
	memset(&p, 0, sizeof(p));
	if (e->mode == SYNCFIRST_URING_SQPOLL) {
		p.flags |= IORING_SETUP_SQPOLL;
		/* the SQ thread spins this long (ms) before it sleeps and
		 * needs a wake-up: longer than any gap in a run */
		p.sq_thread_idle = 1000;
		if (sqpoll_cpu >= 0) {
			p.flags |= IORING_SETUP_SQ_AFF;
			p.sq_thread_cpu = (uint32_t)sqpoll_cpu;
		}
	}
	err = io_uring_queue_init_params(entries, &e->ring, &p);
	if (err < 0)
		return err;
	e->have_ring = true;
	/* io-wq workers go where the pool threads would (Linux 5.14);
	 * otherwise they float over every CPU of the cpuset */
	if (async_cpu >= 0) {
		CPU_ZERO(&set);
		CPU_SET(async_cpu, &set);
		err = io_uring_register_iowq_aff(&e->ring, sizeof(set), &set);
		if (err < 0)
			return err;
	}
	if (e->mode == SYNCFIRST_URING_ASYNC)
		e->sqe_flags = IOSQE_ASYNC;
	return 0;
}

static void sf_engine_deinit(struct sf_engine *e)
{
	sf_pool_destroy(e->pool);
	e->pool = NULL;
	if (e->have_ring)
		io_uring_queue_exit(&e->ring);
	e->have_ring = false;
	if (e->slots) {
		for (uint32_t i = 0; i < e->depth; i++)
			free(e->slots[i].req.buf);
	}
	free(e->slots);
	free(e->free_slots);
	e->slots = NULL;
	e->free_slots = NULL;
}

static int sf_engine_init(struct sf_engine *e, int mode, uint32_t depth,
			  uint32_t pool_threads, size_t buf_len, int async_cpu,
			  int sqpoll_cpu, struct syncfirst_counts *counts)
{
	uint32_t i;
	int err;

	memset(e, 0, sizeof(*e));
	if (mode < 0 || mode >= SYNCFIRST_NR_MODES || depth == 0 ||
	    depth > SF_MAX_DEPTH || pool_threads > SF_MAX_THREADS)
		return -EINVAL;
	e->mode = mode;
	e->depth = mode == SYNCFIRST_SYNC ? 1 : depth;
	e->counts = counts;
	e->slots = calloc(e->depth, sizeof(*e->slots));
	e->free_slots = calloc(e->depth, sizeof(*e->free_slots));
	if (!e->slots || !e->free_slots) {
		err = -ENOMEM;
		goto err;
	}
	for (i = 0; i < e->depth; i++) {
		/* page-aligned: O_DIRECT needs it, the rest does not mind */
		err = -posix_memalign(&e->slots[i].req.buf, SF_BLOCK, buf_len);
		if (err)
			goto err;
		e->free_slots[e->nr_free++] = i;
	}
	if (sf_uses_pool(mode)) {
		err = sf_pool_create(pool_threads ? pool_threads : e->depth,
				     e->depth, async_cpu, &e->pool);
		if (err)
			goto err;
	}
	if (sf_uses_ring(mode)) {
		err = sf_ring_init(e, async_cpu, sqpoll_cpu);
		if (err)
			goto err;
	}
	return 0;
err:
	sf_engine_deinit(e);
	return err;
}

/* A finished call: check what came back, record it, free the slot. */
static int sf_finish(struct sf_engine *e, const struct sf_batch *b,
		     struct sf_slot *s, ssize_t res, uint64_t t_seen)
{
	uint64_t got;
	int err = 0;

	if (res < 0) {
		err = (int)res;
	} else if ((size_t)res != s->req.len) {
		err = -EIO; /* short read, or EOF on the socket */
	} else {
		/* every block (message) carries its number: the call read
		 * what it asked for, not a neighbour or a stale buffer */
		memcpy(&got, s->req.buf, sizeof(got));
		if (got != s->tag)
			err = -EIO;
	}
	if (!err) {
		if (b->latency_ns)
			b->latency_ns[s->op] = (double)(t_seen - s->t_submit);
		if (b->after_call)
			b->after_call(b->ctx, s->op, s->t_submit, t_seen);
	}
	s->busy = false;
	e->free_slots[e->nr_free++] = (uint32_t)(s - e->slots);
	return err;
}

static int sf_ring_submit(struct sf_engine *e, struct sf_slot *s)
{
	struct io_uring_sqe *sqe;
	struct sf_req *r = &s->req;
	int ret;

	while (!(sqe = io_uring_get_sqe(&e->ring))) {
		/* only an SQPOLL ring whose thread has not yet consumed the
		 * earlier SQEs gets here: wait for room (IORING_ENTER_SQ_WAIT) */
		ret = io_uring_sqring_wait(&e->ring);
		if (ret < 0 && ret != -EINTR)
			return ret;
	}
	if (r->op == SF_OP_READ)
		io_uring_prep_read(sqe, r->fd, r->buf, (unsigned)r->len,
				   (uint64_t)r->off);
	else
		io_uring_prep_recv(sqe, r->fd, r->buf, r->len, 0);
	sqe->flags |= e->sqe_flags;
	sqe->user_data = (uint64_t)(s - e->slots);
	if (e->mode == SYNCFIRST_URING_SQPOLL &&
	    (IO_URING_READ_ONCE(*e->ring.sq.kflags) & IORING_SQ_NEED_WAKEUP))
		e->counts->sqpoll_wakeups++;
	do
		ret = io_uring_submit(&e->ring);
	while (ret == -EINTR);
	return ret < 0 ? ret : 0;
}

/* Issue call `op`: returns 1 if it completed at once, 0 if in flight. */
static int sf_submit(struct sf_engine *e, const struct sf_batch *b, uint64_t op)
{
	struct sf_slot *s = &e->slots[e->free_slots[--e->nr_free]];
	ssize_t res;
	int err;

	s->op = op;
	s->busy = true;
	err = b->before_call(b->ctx, op, &s->req, &s->tag);
	if (err) {
		s->busy = false;
		e->nr_free++;
		return err;
	}
	s->t_submit = now_ns();
	if (e->mode == SYNCFIRST_SYNC) {
		res = sf_call_blocking(&s->req);
		e->counts->inline_done++;
		err = sf_finish(e, b, s, res, now_ns());
		return err ? err : 1;
	}
	if (sf_nowait_first(e->mode)) {
		bool resident = b->resident_at_open && b->resident_at_open[op];

		res = sf_call_nowait(&s->req);
		if (res != -EAGAIN) {
			/* Linus's case: done without blocking, no context */
			e->counts->inline_done++;
			if (b->resident_at_open && !resident)
				e->counts->cold_inline++;
			err = sf_finish(e, b, s, res, now_ns());
			return err ? err : 1;
		}
		e->counts->eagain++;
		if (resident)
			e->counts->hot_eagain++;
	}
	e->counts->offloaded++;
	if (e->pool) {
		atomic_store_explicit(&s->req.done, 0, memory_order_relaxed);
		sf_pool_submit(e->pool, &s->req, e->counts);
		return 0;
	}
	err = sf_ring_submit(e, s);
	if (err) {
		s->busy = false;
		e->free_slots[e->nr_free++] = (uint32_t)(s - e->slots);
	}
	return err;
}

/* Scan the slots for finished pool calls; *err keeps the first error. */
static uint32_t sf_pool_collect(struct sf_engine *e, const struct sf_batch *b,
				int *err)
{
	uint32_t i, n = 0;
	uint64_t t_seen = 0;
	int e2;

	for (i = 0; i < e->depth; i++) {
		struct sf_slot *s = &e->slots[i];

		if (!s->busy ||
		    !atomic_load_explicit(&s->req.done, memory_order_acquire))
			continue;
		if (!t_seen)
			t_seen = now_ns();
		e2 = sf_finish(e, b, s, s->req.res, t_seen);
		if (e2 && !*err)
			*err = e2;
		n++;
	}
	return n;
}

static uint32_t sf_pool_reap(struct sf_engine *e, const struct sf_batch *b,
			     bool wait, int *err)
{
	struct sf_pool *pool = e->pool;
	uint32_t seen, n;

	for (;;) {
		seen = atomic_load(&pool->completed);
		if (seen == pool->seen_completed && !wait)
			return 0;
		pool->seen_completed = seen;
		n = sf_pool_collect(e, b, err);
		if (n || !wait)
			return n;
		/* sleep until a pool thread bumps `completed` past seen */
		atomic_store(&pool->caller_waiting, 1);
		if (atomic_load(&pool->completed) == seen) {
			futex_wait((uint32_t *)&pool->completed, seen);
			e->counts->caller_sleeps++;
		}
		atomic_store_explicit(&pool->caller_waiting, 0,
				      memory_order_relaxed);
	}
}

static uint32_t sf_ring_reap(struct sf_engine *e, const struct sf_batch *b,
			     bool wait, int *err)
{
	struct io_uring_cqe *cqe;
	uint64_t t_seen = 0;
	uint32_t n = 0;
	int ret, e2;

	if (wait && io_uring_peek_cqe(&e->ring, &cqe) != 0) {
		e->counts->caller_sleeps++;
		do
			ret = io_uring_wait_cqe(&e->ring, &cqe);
		while (ret == -EINTR);
		if (ret < 0) {
			if (!*err)
				*err = ret;
			return 0;
		}
	}
	while (io_uring_peek_cqe(&e->ring, &cqe) == 0) {
		struct sf_slot *s = &e->slots[cqe->user_data];

		if (!t_seen)
			t_seen = now_ns();
		e2 = sf_finish(e, b, s, cqe->res, t_seen);
		io_uring_cqe_seen(&e->ring, cqe);
		if (e2 && !*err)
			*err = e2;
		n++;
	}
	return n;
}

static uint32_t sf_reap(struct sf_engine *e, const struct sf_batch *b,
			bool wait, int *err)
{
	return e->pool ? sf_pool_reap(e, b, wait, err) :
			 sf_ring_reap(e, b, wait, err);
}

/*
 * Run a batch: keep up to depth calls in flight, reap whatever has
 * completed before issuing the next call (so a completion is not left
 * waiting behind submissions), sleep only when nothing else can be done.
 * On an error, stop issuing, drain what is in flight, return the error.
 */
static int sf_engine_run(struct sf_engine *e, const struct sf_batch *b)
{
	uint64_t next = 0, done = 0;
	uint32_t inflight = 0, n;
	int err = 0, r;

	while (done < b->nr) {
		if (inflight) {
			n = sf_reap(e, b, false, &err);
			inflight -= n;
			done += n;
		}
		if (err) {
			if (!inflight)
				break;
		} else if (next < b->nr && inflight < e->depth) {
			r = sf_submit(e, b, next++);
			if (r < 0)
				err = r;
			else if (r == 1)
				done++;
			else
				inflight++;
			continue;
		}
		if (inflight) {
			n = sf_reap(e, b, true, &err);
			inflight -= n;
			done += n;
		}
	}
	return err;
}

/* ---- workload 1: random 4 KiB reads of a file -------------------------- */

struct sf_file {
	int fd;	     /* buffered: create, evict, read back */
	int read_fd; /* the measured calls (O_DIRECT or fd) */
	uint64_t nr_blocks;
	const uint64_t *blocks; /* of the current batch */
};

static int sf_file_before_call(void *ctx, uint64_t op, struct sf_req *req,
			       uint64_t *tag)
{
	struct sf_file *f = ctx;

	req->op = SF_OP_READ;
	req->fd = f->read_fd;
	req->len = SF_BLOCK;
	req->off = (off_t)(f->blocks[op] * SF_BLOCK);
	*tag = f->blocks[op];
	return 0;
}

/* Non-zero data (no holes, no zero-page shortcuts), each block stamped
 * with its number; on disk before anything is measured. */
static int sf_file_create(struct sf_file *f, const char *path)
{
	uint64_t b, per_chunk = SF_CREATE_CHUNK / SF_BLOCK, i, n;
	unsigned char *chunk;
	int err = 0;

	f->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (f->fd < 0)
		return -errno;
	chunk = malloc(SF_CREATE_CHUNK);
	if (!chunk)
		return -ENOMEM;
	for (b = 0; b < f->nr_blocks && !err; b += n) {
		ssize_t written;

		n = f->nr_blocks - b < per_chunk ? f->nr_blocks - b : per_chunk;
		for (i = 0; i < n; i++) {
			unsigned char *blk = chunk + i * SF_BLOCK;
			uint64_t tag = b + i;

			memset(blk, (int)(0x11 + tag % 0xee), SF_BLOCK);
			memcpy(blk, &tag, sizeof(tag));
		}
		written = pwrite(f->fd, chunk, n * SF_BLOCK,
				 (off_t)(b * SF_BLOCK));
		if (written < 0)
			err = -errno;
		else if (written != (ssize_t)(n * SF_BLOCK))
			err = -ENOSPC; /* a short write: the disk is full */
	}
	free(chunk);
	if (!err && fsync(f->fd) < 0)
		err = -errno;
	return err;
}

static uint64_t sf_resident(const unsigned char *vec, const uint64_t *blocks,
			    uint64_t n)
{
	uint64_t i, r = 0;

	for (i = 0; i < n; i++)
		r += vec[blocks[i]] & 1;
	return r;
}

static int sf_mincore(void *map, uint64_t nr_blocks, unsigned char *vec)
{
	return mincore(map, nr_blocks * SF_BLOCK, vec) < 0 ? -errno : 0;
}

/* The file mapped for mincore() only (never touched, so never faulted in)
 * and its residency vector.  On error *map may be MAP_FAILED and *vec
 * NULL: the caller's cleanup handles both. */
static int sf_mincore_map(const struct sf_file *f, void **map,
			  unsigned char **vec)
{
	*map = mmap(NULL, f->nr_blocks * SF_BLOCK, PROT_READ, MAP_SHARED, f->fd,
		    0);
	if (*map == MAP_FAILED)
		return -errno;
	*vec = malloc(f->nr_blocks);
	return *vec ? 0 : -ENOMEM;
}

/*
 * Drop the whole file from the page cache, verified: after each
 * POSIX_FADV_DONTNEED pass mincore() must show nothing resident.  A page
 * still there after SF_EVICT_TRIES passes is -EBUSY, with
 * counts->evict_left saying how many (the run would otherwise measure hits
 * as misses).
 */
static int sf_evict(struct sf_file *f, void *map, unsigned char *vec,
		    struct syncfirst_counts *counts)
{
	uint64_t b, left = 0;
	int err, pass;

	if (fdatasync(f->fd) < 0)
		return -errno;
	for (pass = 0; pass < SF_EVICT_TRIES; pass++) {
		if (pass)
			sf_sleep_ms(pass);
		err = -posix_fadvise(f->fd, 0, 0, POSIX_FADV_DONTNEED);
		if (err)
			return err;
		counts->evict_passes++;
		err = sf_mincore(map, f->nr_blocks, vec);
		if (err)
			return err;
		for (b = 0, left = 0; b < f->nr_blocks; b++)
			left += vec[b] & 1;
		if (!left)
			break;
	}
	counts->evict_left = left;
	return left ? -EBUSY : 0;
}

/* Read back `n` of the blocks: under FADV_RANDOM exactly those pages. */
static int sf_read_back(struct sf_file *f, const uint64_t *blocks, uint64_t n,
			void *buf)
{
	ssize_t got;
	uint64_t i;

	for (i = 0; i < n; i++) {
		got = pread(f->fd, buf, SF_BLOCK,
			    (off_t)(blocks[i] * SF_BLOCK));
		if (got != SF_BLOCK)
			return got < 0 ? -errno : -EIO;
	}
	return 0;
}

/*
 * Make the measured set what the plan says, verified: want[i] says whether
 * measured block blocks[i] must be resident when the window opens.  Check
 * with mincore(); read back a wanted block that is missing, drop (DONTNEED
 * on its page alone) one that is resident but not wanted; check again, at
 * most SF_WARM_TRIES times.  On return vec holds the last check; -EBUSY if
 * the set is still off (counts->warm_off blocks).
 */
static int sf_warm_check(struct sf_file *f, void *map, unsigned char *vec,
			 const uint64_t *blocks, const unsigned char *want,
			 uint64_t n, void *buf, struct syncfirst_counts *counts)
{
	uint64_t i, off = 0;
	int err, pass;

	for (pass = 0; pass < SF_WARM_TRIES; pass++) {
		err = sf_mincore(map, f->nr_blocks, vec);
		if (err)
			return err;
		counts->warm_passes++;
		for (i = 0, off = 0; i < n; i++)
			off += (vec[blocks[i]] & 1) != want[i];
		if (!off || pass + 1 == SF_WARM_TRIES)
			break;
		for (i = 0; i < n; i++) {
			if ((vec[blocks[i]] & 1) == want[i])
				continue;
			if (want[i])
				err = sf_read_back(f, &blocks[i], 1, buf);
			else
				err = -posix_fadvise(
					f->fd, (off_t)(blocks[i] * SF_BLOCK),
					SF_BLOCK, POSIX_FADV_DONTNEED);
			if (err)
				return err;
		}
	}
	counts->warm_off = off;
	return off ? -EBUSY : 0;
}

static void sf_shuffle(uint64_t *v, uint64_t n, uint64_t *state)
{
	uint64_t i, j, t;

	for (i = 0; i + 1 < n; i++) {
		j = i + sf_rand(state) % (n - i);
		t = v[i];
		v[i] = v[j];
		v[j] = t;
	}
}

/*
 * Choose nr_samples + warmup distinct blocks (a partial Fisher-Yates
 * shuffle): the first nr_samples, in this order, are the measured set and
 * its visiting order; the rest are the warm-up's.  `cached` gets, for each
 * set, which of its blocks are read back in: a random round(hit * n) of
 * them.
 */
static int sf_choose_blocks(const struct syncfirst_file_config *cfg,
			    uint64_t **order_out, uint64_t **cached_out,
			    uint64_t *nr_cached_meas, uint64_t *nr_cached_warm)
{
	uint64_t n = cfg->nr_samples + cfg->warmup, i, j, t, state = cfg->seed;
	uint64_t *all, *cached;

	all = malloc(cfg->file_blocks * sizeof(*all));
	cached = malloc((n ? n : 1) * sizeof(*cached));
	if (!all || !cached) {
		free(all);
		free(cached);
		return -ENOMEM;
	}
	for (i = 0; i < cfg->file_blocks; i++)
		all[i] = i;
	for (i = 0; i < n; i++) {
		j = i + sf_rand(&state) % (cfg->file_blocks - i);
		t = all[i];
		all[i] = all[j];
		all[j] = t;
	}
	/* a second shuffle of each set picks which of its blocks are
	 * cached; the visiting order stays the first shuffle's */
	memcpy(cached, all, n * sizeof(*cached));
	sf_shuffle(cached, cfg->nr_samples, &state);
	sf_shuffle(cached + cfg->nr_samples, cfg->warmup, &state);
	/* round half up, as Python's round() does not: the family module
	 * computes the same target with floor(x + 0.5) */
	*nr_cached_meas =
		cfg->direct ?
			0 :
			(uint64_t)(cfg->hit_ratio * (double)cfg->nr_samples +
				   0.5);
	*nr_cached_warm =
		cfg->direct ?
			0 :
			(uint64_t)(cfg->hit_ratio * (double)cfg->warmup + 0.5);
	*order_out = all;
	*cached_out = cached;
	return 0;
}

int syncfirst_file_read(struct lab_handshake *hs, int mode,
			const struct syncfirst_file_config *cfg,
			double *latency_ns, struct syncfirst_counts *out)
{
	uint64_t *order = NULL, *cached = NULL, nr_meas_cached, nr_warm_cached;
	uint64_t i;
	struct sf_file f = { .fd = -1, .read_fd = -1 };
	struct sf_batch batch;
	struct sf_engine eng;
	unsigned char *vec = NULL, *want = NULL, *plan = NULL;
	void *map = MAP_FAILED;
	bool engine_up = false;
	cpu_set_t saved;
	int err;

	memset(out, 0, sizeof(*out));
	if (!cfg->path || cfg->nr_samples == 0 || cfg->file_blocks == 0 ||
	    cfg->nr_samples + cfg->warmup > cfg->file_blocks ||
	    !(cfg->hit_ratio >= 0.0 && cfg->hit_ratio <= 1.0) || mode < 0 ||
	    mode >= SYNCFIRST_NR_MODES)
		return -EINVAL;
	/* mincore() speaks pages, the workload blocks */
	if (sysconf(_SC_PAGESIZE) != SF_BLOCK)
		return -EOPNOTSUPP;
	err = lab_pin_saving(cfg->cpu, &saved);
	if (err)
		return err;

	f.nr_blocks = cfg->file_blocks;
	err = sf_file_create(&f, cfg->path);
	if (err)
		goto out;
	/* FADV_RANDOM: no readahead, so reading a block brings in that page
	 * only and a miss does not warm its neighbours.  It is a property of
	 * the open file, so both descriptors get it. */
	err = -posix_fadvise(f.fd, 0, 0, POSIX_FADV_RANDOM);
	if (err)
		goto out;
	if (cfg->direct) {
		f.read_fd = open(cfg->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (f.read_fd < 0) {
			err = -errno;
			goto out;
		}
		err = -posix_fadvise(f.read_fd, 0, 0, POSIX_FADV_RANDOM);
		if (err)
			goto out;
	} else {
		f.read_fd = f.fd;
	}
	err = sf_choose_blocks(cfg, &order, &cached, &nr_meas_cached,
			       &nr_warm_cached);
	if (err)
		goto out;
	err = sf_mincore_map(&f, &map, &vec);
	if (err)
		goto out;
	err = sf_evict(&f, map, vec, out);
	if (err)
		goto out;

	err = sf_engine_init(&eng, mode, cfg->depth, cfg->pool_threads,
			     SF_BLOCK, cfg->async_cpu, cfg->sqpoll_cpu, out);
	if (err)
		goto out;
	engine_up = true;
	err = sf_read_back(&f, cached, nr_meas_cached, eng.slots[0].req.buf);
	if (!err)
		err = sf_read_back(&f, cached + cfg->nr_samples, nr_warm_cached,
				   eng.slots[0].req.buf);
	if (err)
		goto out;

	memset(&batch, 0, sizeof(batch));
	batch.before_call = sf_file_before_call;
	batch.ctx = &f;
	if (cfg->warmup) {
		f.blocks = order + cfg->nr_samples;
		batch.nr = cfg->warmup;
		err = sf_engine_run(&eng, &batch);
		if (err)
			goto out;
	}
	/* the truth about the cache, just before the window: exactly the
	 * chosen measured blocks resident, or no window */
	plan = calloc(f.nr_blocks, 1);
	want = malloc(cfg->nr_samples);
	if (!plan || !want) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < nr_meas_cached; i++)
		plan[cached[i]] = 1;
	for (i = 0; i < cfg->nr_samples; i++)
		want[i] = plan[order[i]];
	out->measured_blocks = cfg->nr_samples;
	out->target_resident = nr_meas_cached;
	err = sf_warm_check(&f, map, vec, order, want, cfg->nr_samples,
			    eng.slots[0].req.buf, out);
	out->resident_before = sf_resident(vec, order, cfg->nr_samples);
	if (err)
		goto out;
	memset(out, 0, offsetof(struct syncfirst_counts, measured_blocks));
	/* each call's block as the window found it (= want, checked) */
	for (i = 0; i < cfg->nr_samples; i++)
		want[i] = vec[order[i]] & 1;

	f.blocks = order;
	batch.nr = cfg->nr_samples;
	batch.latency_ns = latency_ns;
	/* O_DIRECT bypasses the page cache: nothing to classify */
	batch.resident_at_open = cfg->direct ? NULL : want;
	err = lab_handshake_ready(hs, NULL, 0);
	if (err)
		goto out;
	err = sf_engine_run(&eng, &batch);
	if (err)
		goto out;
	err = lab_handshake_done(hs);
	if (err)
		goto out;
	out->ops = cfg->nr_samples;
	err = sf_mincore(map, f.nr_blocks, vec);
	if (!err)
		out->resident_after = sf_resident(vec, order, cfg->nr_samples);
out:
	if (engine_up)
		sf_engine_deinit(&eng);
	if (map != MAP_FAILED)
		munmap(map, f.nr_blocks * SF_BLOCK);
	free(vec);
	free(want);
	free(plan);
	free(order);
	free(cached);
	if (f.read_fd >= 0 && f.read_fd != f.fd)
		close(f.read_fd);
	if (f.fd >= 0) {
		close(f.fd);
		unlink(cfg->path);
	}
	lab_unpin(&saved);
	return err;
}

static int sf_switches(uint64_t *voluntary, uint64_t *involuntary)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru) < 0)
		return -errno;
	*voluntary = (uint64_t)ru.ru_nvcsw;
	*involuntary = (uint64_t)ru.ru_nivcsw;
	return 0;
}

int syncfirst_nowait_probe(const char *path, int cached, int watch_ms,
			   struct syncfirst_nowait_result *out)
{
	struct sf_file f = { .fd = -1, .read_fd = -1, .nr_blocks = 4 };
	struct syncfirst_counts counts;
	struct sf_req req;
	unsigned char *vec = NULL;
	void *map = MAP_FAILED, *buf = NULL;
	uint64_t block = 1, got, vol0 = 0, invol0 = 0, vol1 = 0, invol1 = 0;
	ssize_t res;
	int err, ms;

	memset(out, 0, sizeof(*out));
	memset(&counts, 0, sizeof(counts));
	out->resident_after_ms = -1;
	err = sf_file_create(&f, path);
	if (!err)
		err = -posix_fadvise(f.fd, 0, 0, POSIX_FADV_RANDOM);
	if (err)
		goto out;
	err = sf_mincore_map(&f, &map, &vec);
	if (!err && posix_memalign(&buf, SF_BLOCK, SF_BLOCK))
		err = -ENOMEM;
	if (err)
		goto out;
	err = sf_evict(&f, map, vec, &counts);
	out->evict_passes = counts.evict_passes;
	out->evict_left = counts.evict_left;
	if (!err && cached)
		err = sf_read_back(&f, &block, 1, buf);
	if (err)
		goto out;
	memset(&req, 0, sizeof(req));
	req.op = SF_OP_READ;
	req.fd = f.fd;
	req.buf = buf;
	req.len = SF_BLOCK;
	req.off = (off_t)(block * SF_BLOCK);
	memset(buf, 0, SF_BLOCK); /* faulted in: no fault inside the call */
	err = sf_mincore(map, f.nr_blocks, vec);
	if (err)
		goto out;
	out->resident_before = vec[block] & 1;
	err = sf_switches(&vol0, &invol0);
	if (err)
		goto out;
	res = sf_call_nowait(&req);
	err = sf_switches(&vol1, &invol1);
	if (err)
		goto out;
	out->voluntary_switches = vol1 - vol0;
	out->involuntary_switches = invol1 - invol0;
	if (res == SF_BLOCK) {
		memcpy(&got, buf, sizeof(got));
		if (got != block)
			res = -EIO;
	}
	out->res = res;
	/* did the call start the read?  Nobody else touches the file, so the
	 * page can only turn up if it did (mincore() counts uptodate pages:
	 * one whose read is in flight is not resident yet) */
	for (ms = 0; ms <= watch_ms; ms++) {
		err = sf_mincore(map, f.nr_blocks, vec);
		if (err)
			goto out;
		if (vec[block] & 1) {
			out->resident_after_ms = ms;
			break;
		}
		if (ms < watch_ms)
			sf_sleep_ms(1);
	}
out:
	if (map != MAP_FAILED)
		munmap(map, f.nr_blocks * SF_BLOCK);
	free(vec);
	free(buf);
	if (f.fd >= 0) {
		close(f.fd);
		unlink(path);
	}
	return err;
}

int syncfirst_evict_check(const char *path, uint64_t nr_blocks,
			  int64_t mapped_block, struct syncfirst_counts *counts)
{
	struct sf_file f = { .fd = -1, .read_fd = -1, .nr_blocks = nr_blocks };
	unsigned char *vec = NULL;
	void *map = MAP_FAILED, *pin = MAP_FAILED;
	volatile unsigned char sink = 0;
	int err;

	memset(counts, 0, sizeof(*counts));
	if (nr_blocks == 0 || mapped_block >= (int64_t)nr_blocks)
		return -EINVAL;
	err = sf_file_create(&f, path);
	if (!err)
		err = sf_mincore_map(&f, &map, &vec);
	if (!err && mapped_block >= 0) {
		/* a second mapping that is touched: its page is mapped */
		pin = mmap(NULL, SF_BLOCK, PROT_READ, MAP_SHARED, f.fd,
			   (off_t)(mapped_block * SF_BLOCK));
		if (pin == MAP_FAILED)
			err = -errno;
		else
			sink = *(volatile unsigned char *)pin;
	}
	(void)sink;
	if (!err)
		err = sf_evict(&f, map, vec, counts);
	if (pin != MAP_FAILED)
		munmap(pin, SF_BLOCK);
	if (map != MAP_FAILED)
		munmap(map, f.nr_blocks * SF_BLOCK);
	free(vec);
	if (f.fd >= 0) {
		close(f.fd);
		unlink(path);
	}
	return err;
}

/* ---- workload 2: receives on a socket, data ready or not --------------- */

/*
 * The producer protocol, per message i (both sides know the seeded
 * ready[] schedule; the call under test does not):
 *   consumer, before its call:  done_upto = i (calls < i are complete);
 *                               ready: wait until sent_upto > i;
 *                               not ready: asked = i + 1, then call.
 *   producer:                   wait until done_upto >= i;
 *                               not ready: wait until asked > i, then
 *                               send_delay_ns more;
 *                               stamp sent_ns[i], send, sent_upto = i + 1.
 * So a ready message is in the socket before the call, and a not-ready
 * one arrives send_delay_ns after the call was made.  Both sides spin
 * (the producer on its own CPU), so no wake-up of the harness itself lands
 * in a sample.
 */
struct sf_recv {
	_Alignas(LAB_CACHELINE) _Atomic uint64_t done_upto;
	_Atomic uint64_t asked;
	_Alignas(LAB_CACHELINE) _Atomic uint64_t sent_upto;
	_Atomic int abort;
	_Alignas(LAB_CACHELINE) int consumer_fd;
	int producer_fd;
	int producer_cpu;
	int producer_err;
	uint32_t msg_bytes;
	uint64_t send_delay_ns;
	uint64_t total; /* warm-up + measured messages */
	uint64_t first; /* first message of the current batch */
	const uint8_t *ready;
	_Atomic uint64_t *sent_ns;
	double *after_data_ns; /* of the current batch, or NULL */
	struct syncfirst_counts *counts;
};

/* Spin until *word >= value, napping after SF_SPIN_NS; false on abort. */
static bool sf_await(struct sf_recv *r, _Atomic uint64_t *word, uint64_t value)
{
	uint64_t start = 0;
	unsigned spins = 0;

	while (atomic_load_explicit(word, memory_order_acquire) < value) {
		if (atomic_load_explicit(&r->abort, memory_order_relaxed))
			return false;
		if (++spins < 64) {
			sf_relax();
			continue;
		}
		spins = 0;
		if (!start)
			start = now_ns();
		else if (now_ns() - start > SF_SPIN_NS)
			sf_nap();
	}
	return true;
}

static void *sf_producer(void *arg)
{
	struct sf_recv *r = arg;
	unsigned char *msg;
	uint64_t i, until;
	ssize_t n;

	msg = malloc(r->msg_bytes);
	if (!msg) {
		r->producer_err = -ENOMEM;
		goto fail;
	}
	memset(msg, 0x5a, r->msg_bytes);
	for (i = 0; i < r->total; i++) {
		if (!sf_await(r, &r->done_upto, i))
			break;
		if (!r->ready[i]) {
			if (!sf_await(r, &r->asked, i + 1))
				break;
			until = now_ns() + r->send_delay_ns;
			while (now_ns() < until)
				sf_relax();
		}
		memcpy(msg, &i, sizeof(i));
		atomic_store_explicit(&r->sent_ns[i], now_ns(),
				      memory_order_release);
		do
			n = send(r->producer_fd, msg, r->msg_bytes,
				 MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)r->msg_bytes) {
			r->producer_err = n < 0 ? -errno : -EIO;
			goto fail;
		}
		atomic_store_explicit(&r->sent_upto, i + 1,
				      memory_order_release);
	}
	free(msg);
	return NULL;
fail:
	free(msg);
	/* a consumer blocked in recv() sees EOF instead of hanging */
	atomic_store(&r->abort, 1);
	shutdown(r->producer_fd, SHUT_WR);
	return NULL;
}

static int sf_recv_before_call(void *ctx, uint64_t op, struct sf_req *req,
			       uint64_t *tag)
{
	struct sf_recv *r = ctx;
	uint64_t i = r->first + op;

	req->op = SF_OP_RECV;
	req->fd = r->consumer_fd;
	req->len = r->msg_bytes;
	req->off = 0;
	*tag = i;
	atomic_store_explicit(&r->done_upto, i, memory_order_release);
	if (r->ready[i]) {
		if (!sf_await(r, &r->sent_upto, i + 1))
			return r->producer_err ? r->producer_err : -EPIPE;
	} else {
		atomic_store_explicit(&r->asked, i + 1, memory_order_release);
	}
	return 0;
}

static void sf_recv_after_call(void *ctx, uint64_t op, uint64_t t_submit,
			       uint64_t t_seen)
{
	struct sf_recv *r = ctx;
	uint64_t i = r->first + op;
	uint64_t sent =
		atomic_load_explicit(&r->sent_ns[i], memory_order_acquire);
	uint64_t from = sent > t_submit ? sent : t_submit;

	if (!r->ready[i] && sent > t_submit)
		r->counts->sent_after_call++;
	if (r->after_data_ns)
		r->after_data_ns[op] = t_seen > from ? (double)(t_seen - from) :
						       0.0;
}

int syncfirst_recv(struct lab_handshake *hs, int mode,
		   const struct syncfirst_recv_config *cfg, double *latency_ns,
		   double *after_data_ns, struct syncfirst_counts *out)
{
	struct sf_recv *r;
	struct sf_batch batch;
	struct sf_engine eng;
	pthread_attr_t attr;
	pthread_t producer;
	bool engine_up = false, producer_up = false;
	uint64_t i, state = cfg->seed;
	uint8_t *ready = NULL;
	cpu_set_t saved, set;
	int sv[2] = { -1, -1 }, err;

	memset(out, 0, sizeof(*out));
	if (cfg->nr_samples == 0 || cfg->msg_bytes < sizeof(uint64_t) ||
	    cfg->msg_bytes > SF_MAX_MSG ||
	    !(cfg->ready_probability >= 0.0 && cfg->ready_probability <= 1.0) ||
	    mode < 0 || mode >= SYNCFIRST_NR_MODES)
		return -EINVAL;
	err = lab_pin_saving(cfg->cpu, &saved);
	if (err)
		return err;
	r = aligned_alloc(LAB_CACHELINE, sizeof(*r));
	if (!r) {
		lab_unpin(&saved);
		return -ENOMEM;
	}
	memset(r, 0, sizeof(*r));
	r->total = cfg->warmup + cfg->nr_samples;
	r->msg_bytes = cfg->msg_bytes;
	r->send_delay_ns = cfg->send_delay_ns;
	r->counts = out;
	ready = malloc(r->total);
	r->sent_ns = calloc(r->total, sizeof(*r->sent_ns));
	if (!ready || !r->sent_ns) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < r->total; i++)
		ready[i] = sf_rand01(&state) < cfg->ready_probability;
	r->ready = ready;
	/* SEQPACKET: message boundaries kept, so one call is one message */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		err = -errno;
		goto out;
	}
	r->consumer_fd = sv[0];
	r->producer_fd = sv[1];

	/* depth 1 (one message at a time), one pool thread beside the
	 * consumer: a fibril on the caller's CPU */
	err = sf_engine_init(&eng, mode, 1, 1, cfg->msg_bytes, cfg->cpu, -1,
			     out);
	if (err)
		goto out;
	engine_up = true;

	err = -pthread_attr_init(&attr);
	if (err)
		goto out;
	CPU_ZERO(&set);
	CPU_SET(cfg->producer_cpu, &set);
	err = -pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	if (!err)
		err = -pthread_create(&producer, &attr, sf_producer, r);
	pthread_attr_destroy(&attr);
	if (err)
		goto out;
	producer_up = true;

	memset(&batch, 0, sizeof(batch));
	batch.before_call = sf_recv_before_call;
	batch.after_call = sf_recv_after_call;
	batch.ctx = r;
	if (cfg->warmup) {
		batch.nr = cfg->warmup;
		err = sf_engine_run(&eng, &batch);
		if (err)
			goto out;
	}
	memset(out, 0, sizeof(*out));
	for (i = cfg->warmup; i < r->total; i++)
		out->ready_ops += ready[i];
	r->first = cfg->warmup;
	batch.nr = cfg->nr_samples;
	batch.latency_ns = latency_ns;
	r->after_data_ns = after_data_ns;
	err = lab_handshake_ready(hs, NULL, 0);
	if (err)
		goto out;
	err = sf_engine_run(&eng, &batch);
	if (err)
		goto out;
	err = lab_handshake_done(hs);
	out->ops = cfg->nr_samples;
out:
	if (producer_up) {
		if (err)
			atomic_store(&r->abort, 1);
		pthread_join(producer, NULL);
		if (!err)
			err = r->producer_err;
	}
	if (engine_up)
		sf_engine_deinit(&eng);
	if (sv[0] >= 0) {
		close(sv[0]);
		close(sv[1]);
	}
	free(ready);
	free(r->sent_ns);
	free(r);
	lab_unpin(&saved);
	return err;
}
