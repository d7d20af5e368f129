/*
 * Family `upcall` (seeds 000 and 002): the kernel running, or waking,
 * user-level scheduling code on an event.
 *
 * Scheduler activations (Anderson et al., seed 002) and the upcall thread
 * on linux-kernel (seed 000) want the kernel to tell a user-level
 * scheduler at once when one of its threads blocks, and again when it can
 * run, so the scheduler can put another thread on the processor.  Linux
 * has no upcall; these are the ways to get the same effect, each timed
 * from the moment the kernel sees the event to the moment user code runs
 * on it:
 *
 *   bpf_ringbuf     an eBPF program on sched:sched_switch (a registered
 *                   thread blocked) or sched:sched_waking (it is being
 *                   woken) writes an event stamped with bpf_ktime_get_ns()
 *                   to a BPF ring buffer with BPF_RB_FORCE_WAKEUP; the
 *                   scheduler sleeps in epoll on the ring and consumes it
 *                   here in C (bpf_ring.c).
 *   bpf_flag        the same program bumps a per-virtual-processor sequence
 *                   number in an mmap-able BPF array; the scheduler polls it.
 *   bpf_flag_sleep  polls for spin_ns, then sleeps in epoll on the ring,
 *                   which the program then writes (only) because the
 *                   scheduler said it sleeps (see lab/families/upcall_bpf.c).
 *   futex_hint      no kernel help: the worker FUTEX_WAKEs the scheduler just
 *                   before it blocks, what a runtime does on its own.
 *   uring_cqe_*     the blocking call is an io_uring SQE and its CQE is the
 *                   unblock upcall: the scheduler spins on the CQ, sleeps in
 *                   io_uring_wait_cqe(), or sleeps in epoll on an eventfd
 *                   registered with a DEFER_TASKRUN ring (6.1), which
 *                   io_uring signals from the completing context
 *                   (io_req_local_work_add()); with normal task work the
 *                   eventfd is only signalled by the owner's own task work,
 *                   after the owner was already woken.
 *
 * One worker thread blocks (futex, nanosleep, pipe read, cold pread, a
 * major fault on the same cold file mmap'ed), one
 * upcall at a time: it blocks again only after the scheduler has taken
 * the previous upcall.  Every wait of the harness is a spin (sched_yield()
 * where a CPU is shared, so the other side can run), never a sleep of the
 * registered thread, so its only blocks are the ones measured; a waker
 * thread releases futex and pipe blocks for unblock upcalls, after the
 * program has shown the worker really is off its CPU.
 *
 * The seed's other use of upcalls, timing "run by the timer interrupt"
 * (000), is upcall_timer.c.
 *
 * Build: part of lab._native (native/build.py), -luring -lpthread.
 */
#include <fcntl.h>
#include <linux/bpf.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "upcall.h"
#include "bpf_ring.h"
#include "compat_uring.h"
#include "evict_internal.h"
#include "internal.h"
#include "upcall_abi.h"
#include "upcall_internal.h"

#define UP_BLOCK 4096u
/* An event that has not come after this never will: fail, do not hang. */
#define UP_EVENT_TIMEOUT_NS 2000000000ull
#define UP_WAIT_SLICE_MS    10
#define UP_EVICT_TRIES	    8

static inline bool up_is_bpf(int m)
{
	return m <= UPCALL_BPF_FLAG_SLEEP || m == UPCALL_BPF_RINGBUF_ADAPTIVE ||
	       m == UPCALL_BPF_FLAG_IDLE;
}

static inline bool up_is_uring(int m)
{
	return m >= UPCALL_URING_CQE_POLL && m <= UPCALL_URING_CQE_EVENTFD;
}

/* the mechanisms whose scheduler sleeps in epoll on the ring */
static inline bool up_is_ring(int m)
{
	return m == UPCALL_BPF_RINGBUF || m == UPCALL_BPF_RINGBUF_ADAPTIVE;
}

/* polling the flag: bpf_flag at either policy */
static inline bool up_is_flag(int m)
{
	return m == UPCALL_BPF_FLAG || m == UPCALL_BPF_FLAG_IDLE;
}

/* ---- small helpers ------------------------------------------------------ */

/* A harness wait: on a CPU another thread of the run needs, give it the
 * CPU (a yield keeps the thread runnable: no block, no event). */
static inline void up_relax(bool shared)
{
	if (shared)
		sched_yield();
	else
		up_pause();
}

static void up_busy(uint64_t ns)
{
	uint64_t end = now_ns() + ns;

	while (now_ns() < end)
		up_pause();
}

static int up_futex_wait_ms(_Atomic uint32_t *word, uint32_t expected, int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	if (syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected,
		    &ts, NULL, 0) < 0)
		return -errno;
	return 0;
}

/* ---- BPF maps: the VP slots ---------------------------------------------- */

static inline uint64_t up_seq(const struct up_vp *slot, unsigned kind)
{
	return __atomic_load_n(kind == UP_KIND_BLOCK ? &slot->block_seq :
						       &slot->wake_seq,
			       __ATOMIC_ACQUIRE);
}

/* The newest event of a kind: its sequence number and kernel time, read
 * consistently (a seqlock read of the slot). */
static void up_slot_read(const struct up_vp *slot, unsigned kind, uint64_t *seq,
			 uint64_t *ns)
{
	const uint64_t *ns_p = kind == UP_KIND_BLOCK ? &slot->block_ns :
						       &slot->wake_ns;
	uint64_t s;

	do {
		s = up_seq(slot, kind);
		*ns = __atomic_load_n(ns_p, __ATOMIC_ACQUIRE);
	} while (up_seq(slot, kind) != s);
	*seq = s;
}

/* ---- the run ------------------------------------------------------------ */

struct up {
	const struct upcall_config *cfg;
	struct upcall_counts *out;
	uint64_t total;	       /* upcalls to take: warmup + samples */
	uint64_t max_attempts; /* blocking calls the worker may make */
	int slice_ms;	       /* longest single sleep of a wait */
	unsigned kind;	       /* the measured event kind */
	bool bpf, uring, hint, waker, sched_shares_cpu;

	/* scheduler -> worker, waker */
	_Alignas(LAB_CACHELINE) _Atomic uint32_t go;
	_Atomic uint32_t stop;
	_Atomic uint32_t waker_go;
	_Atomic uint64_t block_base; /* block_seq before this go */
	/* the futex the worker (or its SQE) waits on: released when > i */
	_Alignas(LAB_CACHELINE) _Atomic uint32_t release;
	/* worker -> scheduler */
	_Alignas(LAB_CACHELINE) _Atomic uint32_t returned;
	_Atomic uint32_t hint_word;
	_Atomic uint64_t hint_ns;
	_Atomic uint64_t deadline_ns;
	_Atomic int32_t worker_tid;
	_Atomic int worker_err;
	_Atomic uint64_t majflt; /* fault: the worker's, its touches (window) */
	_Atomic uint64_t fault_ns; /* ... the time they took */
	/* waker -> scheduler */
	_Alignas(LAB_CACHELINE) _Atomic uint64_t source_ns;
	_Atomic int waker_err;

	_Alignas(LAB_CACHELINE) int pipe_fd[2];
	int file_fd;
	void *file_map;
	unsigned char *vec;
	void *buf; /* the worker's read buffer */

	struct up_vp *vps;
	size_t vps_len;
	struct up_vp *slot;
	struct up_stages *stages; /* the anatomy's record (mapped) */
	size_t stages_len;
	bool anatomy;	 /* arm it for every upcall */
	bool sched_idle; /* we set SCHED_IDLE: restore */
	int old_policy;
	struct sched_param old_param;
	struct bpf_ring ring;
	bool have_ring;
	int tids_fd;
	uint32_t tid_key;
	bool registered;

	struct io_uring ring_u;
	bool have_uring;
	int efd, epfd;
	struct __kernel_timespec timeout_ts;
	uint64_t uring_deadline;
	char pipe_byte;

	pthread_t worker_thread, waker_thread;
	bool have_worker, have_waker;

	/* scheduler side */
	uint64_t seen;	      /* slot sequence of the kind, taken */
	uint64_t ring_seq[2]; /* last sequence in ring records */
	bool counting;	      /* inside the measured window */
};

static bool up_stopped(struct up *u)
{
	return atomic_load_explicit(&u->stop, memory_order_relaxed);
}

static void up_fail(struct up *u, _Atomic int *slot, int err)
{
	int zero = 0;

	atomic_compare_exchange_strong(slot, &zero, err);
	atomic_store(&u->stop, 1);
}

/* ---- block kinds -------------------------------------------------------- */

/* pread, fault: a file of one block per possible call, each stamped with
 * its number, on disk and out of the page cache; call i reads block i
 * (fault: touches it through the mapping).  FADV_RANDOM and MADV_RANDOM:
 * no readahead (the fault path's is the mapping's, do_sync_mmap_readahead()
 * skips a VM_RAND_READ vma), so reading a block brings in that page only. */
static inline bool up_is_file(int block_kind)
{
	return block_kind == UPCALL_BLOCK_PREAD ||
	       block_kind == UPCALL_BLOCK_FAULT;
}

static int up_file_setup(struct up *u)
{
	uint64_t b;
	unsigned char *blk;
	int err = 0;

	u->file_fd = open(u->cfg->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (u->file_fd < 0)
		return -errno;
	blk = u->buf;
	for (b = 0; b < u->max_attempts && !err; b++) {
		memset(blk, (int)(0x11 + b % 0xee), UP_BLOCK);
		memcpy(blk, &b, sizeof(b));
		if (pwrite(u->file_fd, blk, UP_BLOCK, (off_t)(b * UP_BLOCK)) !=
		    UP_BLOCK)
			err = errno ? -errno : -ENOSPC;
	}
	if (!err && fsync(u->file_fd) < 0)
		err = -errno;
	if (!err)
		err = -posix_fadvise(u->file_fd, 0, 0, POSIX_FADV_RANDOM);
	if (err)
		return err;
	u->file_map = mmap(NULL, u->max_attempts * UP_BLOCK, PROT_READ,
			   MAP_SHARED, u->file_fd, 0);
	if (u->file_map == MAP_FAILED) {
		u->file_map = NULL;
		return -errno;
	}
	if (madvise(u->file_map, u->max_attempts * UP_BLOCK, MADV_RANDOM) < 0)
		return -errno;
	u->vec = malloc(u->max_attempts);
	if (!u->vec)
		return -ENOMEM;
	return lab_evict_file(u->file_fd, u->file_map,
			      u->max_attempts * UP_BLOCK, u->vec,
			      UP_EVICT_TRIES);
}

static uint64_t up_file_resident(struct up *u, uint64_t from)
{
	uint64_t b, n = 0;

	if (mincore(u->file_map, u->max_attempts * UP_BLOCK, u->vec) < 0)
		return u->max_attempts - from;
	for (b = from; b < u->max_attempts; b++)
		n += u->vec[b] & 1;
	return n;
}

static uint64_t up_majflt(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru) < 0)
		return 0;
	return (uint64_t)ru.ru_majflt;
}

/* fault: a read of page i of the mapping; the kernel reads the block in
 * (filemap_fault(), the thread asleep on the folio lock: the block). */
static int up_touch(struct up *u, uint64_t i)
{
	const volatile uint64_t *word =
		(const volatile uint64_t *)((char *)u->file_map + i * UP_BLOCK);
	uint64_t before = up_majflt(), t0 = now_ns(), got = *word;
	uint64_t t1 = now_ns();

	/* u->counting was set before this call's go (acquire): the window's */
	if (u->counting) {
		atomic_fetch_add_explicit(&u->majflt, up_majflt() - before,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&u->fault_ns, t1 - t0,
					  memory_order_relaxed);
	}
	return got == i ? 0 : -EIO;
}

/* The worker's blocking call of iteration i. */
static int up_block(struct up *u, uint64_t i)
{
	uint32_t r;
	uint64_t deadline, got;
	ssize_t n;
	char c;

	switch (u->cfg->block_kind) {
	case UPCALL_BLOCK_FUTEX:
		while ((r = atomic_load_explicit(&u->release,
						 memory_order_acquire)) <= i) {
			if (up_stopped(u))
				return 0;
			futex_wait((uint32_t *)&u->release, r);
		}
		return 0;
	case UPCALL_BLOCK_NANOSLEEP:
		deadline = now_ns() + u->cfg->block_ns;
		atomic_store_explicit(&u->deadline_ns, deadline,
				      memory_order_release);
		return up_sleep_until(deadline);
	case UPCALL_BLOCK_PIPE:
		do
			n = read(u->pipe_fd[0], &c, 1);
		while (n < 0 && errno == EINTR);
		if (n == 1)
			return 0;
		return up_stopped(u) ? 0 : (n < 0 ? -errno : -EPIPE);
	case UPCALL_BLOCK_PREAD:
		n = pread(u->file_fd, u->buf, UP_BLOCK, (off_t)(i * UP_BLOCK));
		if (n != UP_BLOCK)
			return n < 0 ? -errno : -EIO;
		memcpy(&got, u->buf, sizeof(got));
		return got == i ? 0 : -EIO;
	case UPCALL_BLOCK_FAULT:
		return up_touch(u, i);
	}
	return -EINVAL;
}

/* End the block of iteration i: what the scheduler (block upcalls) or the
 * waker (unblock upcalls) does for futex and pipe blocks. */
static int up_release(struct up *u, uint64_t i)
{
	ssize_t n;

	switch (u->cfg->block_kind) {
	case UPCALL_BLOCK_FUTEX:
		atomic_store_explicit(&u->release, (uint32_t)i + 1,
				      memory_order_release);
		futex_wake((uint32_t *)&u->release, 1);
		return 0;
	case UPCALL_BLOCK_PIPE:
		do
			n = write(u->pipe_fd[1], "x", 1);
		while (n < 0 && errno == EINTR);
		return n == 1 ? 0 : -errno;
	}
	return 0;
}

/* ---- the anatomy: the upcall in flight ---------------------------------- */

/* The event of a mechanism without a program (futex_hint's stamp before
 * its wake, uring's waker stamp or deadline): stored by whoever stamps it,
 * before the wake-up it starts. */
static inline void up_stage_user_event(struct up *u, uint64_t t)
{
	if (u->anatomy)
		__atomic_store_n(&u->stages->event_ns, t, __ATOMIC_RELEASE);
}

/* Before upcall i: clear the record, then arm it for the measured event. */
static void up_stage_arm(struct up *u)
{
	struct up_stages *st = u->stages;

	__atomic_store_n(&st->armed, 0, __ATOMIC_SEQ_CST);
	st->event_ns = st->raise_ns = st->irq_work_ns = st->waking_ns = 0;
	st->wake_ipi_ns = st->switch_in_ns = 0;
	st->ipis = st->self_ipis = 0;
	/* the program overwrites it with the event's CPU */
	st->event_cpu =
		(uint32_t)(u->uring && u->cfg->block_kind ==
						   UPCALL_BLOCK_NANOSLEEP ?
				   u->cfg->sched_cpu :
				   u->cfg->cpu);
	__atomic_store_n(&st->armed,
			 !u->bpf		  ? UP_ARMED_USER :
			 u->kind == UP_KIND_BLOCK ? UP_ARMED_BLOCK :
						    UP_ARMED_UNBLOCK,
			 __ATOMIC_SEQ_CST);
}

static inline void up_stage_disarm(struct up *u)
{
	if (u->anatomy)
		__atomic_store_n(&u->stages->armed, 0, __ATOMIC_SEQ_CST);
}

/* Sample idx's stages: each stamp present after the previous one (and
 * before the scheduler's own) ends its stage; absent ones count 0 and
 * leave their time to the next. */
static void up_stage_sample(struct up *u, uint64_t t_event, uint64_t t_recv,
			    int64_t idx)
{
	const struct up_stages *st = u->stages;
	uint64_t n = u->cfg->nr_samples, prev = t_event, t;
	uint64_t stamp[UPCALL_NR_STAGES];
	double *out = u->cfg->anatomy_ns;
	int k;

	stamp[UPCALL_STAGE_RAISE] =
		__atomic_load_n(&st->raise_ns, __ATOMIC_ACQUIRE);
	stamp[UPCALL_STAGE_IRQ_WORK] =
		__atomic_load_n(&st->irq_work_ns, __ATOMIC_ACQUIRE);
	stamp[UPCALL_STAGE_WAKING] =
		__atomic_load_n(&st->waking_ns, __ATOMIC_ACQUIRE);
	stamp[UPCALL_STAGE_WAKE_IPI] =
		__atomic_load_n(&st->wake_ipi_ns, __ATOMIC_ACQUIRE);
	stamp[UPCALL_STAGE_SWITCH_IN] =
		__atomic_load_n(&st->switch_in_ns, __ATOMIC_ACQUIRE);
	stamp[UPCALL_STAGE_USER] = t_recv;
	for (k = 0; k < UPCALL_NR_STAGES; k++) {
		t = stamp[k];
		if (t && t >= prev && t <= t_recv) {
			out[(uint64_t)k * n + (uint64_t)idx] =
				(double)(t - prev);
			u->out->stage_seen[k]++;
			prev = t;
		} else {
			out[(uint64_t)k * n + (uint64_t)idx] = 0.0;
		}
	}
	out[(uint64_t)UPCALL_ANATOMY_IPIS * n + (uint64_t)idx] =
		(double)__atomic_load_n(&st->ipis, __ATOMIC_ACQUIRE);
	out[(uint64_t)UPCALL_ANATOMY_SELF_IPIS * n + (uint64_t)idx] =
		(double)__atomic_load_n(&st->self_ipis, __ATOMIC_ACQUIRE);
}

/* ---- threads ------------------------------------------------------------ */

static void *up_worker(void *arg)
{
	struct up *u = arg;
	/* the scheduler or the waker may need this CPU while we wait */
	bool shared = u->sched_shares_cpu || u->waker;
	uint64_t i;
	int err = 0;

	atomic_store(&u->worker_tid, (int32_t)gettid());
	/* until told to stop: a thread that exits while registered would
	 * report its last switch (TASK_DEAD) as a block */
	for (i = 0; !err; i++) {
		while (atomic_load_explicit(&u->go, memory_order_acquire) <=
		       i) {
			if (up_stopped(u))
				return NULL;
			up_relax(shared);
		}
		if (u->cfg->run_ns)
			up_busy(u->cfg->run_ns);
		if (u->hint) {
			/* futex_hint: tell the scheduler, then block */
			uint64_t t = now_ns();

			atomic_store_explicit(&u->hint_ns, t,
					      memory_order_relaxed);
			up_stage_user_event(u, t);
			atomic_store_explicit(&u->hint_word, (uint32_t)i + 1,
					      memory_order_release);
			futex_wake((uint32_t *)&u->hint_word, 1);
		}
		err = up_block(u, i);
		atomic_store_explicit(&u->returned, (uint32_t)i + 1,
				      memory_order_release);
		if (up_stopped(u))
			return NULL;
	}
	up_fail(u, &u->worker_err, err);
	return NULL;
}

/*
 * Unblock upcalls of futex and pipe blocks, and uring's futex and pipe
 * requests, need someone to end the block: the waker, on the worker's CPU
 * (so the event starts where the worker blocked, as a nanosleep's timer
 * does).  It acts block_ns after the block (for the bpf mechanisms: after
 * the program published it, so the worker is surely off its CPU and the
 * waking is of a blocked thread).
 */
static void *up_waker(void *arg)
{
	struct up *u = arg;
	uint64_t i, base, t;
	uint32_t g;
	int err = 0;

	for (i = 0; !err; i++) {
		while ((g = atomic_load_explicit(&u->waker_go,
						 memory_order_acquire)) <= i) {
			if (up_stopped(u))
				return NULL;
			up_futex_wait_ms(&u->waker_go, g, u->slice_ms);
		}
		if (up_stopped(u))
			return NULL;
		if (u->bpf) {
			base = atomic_load(&u->block_base);
			while (up_seq(u->slot, UP_KIND_BLOCK) <= base) {
				if (up_stopped(u))
					return NULL;
				sched_yield();
			}
		}
		err = up_sleep_until(now_ns() + u->cfg->block_ns);
		if (err)
			break;
		t = now_ns();
		atomic_store_explicit(&u->source_ns, t, memory_order_release);
		if (u->uring)
			up_stage_user_event(u, t);
		err = up_release(u, i);
	}
	up_fail(u, &u->waker_err, err);
	return NULL;
}

/* ---- the scheduler: learning of an event --------------------------------- */

struct up_seen {
	uint64_t t_event;
	uint64_t t_recv;
	bool slept;
};

struct up_drain {
	struct up *u;
	uint64_t first_ns; /* the first new record of the measured kind */
	uint64_t nr_kind;
};

static int up_on_record(void *ctx, const void *data, uint32_t len)
{
	struct up_drain *d = ctx;
	struct up *u = d->u;
	const struct up_event *ev = data;

	if (len != sizeof(*ev) || ev->vp != UP_VP ||
	    ev->kind > UP_KIND_UNBLOCK) {
		u->out->ring_bad++;
		return 0;
	}
	if ((int32_t)ev->tid != atomic_load(&u->worker_tid)) {
		u->out->foreign++;
		return 0;
	}
	/* sequence numbers only grow: a record seen twice or out of order
	 * is a consumer bug (gaps are events the program did not send) */
	if (ev->seq <= u->ring_seq[ev->kind]) {
		u->out->ring_bad++;
		return 0;
	}
	u->ring_seq[ev->kind] = ev->seq;
	if (ev->kind == u->kind && !d->nr_kind++)
		d->first_ns = ev->ktime_ns;
	return 0;
}

static int up_drain_ring(struct up *u, struct up_drain *d)
{
	int n;

	memset(d, 0, sizeof(*d));
	d->u = u;
	n = bpf_ring_consume(&u->ring, up_on_record, d);
	return n < 0 ? n : 0;
}

static uint64_t up_event_timeout(struct up *u)
{
	uint64_t t = 20 * u->cfg->block_ns + 20 * u->cfg->run_ns;

	return UP_EVENT_TIMEOUT_NS + t;
}

/*
 * Did call i return without the event?  A cold read whose I/O completed
 * before the reader waited on the page, a sleep whose deadline passed while
 * the worker was preempted: no block, so no upcall.  Read `returned`
 * before looking for the event: the program publishes an event before the
 * worker can run again, so an event not there after `returned` never
 * comes.
 */
static inline bool up_returned(struct up *u, uint64_t i)
{
	return atomic_load_explicit(&u->returned, memory_order_acquire) > i;
}

/* bpf_ringbuf: sleep in epoll on the ring, consume in C.  1: no event. */
static int up_wait_ring(struct up *u, uint64_t i, struct up_seen *s)
{
	uint64_t deadline = now_ns() + up_event_timeout(u);
	struct up_drain d;
	bool returned;
	int err;

	for (;;) {
		returned = up_returned(u, i);
		err = up_drain_ring(u, &d);
		if (err)
			return err;
		if (d.nr_kind) {
			s->t_recv = now_ns();
			s->t_event = d.first_ns;
			return 0;
		}
		if (returned)
			return 1;
		if (up_stopped(u))
			return -ECANCELED;
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		s->slept = true;
		/* a call that never blocks sends nothing: look again after a
		 * slice (the sleep is not the upcall's: not recorded) */
		err = bpf_ring_wait(&u->ring, u->slice_ms);
		if (err < 0)
			return err;
	}
}

/* bpf_flag (may_sleep false) and bpf_flag_sleep: poll the slot; past the
 * spin budget, say so in `sleeping`, look once more, and sleep in epoll
 * on the ring the program then writes to. */
static int up_wait_flag(struct up *u, uint64_t i, struct up_seen *s,
			bool may_sleep)
{
	uint64_t t0 = now_ns(), spin_end = t0 + u->cfg->spin_ns;
	uint64_t deadline = t0 + up_event_timeout(u), seq, ns, now;
	struct up_vp *slot = u->slot;
	struct up_drain d;
	unsigned n = 0;
	bool returned;
	int err;

	for (;;) {
		returned = up_returned(u, i);
		if (up_seq(slot, u->kind) != u->seen) {
			s->t_recv = now_ns();
			up_slot_read(slot, u->kind, &seq, &ns);
			s->t_event = ns;
			/* two events before we looked: the flag keeps the
			 * newest only */
			if (u->counting)
				u->out->missed_events += seq - u->seen - 1;
			u->seen = seq;
			return 0;
		}
		if (returned)
			return 1;
		if (may_sleep || (++n & 1023) == 0) {
			now = now_ns();
			if (now > deadline)
				return -ETIMEDOUT;
			if (up_stopped(u))
				return -ECANCELED;
			if (may_sleep && now >= spin_end) {
				/* store sleeping, then load the sequence; the
				 * program adds to the sequence, then loads
				 * sleeping: one of us sees the other */
				__atomic_store_n(&slot->sleeping, 1,
						 __ATOMIC_SEQ_CST);
				if (__atomic_load_n(u->kind == UP_KIND_BLOCK ?
							    &slot->block_seq :
							    &slot->wake_seq,
						    __ATOMIC_SEQ_CST) ==
				    u->seen) {
					s->slept = true;
					err = bpf_ring_wait(&u->ring,
							    u->slice_ms);
					if (err < 0)
						return err;
				}
				__atomic_store_n(&slot->sleeping, 0,
						 __ATOMIC_SEQ_CST);
				/* the ring is only the wake-up: the flag
				 * carries the event */
				err = up_drain_ring(u, &d);
				if (err)
					return err;
				continue;
			}
		}
		up_relax(u->sched_shares_cpu);
	}
}

/* futex_hint: sleep on the word the worker bumps before it blocks. */
static int up_wait_hint(struct up *u, uint64_t i, struct up_seen *s)
{
	uint64_t deadline = now_ns() + up_event_timeout(u);
	uint32_t h;

	while ((h = atomic_load_explicit(&u->hint_word,
					 memory_order_acquire)) <= i) {
		if (up_stopped(u))
			return -ECANCELED;
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		/* EAGAIN: the hint landed before we slept; that upcall
		 * found a running scheduler and is not counted as slept */
		if (up_futex_wait_ms(&u->hint_word, h, u->slice_ms) != -EAGAIN)
			s->slept = true;
	}
	s->t_recv = now_ns();
	s->t_event = atomic_load_explicit(&u->hint_ns, memory_order_relaxed);
	return 0;
}

/* ---- io_uring ------------------------------------------------------------ */

static int up_uring_setup(struct up *u)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct io_uring_params p;
	int err;

	memset(&p, 0, sizeof(p));
	if (u->cfg->mechanism == UPCALL_URING_CQE_EVENTFD)
		p.flags = IORING_SETUP_SINGLE_ISSUER |
			  IORING_SETUP_DEFER_TASKRUN;
	err = io_uring_queue_init_params(8, &u->ring_u, &p);
	if (err < 0)
		return err;
	u->have_uring = true;
	if (u->cfg->mechanism != UPCALL_URING_CQE_EVENTFD)
		return 0;
	u->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->efd < 0)
		return -errno;
	err = io_uring_register_eventfd(&u->ring_u, u->efd);
	if (err < 0)
		return err;
	u->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (u->epfd < 0)
		return -errno;
	ev.data.fd = u->efd;
	if (epoll_ctl(u->epfd, EPOLL_CTL_ADD, u->efd, &ev) < 0)
		return -errno;
	return 0;
}

/* Iteration i's blocking call, as an SQE. */
static int up_uring_submit(struct up *u, uint64_t i)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring_u);
	int ret;

	if (!sqe)
		return -EBUSY;
	switch (u->cfg->block_kind) {
	case UPCALL_BLOCK_FUTEX:
		/* IORING_OP_FUTEX_WAIT, Linux 6.7 */
		lab_prep_futex_wait(sqe, (uint32_t *)&u->release, (uint32_t)i);
		break;
	case UPCALL_BLOCK_PIPE:
		/* the pipe is empty: io_uring arms a poll and reads on the
		 * waker's write; a stream takes offset -1 */
		io_uring_prep_read(sqe, u->pipe_fd[0], &u->pipe_byte, 1,
				   (uint64_t)-1);
		break;
	case UPCALL_BLOCK_NANOSLEEP:
		u->uring_deadline = now_ns() + u->cfg->block_ns;
		up_stage_user_event(u, u->uring_deadline);
		u->timeout_ts.tv_sec =
			(int64_t)(u->uring_deadline / 1000000000ull);
		u->timeout_ts.tv_nsec =
			(long long)(u->uring_deadline % 1000000000ull);
		io_uring_prep_timeout(sqe, &u->timeout_ts, 0,
				      IORING_TIMEOUT_ABS);
		break;
	default:
		return -EINVAL;
	}
	sqe->user_data = i;
	do
		ret = io_uring_submit(&u->ring_u);
	while (ret == -EINTR);
	if (ret < 0)
		return ret;
	return ret == 1 ? 0 : -EIO;
}

static int up_uring_check(struct up *u, struct io_uring_cqe *cqe, uint64_t i)
{
	int want;

	switch (u->cfg->block_kind) {
	case UPCALL_BLOCK_FUTEX:
		want = 0;
		break;
	case UPCALL_BLOCK_PIPE:
		want = 1;
		break;
	default:
		want = -ETIME;
		break;
	}
	if (cqe->user_data != i)
		return -EIO;
	if (cqe->res == want)
		return 0;
	return cqe->res < 0 ? cqe->res : -EIO;
}

static int up_wait_uring(struct up *u, uint64_t i, struct up_seen *s)
{
	uint64_t deadline = now_ns() + up_event_timeout(u), v;
	struct __kernel_timespec ts = { u->slice_ms / 1000,
					(u->slice_ms % 1000) * 1000000LL };
	struct io_uring_cqe *cqe = NULL;
	struct epoll_event ev;
	unsigned n = 0;
	int ret, err;

	for (;;) {
		if (io_uring_peek_cqe(&u->ring_u, &cqe) == 0)
			break;
		if (u->cfg->mechanism == UPCALL_URING_CQE_POLL) {
			if ((++n & 1023) == 0 && now_ns() > deadline)
				return -ETIMEDOUT;
			up_relax(u->sched_shares_cpu);
			continue;
		}
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		s->slept = true;
		if (u->cfg->mechanism == UPCALL_URING_CQE_WAIT) {
			ret = io_uring_wait_cqe_timeout(&u->ring_u, &cqe, &ts);
			if (ret == 0)
				break;
			if (ret != -ETIME && ret != -EINTR)
				return ret;
			continue;
		}
		/* eventfd: the completion signals it from the completing
		 * context; then run the deferred task work that posts the CQE */
		ret = epoll_wait(u->epfd, &ev, 1, u->slice_ms);
		if (ret < 0 && errno != EINTR)
			return -errno;
		if (read(u->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			return -errno;
		ret = io_uring_get_events(&u->ring_u);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN)
			return ret;
	}
	s->t_recv = now_ns();
	err = up_uring_check(u, cqe, i);
	io_uring_cqe_seen(&u->ring_u, cqe);
	return err;
}

/* ---- one upcall ---------------------------------------------------------- */

static int up_wait_returned(struct up *u, uint64_t i)
{
	uint64_t deadline = now_ns() + up_event_timeout(u);
	unsigned n = 0;

	while (atomic_load_explicit(&u->returned, memory_order_acquire) <= i) {
		if (up_stopped(u))
			return -ECANCELED;
		if ((++n & 1023) == 0 && now_ns() > deadline)
			return -ETIMEDOUT;
		up_relax(u->sched_shares_cpu);
	}
	return 0;
}

/*
 * Call i of the worker and the upcall it causes, recorded at index idx of
 * the series (idx < 0: warm-up).  0: an upcall; 1: the call returned
 * without the event (no sample); -errno.
 */
static int up_iteration(struct up *u, uint64_t i, int64_t idx,
			double *latency_ns, double *since_source_ns)
{
	const struct upcall_config *cfg = u->cfg;
	struct up_seen s = { 0 };
	uint64_t seq_start = 0, seq_end, block_start = 0, source = 0;
	bool has_source = false;
	struct up_drain d;
	bool void_call;
	double lat;
	int err;

	if (u->anatomy)
		up_stage_arm(u);
	if (u->bpf) {
		seq_start = up_seq(u->slot, u->kind);
		block_start = up_seq(u->slot, UP_KIND_BLOCK);
	}
	if (u->uring) {
		err = up_uring_submit(u, i);
		if (err)
			return err;
	}
	if (u->waker) {
		if (u->bpf)
			atomic_store(&u->block_base,
				     up_seq(u->slot, UP_KIND_BLOCK));
		atomic_store_explicit(&u->waker_go, (uint32_t)i + 1,
				      memory_order_release);
		futex_wake((uint32_t *)&u->waker_go, 1);
	}
	if (!u->uring)
		atomic_store_explicit(&u->go, (uint32_t)i + 1,
				      memory_order_release);

	switch (cfg->mechanism) {
	case UPCALL_BPF_RINGBUF:
	case UPCALL_BPF_RINGBUF_ADAPTIVE:
		err = up_wait_ring(u, i, &s);
		break;
	case UPCALL_BPF_FLAG:
	case UPCALL_BPF_FLAG_IDLE:
		err = up_wait_flag(u, i, &s, false);
		break;
	case UPCALL_BPF_FLAG_SLEEP:
		err = up_wait_flag(u, i, &s, true);
		break;
	case UPCALL_FUTEX_HINT:
		err = up_wait_hint(u, i, &s);
		break;
	default:
		err = up_wait_uring(u, i, &s);
		break;
	}
	/* the scheduler has its stamp: nothing after it is the upcall's */
	up_stage_disarm(u);
	if (err < 0)
		return err;
	void_call = err == 1;

	if (!u->uring && !void_call) {
		/* a block upcall of a futex or pipe block: the scheduler
		 * resumes the thread, as soon as it knows */
		if (cfg->event == UPCALL_EVENT_BLOCK && !u->waker) {
			err = up_release(u, i);
			if (err)
				return err;
		}
	}
	if (!u->uring) {
		err = up_wait_returned(u, i);
		if (err)
			return err;
	}
	if (u->waker) {
		source = atomic_load_explicit(&u->source_ns,
					      memory_order_acquire);
		has_source = true;
	} else if (cfg->block_kind == UPCALL_BLOCK_NANOSLEEP) {
		source = u->uring ? u->uring_deadline :
				    atomic_load_explicit(&u->deadline_ns,
							 memory_order_acquire);
		has_source = true;
	}
	if (u->uring)
		s.t_event = source;

	if (u->bpf) {
		/* every event of this upcall is published by now (before the
		 * worker could run again): count what came after the first */
		seq_end = up_seq(u->slot, u->kind);
		if (u->counting && seq_end > seq_start + !void_call)
			u->out->extra_events +=
				seq_end - seq_start - !void_call;
		if (!up_is_ring(cfg->mechanism))
			u->seen = seq_end;
		if (u->have_ring) {
			err = up_drain_ring(u, &d);
			if (err)
				return err;
		}
	}
	if (void_call) {
		/* the worker blocked and was woken, yet no unblock event:
		 * the program never ran for that sched_waking (see
		 * upcall_program_misses()) */
		if (u->counting && u->kind == UP_KIND_UNBLOCK &&
		    up_seq(u->slot, UP_KIND_BLOCK) != block_start)
			u->out->lost_upcalls++;
		else if (u->counting)
			u->out->not_blocked++;
		return 1;
	}
	if (idx < 0)
		return 0;
	lat = up_delta(s.t_recv, s.t_event, &u->out->clamped);
	latency_ns[idx] = lat;
	if (u->anatomy)
		up_stage_sample(u, s.t_event, s.t_recv, idx);
	if (since_source_ns && has_source && cfg->event == UPCALL_EVENT_UNBLOCK)
		since_source_ns[idx] =
			up_delta(s.t_recv, source, &u->out->clamped);
	if (s.slept)
		u->out->slept++;
	else
		u->out->spun++;
	u->out->upcalls++;
	return 0;
}

/* ---- set-up and tear-down ------------------------------------------------ */

static int up_check(const struct upcall_config *cfg,
		    const struct upcall_maps *maps)
{
	int m = cfg->mechanism;

	/* rseq aborts tell of preemptions, not of blocks: upcall_preempt.c */
	if (m < 0 || m >= UPCALL_NR_MECHANISMS || m == UPCALL_RSEQ_ABORT ||
	    cfg->block_kind < 0 || cfg->block_kind >= UPCALL_NR_BLOCK_KINDS ||
	    (cfg->event != UPCALL_EVENT_BLOCK &&
	     cfg->event != UPCALL_EVENT_UNBLOCK) ||
	    !cfg->nr_samples || cfg->warmup + cfg->nr_samples >= UINT32_MAX / 2)
		return -EINVAL;
	if (up_is_bpf(m) && (!maps || maps->vps_fd < 0 || maps->tids_fd < 0 ||
			     (!up_is_flag(m) && maps->ring_fd < 0)))
		return -EINVAL;
	/* the adaptive ring's setting and the anatomy live in the stages */
	if ((m == UPCALL_BPF_RINGBUF_ADAPTIVE || cfg->anatomy) &&
	    (!maps || maps->stages_fd < 0))
		return -EINVAL;
	if (cfg->anatomy && !cfg->anatomy_ns)
		return -EINVAL;
	/* futex_hint is a block upcall, io_uring's completion an unblock
	 * one; a cold read's completion has no user-visible time to measure
	 * a uring upcall from */
	if (m == UPCALL_FUTEX_HINT && cfg->event != UPCALL_EVENT_BLOCK)
		return -EINVAL;
	if (up_is_uring(m) &&
	    (cfg->event != UPCALL_EVENT_UNBLOCK || up_is_file(cfg->block_kind)))
		return -EINVAL;
	if (up_is_file(cfg->block_kind) && !cfg->dir)
		return -EINVAL;
	return 0;
}

static void up_reset_ring_seq(struct up *u)
{
	u->ring_seq[UP_KIND_BLOCK] = up_seq(u->slot, UP_KIND_BLOCK);
	u->ring_seq[UP_KIND_UNBLOCK] = up_seq(u->slot, UP_KIND_UNBLOCK);
}

static int up_setup(struct up *u, const struct upcall_maps *maps,
		    uint64_t *base_lost)
{
	const struct upcall_config *cfg = u->cfg;
	struct up_drain d;
	int err;

	if (posix_memalign(&u->buf, UP_BLOCK, UP_BLOCK))
		return -ENOMEM;
	if (cfg->block_kind == UPCALL_BLOCK_PIPE &&
	    pipe2(u->pipe_fd, O_CLOEXEC) < 0)
		return -errno;
	if (up_is_file(cfg->block_kind)) {
		err = up_file_setup(u);
		if (err)
			return err;
	}
	if (cfg->anatomy || cfg->mechanism == UPCALL_BPF_RINGBUF_ADAPTIVE) {
		err = up_map_stages(maps->stages_fd, &u->stages,
				    &u->stages_len);
		if (err)
			return err;
		__atomic_store_n(&u->stages->armed, 0, __ATOMIC_SEQ_CST);
		u->stages->sched_tid = (uint32_t)gettid(); /* we schedule */
		u->stages->sched_cpu = (uint32_t)cfg->sched_cpu;
		u->stages->ring_wakeup =
			cfg->mechanism == UPCALL_BPF_RINGBUF_ADAPTIVE ?
				UP_RING_ADAPTIVE :
				UP_RING_FORCE;
		u->anatomy = cfg->anatomy;
	}
	if (u->uring)
		return up_uring_setup(u);
	if (!u->bpf)
		return 0;

	err = up_map_slots(maps->vps_fd, &u->vps, &u->vps_len);
	if (err)
		return err;
	u->slot = &u->vps[UP_VP];
	u->tids_fd = maps->tids_fd;
	if (!up_is_flag(cfg->mechanism)) {
		err = bpf_ring_open(&u->ring, maps->ring_fd);
		if (err)
			return err;
		u->have_ring = true;
	}
	/* what the program sends to the ring for this VP (read by it on
	 * every event; set before the worker is registered) */
	__atomic_store_n(&u->slot->ring_kinds,
			 up_is_flag(cfg->mechanism) ? 0u : 1u << u->kind,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&u->slot->ring_if_sleeping,
			 cfg->mechanism == UPCALL_BPF_FLAG_SLEEP,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&u->slot->sleeping, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&u->slot->blocked, 0, __ATOMIC_SEQ_CST);
	/* a program reused across runs (tests) may hold earlier records */
	if (u->have_ring) {
		err = up_drain_ring(u, &d);
		if (err)
			return err;
		u->ring.records = u->ring.discarded = 0;
		u->out->ring_bad = u->out->foreign = 0;
	}
	up_reset_ring_seq(u);
	u->seen = up_seq(u->slot, u->kind);
	*base_lost = __atomic_load_n(&u->slot->ring_lost, __ATOMIC_ACQUIRE);
	return 0;
}

static int up_start(struct up *u)
{
	uint32_t vp = UP_VP;
	int err;

	if (!u->uring) {
		err = lab_spawn_on_cpu(&u->worker_thread, u->cfg->cpu, -1, 0,
				       up_worker, u);
		if (err)
			return err;
		u->have_worker = true;
		while (!atomic_load(&u->worker_tid))
			sched_yield();
		u->out->worker_tid = (uint64_t)atomic_load(&u->worker_tid);
	}
	if (u->waker) {
		err = lab_spawn_on_cpu(&u->waker_thread, u->cfg->cpu, -1, 0,
				       up_waker, u);
		if (err)
			return err;
		u->have_waker = true;
	}
	if (!u->bpf)
		return 0;
	/* from here on, the worker's blocks are upcalls */
	u->tid_key = (uint32_t)atomic_load(&u->worker_tid);
	err = lab_bpf_map_update_elem(u->tids_fd, &u->tid_key, &vp, BPF_ANY);
	if (err)
		return err;
	u->registered = true;
	return 0;
}

static int up_teardown(struct up *u, uint64_t base_lost)
{
	struct up_drain d;
	ssize_t n;
	int err = 0;

	/* unregister first: a thread that exits while registered would
	 * report its last switch (TASK_DEAD) as a block */
	if (u->registered)
		err = lab_bpf_map_delete_elem(u->tids_fd, &u->tid_key);
	atomic_store(&u->stop, 1);
	if (u->have_worker) {
		atomic_store(&u->release, UINT32_MAX);
		futex_wake((uint32_t *)&u->release, INT32_MAX);
		if (u->pipe_fd[1] >= 0)
			do
				n = write(u->pipe_fd[1], "x", 1);
			while (n < 0 && errno == EINTR);
		pthread_join(u->worker_thread, NULL);
		u->out->majflt = atomic_load(&u->majflt);
		u->out->fault_ns = atomic_load(&u->fault_ns);
	}
	if (u->have_waker) {
		atomic_store(&u->waker_go, UINT32_MAX);
		futex_wake((uint32_t *)&u->waker_go, INT32_MAX);
		pthread_join(u->waker_thread, NULL);
	}
	if (u->have_ring) {
		if (up_drain_ring(u, &d) && !err)
			err = -EIO;
		u->out->ring_records = u->ring.records;
		u->out->ring_discarded = u->ring.discarded;
		bpf_ring_close(&u->ring);
	}
	if (u->slot) {
		__atomic_store_n(&u->slot->ring_kinds, 0, __ATOMIC_RELAXED);
		u->out->ring_lost =
			__atomic_load_n(&u->slot->ring_lost, __ATOMIC_ACQUIRE) -
			base_lost;
	}
	if (u->vps)
		munmap(u->vps, u->vps_len);
	if (u->stages) {
		/* as a fresh load has it: nothing armed, the forced wake-up */
		__atomic_store_n(&u->stages->armed, 0, __ATOMIC_SEQ_CST);
		u->stages->ring_wakeup = UP_RING_FORCE;
		munmap(u->stages, u->stages_len);
	}
	if (u->have_uring)
		io_uring_queue_exit(&u->ring_u);
	if (u->epfd >= 0)
		close(u->epfd);
	if (u->efd >= 0)
		close(u->efd);
	if (u->pipe_fd[0] >= 0)
		close(u->pipe_fd[0]);
	if (u->pipe_fd[1] >= 0)
		close(u->pipe_fd[1]);
	if (u->file_map)
		munmap(u->file_map, u->max_attempts * UP_BLOCK);
	if (u->file_fd >= 0)
		close(u->file_fd);
	free(u->vec);
	free(u->buf);
	return err;
}

/* bpf_flag_idle: the scheduler (this thread) polls at SCHED_IDLE, so the
 * kernel runs it exactly when the CPU would otherwise go idle: no wake-up,
 * no IPI, no irq_work between the block and the poll (upcall_run restores
 * the policy on every way out). */
static int up_sched_idle(struct up *u)
{
	struct sched_param sp = { .sched_priority = 0 };
	int err;

	err = -pthread_getschedparam(pthread_self(), &u->old_policy,
				     &u->old_param);
	if (err)
		return err;
	err = -pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	if (!err)
		u->sched_idle = true;
	return err;
}

int upcall_run(struct lab_handshake *hs, const struct upcall_config *cfg,
	       const struct upcall_maps *maps, double *latency_ns,
	       double *since_source_ns, struct upcall_counts *out)
{
	uint64_t i, taken = 0, base_lost = 0, base_blocks = 0,
		    base_unblocks = 0;
	size_t size = (sizeof(struct up) + LAB_CACHELINE - 1) &
		      ~(size_t)(LAB_CACHELINE - 1);
	cpu_set_t saved;
	struct up *u;
	int err, e2;

	memset(out, 0, sizeof(*out));
	err = up_check(cfg, maps);
	if (err)
		return err;
	err = lab_pin_saving(cfg->sched_cpu, &saved);
	if (err)
		return err;
	u = aligned_alloc(LAB_CACHELINE, size);
	if (!u) {
		lab_unpin(&saved);
		return -ENOMEM;
	}
	memset(u, 0, size);
	u->pipe_fd[0] = u->pipe_fd[1] = u->file_fd = u->efd = u->epfd = -1;
	u->tids_fd = -1;
	u->cfg = cfg;
	u->out = out;
	u->total = cfg->warmup + cfg->nr_samples;
	/* room for calls that do not block (rare: see up_returned()) */
	u->max_attempts = u->total + u->total / 4 + 64;
	u->slice_ms = UP_WAIT_SLICE_MS;
	if ((2 * cfg->block_ns + cfg->run_ns) / 1000000 >= UP_WAIT_SLICE_MS)
		u->slice_ms =
			(int)((2 * cfg->block_ns + cfg->run_ns) / 1000000) + 1;
	u->kind = cfg->event == UPCALL_EVENT_BLOCK ? UP_KIND_BLOCK :
						     UP_KIND_UNBLOCK;
	u->bpf = up_is_bpf(cfg->mechanism);
	u->hint = cfg->mechanism == UPCALL_FUTEX_HINT;
	u->uring = up_is_uring(cfg->mechanism);
	u->sched_shares_cpu = cfg->sched_cpu == cfg->cpu;
	u->waker = (cfg->block_kind == UPCALL_BLOCK_FUTEX ||
		    cfg->block_kind == UPCALL_BLOCK_PIPE) &&
		   (u->uring || (u->bpf && cfg->event == UPCALL_EVENT_UNBLOCK));

	err = up_setup(u, maps, &base_lost);
	if (!err)
		err = up_start(u);
	/* after the threads are made: they would inherit the policy */
	if (!err && cfg->mechanism == UPCALL_BPF_FLAG_IDLE)
		err = up_sched_idle(u);
	out->sched_policy = sched_getscheduler(0);
	for (i = 0; !err && taken < u->total; i++) {
		if (taken == cfg->warmup && !u->counting) {
			if (up_is_file(cfg->block_kind))
				out->resident_before = up_file_resident(u, i);
			err = lab_handshake_ready(hs, NULL, 0);
			if (err)
				break;
			if (u->bpf) {
				base_blocks = up_seq(u->slot, UP_KIND_BLOCK);
				base_unblocks =
					up_seq(u->slot, UP_KIND_UNBLOCK);
			}
			u->counting = true;
		}
		if (i == u->max_attempts) {
			err = -EAGAIN; /* most calls did not block */
			break;
		}
		err = up_iteration(
			u, i, u->counting ? (int64_t)(taken - cfg->warmup) : -1,
			latency_ns, since_source_ns);
		if (err == 0)
			taken++;
		else if (err == 1)
			err = 0;
	}
	if (!err) {
		if (u->bpf) {
			out->blocks =
				up_seq(u->slot, UP_KIND_BLOCK) - base_blocks;
			out->unblocks = up_seq(u->slot, UP_KIND_UNBLOCK) -
					base_unblocks;
		}
		err = lab_handshake_done(hs);
	}
	/* a thread's own error explains a stop better than the -ECANCELED
	 * the scheduler saw */
	if (atomic_load(&u->worker_err))
		err = atomic_load(&u->worker_err);
	else if (atomic_load(&u->waker_err))
		err = atomic_load(&u->waker_err);
	e2 = up_teardown(u, base_lost);
	if (!err)
		err = e2;
	if (u->sched_idle) {
		e2 = -pthread_setschedparam(pthread_self(), u->old_policy,
					    &u->old_param);
		if (!err)
			err = e2;
	}
	free(u);
	lab_unpin(&saved);
	return err;
}

/* ---- the ring consumer, tested in bulk ----------------------------------- */

struct up_burst {
	_Alignas(LAB_CACHELINE) _Atomic uint32_t go_round;
	_Atomic uint32_t done_round;
	_Atomic uint32_t stop;
	_Atomic int32_t tid;
	uint32_t rounds, per_round, bystander;
	_Atomic int err;
	/* the consumer's view */
	uint64_t last_seq;
	struct upcall_burst_result *out;
};

static void *up_burst_blocker(void *arg)
{
	struct up_burst *b = arg;
	uint32_t r, k;
	int err = 0;

	atomic_store(&b->tid, (int32_t)gettid());
	for (r = 0; r < b->rounds && !err; r++) {
		while (atomic_load(&b->go_round) <= r) {
			if (atomic_load(&b->stop))
				return NULL;
			sched_yield();
		}
		for (k = 0; k < b->per_round && !err; k++)
			err = up_sleep_until(now_ns() + 10000);
		atomic_store(&b->done_round, r + 1);
	}
	if (err)
		atomic_store(&b->err, err);
	/* stay alive (and runnable) until unregistered: see up_teardown() */
	while (!atomic_load(&b->stop))
		sched_yield();
	return NULL;
}

static void *up_burst_bystander(void *arg)
{
	struct up_burst *b = arg;
	uint32_t k;

	for (k = 0; k < b->bystander; k++)
		if (up_sleep_until(now_ns() + 10000))
			break;
	return NULL;
}

static int up_burst_record(void *ctx, const void *data, uint32_t len)
{
	struct up_burst *b = ctx;
	const struct up_event *ev = data;

	if (len != sizeof(*ev) || ev->kind != UP_KIND_BLOCK ||
	    ev->vp != UP_VP) {
		b->out->bad++;
		return 0;
	}
	if ((int32_t)ev->tid != atomic_load(&b->tid)) {
		b->out->foreign++;
		return 0;
	}
	if (ev->seq <= b->last_seq)
		b->out->out_of_order++;
	else
		b->last_seq = ev->seq;
	return 0;
}

int upcall_burst(const struct upcall_maps *maps, int cpu, uint32_t rounds,
		 uint32_t blocks_per_round, uint32_t bystander_blocks,
		 struct upcall_burst_result *out)
{
	struct up_vp *vps = NULL, *slot;
	uint64_t base_seq, base_lost;
	pthread_t blocker, bystander;
	bool have_blocker = false, have_bystander = false, registered = false;
	struct bpf_ring ring;
	struct up_burst *b;
	uint32_t r, vp = UP_VP, key = 0;
	size_t vps_len = 0;
	int err, n;

	memset(out, 0, sizeof(*out));
	if (!maps || !rounds)
		return -EINVAL;
	b = aligned_alloc(LAB_CACHELINE, (sizeof(*b) + LAB_CACHELINE - 1) &
						 ~(size_t)(LAB_CACHELINE - 1));
	if (!b)
		return -ENOMEM;
	memset(b, 0, sizeof(*b));
	b->rounds = rounds;
	b->per_round = blocks_per_round;
	b->bystander = bystander_blocks;
	b->out = out;
	err = up_map_slots(maps->vps_fd, &vps, &vps_len);
	if (err) {
		free(b);
		return err;
	}
	slot = &vps[UP_VP];
	err = bpf_ring_open(&ring, maps->ring_fd);
	if (err) {
		munmap(vps, vps_len);
		free(b);
		return err;
	}
	__atomic_store_n(&slot->ring_kinds, 1u << UP_KIND_BLOCK,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&slot->ring_if_sleeping, 0, __ATOMIC_SEQ_CST);
	/* whatever an earlier user of the program left */
	bpf_ring_consume(&ring, up_burst_record, b);
	memset(out, 0, sizeof(*out));
	ring.records = ring.discarded = 0;
	base_seq = b->last_seq = up_seq(slot, UP_KIND_BLOCK);
	base_lost = __atomic_load_n(&slot->ring_lost, __ATOMIC_ACQUIRE);

	err = lab_spawn_on_cpu(&blocker, cpu, -1, 0, up_burst_blocker, b);
	if (err)
		goto out;
	have_blocker = true;
	while (!atomic_load(&b->tid))
		sched_yield();
	key = (uint32_t)atomic_load(&b->tid);
	err = lab_bpf_map_update_elem(maps->tids_fd, &key, &vp, BPF_ANY);
	if (err)
		goto out;
	registered = true;
	err = lab_spawn_on_cpu(&bystander, cpu, -1, 0, up_burst_bystander, b);
	if (err)
		goto out;
	have_bystander = true;

	for (r = 0; r < rounds && !err; r++) {
		/* nobody reads the ring while the round runs */
		atomic_store(&b->go_round, r + 1);
		while (atomic_load(&b->done_round) <= r &&
		       !atomic_load(&b->err))
			usleep(200);
		err = atomic_load(&b->err);
		n = bpf_ring_consume(&ring, up_burst_record, b);
		if (n < 0 && !err)
			err = n;
		if (n > 0 && (uint64_t)n > out->max_batch)
			out->max_batch = (uint64_t)n;
	}
out:
	if (registered && lab_bpf_map_delete_elem(maps->tids_fd, &key) && !err)
		err = -EIO;
	atomic_store(&b->stop, 1);
	if (have_blocker)
		pthread_join(blocker, NULL);
	if (have_bystander)
		pthread_join(bystander, NULL);
	bpf_ring_consume(&ring, up_burst_record, b);
	out->blocks = (uint64_t)atomic_load(&b->done_round) * blocks_per_round;
	out->kernel_events = up_seq(slot, UP_KIND_BLOCK) - base_seq;
	out->records = ring.records;
	out->discarded = ring.discarded;
	out->lost =
		__atomic_load_n(&slot->ring_lost, __ATOMIC_ACQUIRE) - base_lost;
	__atomic_store_n(&slot->ring_kinds, 0, __ATOMIC_RELAXED);
	bpf_ring_close(&ring);
	munmap(vps, vps_len);
	free(b);
	return err;
}
