/*
 * Family `activations` (seeds 000, 002, 004): scheduler activations on
 * Linux -- an M:N fiber runtime with handoff on block.  What it measures:
 * a task's latency and the handoff's, from block to a spare running
 * fibers on the VP, with each way to survive a blocking call below.
 * Table IV's thread operations on this runtime are activations_table4.c.
 *
 * Anderson et al. give user-level threads the speed of a user-level
 * scheduler and the behaviour of kernel threads when they block: the
 * kernel upcalls the runtime on a fresh activation, which keeps the
 * virtual processor (VP) busy with another user-level thread; when the
 * blocked call returns, an unblock upcall hands its thread back to the
 * runtime and the old activation is discarded.
 *
 * The runtime: fibers (fiber.c: own stacks, our own context switch) run on
 * nr_vps virtual processors.  A VP is a token -- the owner word below --
 * and an activation (a kernel thread pinned to the VP's CPU) runs fibers
 * only while it owns one.  Each step of a task spins work_ns, then makes
 * the blocking call: read() of the fiber's timerfd, armed block_ns ahead
 * when the step's draw says "block" (probability p), or made readable at
 * once (TFD_IOC_SET_TICKS) when it says "don't".  What happens on a block:
 *
 *   none        nothing: the VP is lost until the call returns (N:1).
 *   futex_hint  the wrapper frees the VP and FUTEX_WAKEs a spare before
 *               every call, and tries to take the VP back after it
 *               (pessimistic handoff).
 *   syncfirst   preadv2(RWF_NOWAIT) first (timerfd: FMODE_NOWAIT since
 *               its ->read_iter conversion, Linux 6.9); hand off as
 *               futex_hint only on EAGAIN (seed 003's async()).
 *   monitor     the wrapper publishes "in a call since t" in the owner
 *               word; a monitor thread (Go's sysmon) takes VPs stuck
 *               longer than monitor_ns and wakes a spare for them.
 *   upcall      the upcall program (lab/families/upcall_bpf.c) on
 *               sched:sched_switch sees a registered activation block
 *               while its slot's ring_kinds says "in a fiber's call" and
 *               writes a ring record; the VP's spare, asleep in epoll on
 *               the ring, takes the VP with a CAS on the owner word; the
 *               returning activation's CAS fails (the unblock): it
 *               requeues its fiber and becomes a spare.
 *   uring       the call is an IORING_OP_READ of the timerfd (poll-armed:
 *               timerfd has FMODE_NOWAIT since 6.9, so no io-wq punt);
 *               the fiber switches away, the VP's loop reaps CQEs and
 *               sleeps in io_uring_enter() when nothing is runnable.
 *   pthreads    one kernel thread per in-flight task, same task code, on
 *               the VPs' CPUs; the kernel schedules (no VPs).
 *
 * A VP's owner word (its layout: above OW_ID_MASK below) changes by CAS
 * only: exactly one of "the taker's CAS" and "the returner's CAS"
 * succeeds.
 *
 * Fibers stay on their home VP (fiber i on VP i % nr_vps), so a VP's
 * blocked fiber is lost capacity of that VP, not hidden by another.
 *
 * Build: part of lab._native (native/build.py), -luring -lpthread.
 */
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <sys/uio.h>

#include "activations_internal.h"
#include "evict_internal.h"
#include "upcall_internal.h"

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t) /* Linux 3.17 */
#endif

#define ACT_STACK_SIZE (64 * 1024)
/* A phase that makes no progress for this long has hung: fail. */
#define ACT_PHASE_TIMEOUT_NS (120ull * 1000000000ull)
/* monitor: a VP in a call with nothing else to run is left alone this
 * long (Go's retake(): syscallwhen + 10 ms) */
#define ACT_MONITOR_IDLE_NS 10000000ull

/*
 * The owner word of a VP, one atomic uint64_t:
 *   bits 0-15   the owning activation's id + 1; 0: the VP is free
 *   bit 16      OW_SYS: the owner is inside a fiber's blocking call
 *   bits 32-63  a generation, bumped on every change, so a CAS from a
 *               stale view (a record of a call that already returned, a
 *               monitor tick that raced with the return) fails instead of
 *               taking a VP from a running owner
 * A new word is made from the one it replaces, by ow_running(),
 * ow_in_call() or ow_free(), so the generation always moves on.
 */
#define OW_ID_MASK 0xffffull
#define OW_SYS	   (1ull << 16)

#define ACT_PENDING (-100000) /* uring: no CQE yet */

/* fault, uffd: one page per blocking call, stamped with its number */
#define ACT_PAGE	  4096u
#define ACT_EVICT_TRIES	  8
#define ACT_HOT_STAMP	  0x686f74ull /* what a call that does not block reads */
#define ACT_PAGE_STAMP(k) (0x5a5a000000000000ull | (uint64_t)(k))

size_t activations_slot_size(void)
{
	return sizeof(struct up_vp);
}

/* ---- small helpers ------------------------------------------------------ */

static inline void act_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static inline bool act_stopped(struct act_rt *rt)
{
	return atomic_load_explicit(&rt->stop, memory_order_relaxed);
}

static void act_fail(struct act_rt *rt, int err)
{
	int zero = 0;

	atomic_compare_exchange_strong(&rt->err, &zero, err);
	atomic_store(&rt->stop, 1);
	/* the main thread waits for the phase's end: tell it now */
	futex_wake((uint32_t *)&rt->parked, INT32_MAX);
	futex_wake((uint32_t *)&rt->t4.done, INT32_MAX);
}

static inline uint64_t ow_next(uint64_t w, uint64_t owner)
{
	return (((w >> 32) + 1) << 32) | owner;
}

/* activation id owns the VP and runs fibers on it */
static inline uint64_t ow_running(uint64_t w, uint32_t id)
{
	return ow_next(w, id + 1);
}

/* activation id owns the VP and is inside a fiber's blocking call */
static inline uint64_t ow_in_call(uint64_t w, uint32_t id)
{
	return ow_next(w, OW_SYS | (id + 1));
}

static inline uint64_t ow_free(uint64_t w)
{
	return ow_next(w, 0);
}

static inline bool ow_is_free(uint64_t w)
{
	return !(w & OW_ID_MASK);
}

static inline bool ow_is_in_call(uint64_t w)
{
	return w & OW_SYS;
}

/* the owner's id (of a VP that is not free) */
static inline uint32_t ow_owner(uint64_t w)
{
	return (uint32_t)(w & OW_ID_MASK) - 1;
}

/* splitmix64: decorrelates the per-task streams of one seed */
static uint64_t act_seed(uint64_t seed, uint64_t task)
{
	uint64_t z = seed + (task + 1) * 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return z ? z : 0x2545f4914f6cdd1dull;
}

/* xorshift64*: does this step's call block? */
static inline bool act_draw(uint64_t *s, double p)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return (double)((x * 0x2545f4914f6cdd1dull) >> 11) * 0x1.0p-53 < p;
}

uint64_t act_calibrate(void)
{
	static _Atomic uint64_t cached;
	uint64_t best = 0, t0, dt, rate;
	int r;

	if (atomic_load(&cached))
		return atomic_load(&cached);
	/* the fastest of a few rounds: the ones without an interruption */
	for (r = 0; r < 7; r++) {
		t0 = now_ns();
		act_spin(200000);
		dt = now_ns() - t0;
		rate = dt ? 200000ull * 1000 / dt : 0;
		if (rate > best)
			best = rate;
	}
	if (!best)
		best = 1000;
	atomic_store(&cached, best);
	return best;
}

/* born on its CPUs: no first instants elsewhere */
static int act_spawn(pthread_t *t, const int *cpus, uint32_t nr_cpus,
		     void *(*fn)(void *), void *arg)
{
	cpu_set_t set;
	uint32_t i;

	CPU_ZERO(&set);
	for (i = 0; i < nr_cpus; i++)
		CPU_SET(cpus[i], &set);
	return lab_spawn_pinned(t, &set, -1, 0, fn, arg);
}

/* ---- instrumentation: who runs fiber code ------------------------------- */

/* An activation enters fiber code: the count of activations doing so at
 * once must never exceed nr_vps (the invariant the tests check). */
static inline void act_run_on(struct act_activation *a)
{
	struct act_rt *rt = a->rt;
	int32_t n, m;

	if (!rt->instrument)
		return;
	n = atomic_fetch_add(&rt->running, 1) + 1;
	m = atomic_load_explicit(&rt->max_running, memory_order_relaxed);
	while (n > m && !atomic_compare_exchange_weak(&rt->max_running, &m, n))
		;
	a->on = true;
	a->t_on = now_ns();
}

static inline void act_run_off(struct act_activation *a)
{
	if (!a->on)
		return;
	a->on = false;
	atomic_fetch_sub(&a->rt->running, 1);
	a->st.vp_busy_ns += now_ns() - a->t_on;
}

static void act_record_handoff(struct act_activation *a)
{
	struct act_rt *rt = a->rt;
	uint64_t now, idx;

	if (!a->handoff_from)
		return;
	now = now_ns();
	if (rt->instrument && atomic_load(&rt->counting)) {
		idx = atomic_fetch_add(&rt->nr_handoff, 1);
		if (idx < rt->handoff_cap)
			rt->handoff_ns[idx] =
				now > a->handoff_from ?
					(double)(now - a->handoff_from) :
					0.0;
		else
			a->st.handoff_dropped++;
	}
	a->handoff_from = 0;
}

/* ---- a VP's ready queue (vp_push: activations_internal.h) --------------- */

static struct act_fiber *vp_pop(struct act_vp *vp)
{
	struct act_fiber *f;

	pthread_mutex_lock(&vp->lock);
	f = vp->head;
	if (f) {
		vp->head = f->next;
		if (!vp->head)
			vp->tail = NULL;
		f->next = NULL;
	}
	pthread_mutex_unlock(&vp->lock);
	return f;
}

static bool vp_empty(struct act_vp *vp)
{
	bool empty;

	pthread_mutex_lock(&vp->lock);
	empty = vp->head == NULL;
	pthread_mutex_unlock(&vp->lock);
	return empty;
}

/* The owner has nothing to run: sleep until a push (or the stop). */
static void vp_idle(struct act_activation *a)
{
	struct act_vp *vp = a->vp;
	uint32_t w = atomic_load(&vp->work_word);

	atomic_store(&vp->idle, 1);
	if (vp_empty(vp) && !act_stopped(a->rt))
		act_futex_wait_ms(&vp->work_word, w, ACT_WAIT_SLICE_MS);
	atomic_store(&vp->idle, 0);
}

/* ---- the blocking call ----------------------------------------------------- */

/*
 * fault, uffd: the call is a read of one word.  A fresh page faults: the
 * thread sleeps in the kernel until the disk read (fault) or the handler's
 * UFFDIO_COPY (uffd) ends it; the thread's own fault counts say it
 * faulted.  A uffd fault counts as minor on this kernel: handle_userfault()
 * under the per-VMA lock returns VM_FAULT_RETRY unaccounted, and the retry
 * under mmap_lock finds the copied page present.  getrusage() on the
 * thread that faulted, before the call can hand the fiber to another
 * activation.
 */
static ssize_t act_touch(struct act_fiber *f)
{
	struct rusage r0, r1;
	uint64_t v;

	if (!f->touch_blocks)
		return *f->touch == f->expect ? (ssize_t)sizeof(f->ticks) :
						-EIO;
	if (getrusage(RUSAGE_THREAD, &r0) < 0)
		return -errno;
	v = *f->touch;
	if (getrusage(RUSAGE_THREAD, &r1) < 0)
		return -errno;
	f->act->st.majflt += (uint64_t)(r1.ru_majflt - r0.ru_majflt);
	if (r1.ru_majflt + r1.ru_minflt > r0.ru_majflt + r0.ru_minflt)
		f->faulted = true;
	return v == f->expect ? (ssize_t)sizeof(f->ticks) : -EIO;
}

static ssize_t act_read(struct act_fiber *f)
{
	ssize_t n;

	if (f->rt->block_kind != ACT_BLOCK_TIMERFD)
		return act_touch(f);
	do
		n = read(f->tfd, &f->ticks, sizeof(f->ticks));
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

/* syncfirst's try: -EAGAIN if the call would block. */
static ssize_t act_read_nowait(struct act_fiber *f)
{
	struct iovec iov = { &f->ticks, sizeof(f->ticks) };
	struct pollfd pfd = { .fd = f->tfd, .events = POLLIN };
	ssize_t n;

	if (!f->rt->nowait_by_poll) {
		do
			n = preadv2(f->tfd, &iov, 1, -1, RWF_NOWAIT);
		while (n < 0 && errno == EINTR);
		if (n >= 0 || errno != EOPNOTSUPP)
			return n < 0 ? -errno : n;
		/* timerfd before its ->read_iter (Linux 6.9): no
		 * FMODE_NOWAIT; a zero-timeout poll is the try */
		f->rt->nowait_by_poll = true;
	}
	if (poll(&pfd, 1, 0) < 0)
		return -errno;
	if (!(pfd.revents & POLLIN))
		return -EAGAIN;
	return act_read(f);
}

/* Make the step's call block for block_ns (fault, uffd: touch the next
 * fresh page, *page), or return at once. */
static int act_arm(struct act_rt *rt, struct act_fiber *f, bool blocks,
		   uint64_t *page)
{
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };
	uint64_t one = 1, ns = rt->cfg->block_ns;
	int flags = 0;

	if (rt->block_kind != ACT_BLOCK_TIMERFD) {
		f->touch_blocks = blocks;
		if (!blocks) {
			f->touch = &rt->hot;
			f->expect = ACT_HOT_STAMP;
			return 0;
		}
		if (*page >= rt->nr_pages)
			return -EOVERFLOW; /* the draws were counted wrong */
		f->touch = (const volatile uint64_t *)(rt->pages +
						       *page * ACT_PAGE);
		f->expect = ACT_PAGE_STAMP(*page);
		(*page)++;
		return 0;
	}
	if (!blocks && rt->ready_by_ioctl)
		return ioctl(f->tfd, TFD_IOC_SET_TICKS, &one) < 0 ? -errno : 0;
	if (blocks) {
		its.it_value.tv_sec = (time_t)(ns / 1000000000ull);
		its.it_value.tv_nsec = (long)(ns % 1000000000ull);
	} else {
		/* no TFD_IOC_SET_TICKS (CONFIG_CHECKPOINT_RESTORE off): an
		 * absolute deadline long past fires within the hrtimer's
		 * minimum delta, during the next step's work */
		its.it_value.tv_nsec = 1;
		flags = TFD_TIMER_ABSTIME;
	}
	return timerfd_settime(f->tfd, flags, &its, NULL) < 0 ? -errno : 0;
}

/*
 * After the call: is the VP still ours?  w_sys != 0: we published it as
 * "in a call" (monitor, upcall): the CAS back succeeds unless a taker's
 * CAS came first.  Then a free VP (futex_hint, syncfirst, or one the
 * monitor freed and no spare took yet) is taken back.  Else the VP runs
 * on another activation: requeue the fiber and become a spare -- the
 * paper's unblock upcall, which hands the thread back to the user-level
 * scheduler and discards the old activation.
 */
static ssize_t act_call_return(struct act_fiber *f, struct act_activation *a,
			       uint64_t w_sys, ssize_t n)
{
	struct act_vp *vp = f->vp;
	uint64_t w = w_sys;

	if (w_sys && atomic_compare_exchange_strong(&vp->owner, &w,
						    ow_running(w_sys, a->id))) {
		a->st.returned_first += f->blocked;
		goto kept;
	}
	w = atomic_load(&vp->owner);
	while (ow_is_free(w)) {
		if (atomic_compare_exchange_weak(&vp->owner, &w,
						 ow_running(w, a->id))) {
			a->st.retakes++;
			goto kept;
		}
	}
	atomic_fetch_sub(&vp->in_call, 1);
	a->owns = false;
	a->st.lost_vps++;
	f->state = FS_LOST;
	lab_fiber_switch(&f->ctx, &a->sched);
	/* resumed by the VP's owner, which counted us in */
	return n;
kept:
	a->owns = true;
	act_run_on(a);
	atomic_fetch_sub(&vp->in_call, 1);
	return n;
}

/* futex_hint, syncfirst after EAGAIN: free the VP, wake a spare, call. */
static ssize_t act_call_handoff(struct act_fiber *f, struct act_activation *a,
				uint64_t t_event)
{
	struct act_vp *vp = f->vp;
	uint64_t w = atomic_load(&vp->owner);
	ssize_t n;

	atomic_fetch_add(&vp->in_call, 1);
	act_run_off(a);
	atomic_store(&vp->t_event, t_event);
	atomic_store_explicit(&vp->owner, ow_free(w), memory_order_release);
	a->owns = false;
	atomic_fetch_add(&vp->spare_word, 1);
	if (futex_wake((uint32_t *)&vp->spare_word, 1) > 0)
		a->st.spare_wakeups++;
	n = act_read(f);
	return act_call_return(f, a, 0, n);
}

/* monitor, upcall: stay the owner, marked "in a call" for the watcher. */
static ssize_t act_call_sys(struct act_fiber *f, struct act_activation *a)
{
	struct act_rt *rt = f->rt;
	struct act_vp *vp = f->vp;
	/* no spare, no reader of the ring: leave the upcall unarmed */
	struct up_vp *slot = rt->slots && rt->cfg->spares ? &rt->slots[a->id] :
							    NULL;
	uint64_t w = atomic_load(&vp->owner), w_sys, entry = 0;
	ssize_t n;

	f->blocked = false;
	w_sys = ow_in_call(w, a->id);
	if (slot) {
		entry = __atomic_load_n(&slot->block_seq, __ATOMIC_ACQUIRE);
		atomic_store(&a->entry_seq, entry);
		atomic_store(&a->in_sys, 1);
	}
	atomic_fetch_add(&vp->in_call, 1);
	act_run_off(a);
	if (rt->variant == ACT_MONITOR)
		atomic_store(&vp->since_ns, now_ns());
	atomic_store_explicit(&vp->owner, w_sys, memory_order_release);
	/* only this call's blocks are upcalls: the runtime's own futex and
	 * epoll waits leave ring_kinds 0 and write no record */
	if (slot)
		__atomic_store_n(&slot->ring_kinds, 1u << UP_KIND_BLOCK,
				 __ATOMIC_RELEASE);
	n = act_read(f);
	if (slot) {
		__atomic_store_n(&slot->ring_kinds, 0, __ATOMIC_RELEASE);
		f->blocked = __atomic_load_n(&slot->block_seq,
					     __ATOMIC_ACQUIRE) != entry;
		a->st.block_events += f->blocked;
		atomic_store(&a->in_sys, 0);
	}
	return act_call_return(f, a, w_sys, n);
}

static void act_uring_reap(struct act_vp *vp)
{
	struct io_uring_cqe *cqe;
	struct act_fiber *g;
	unsigned head, seen = 0;

	io_uring_for_each_cqe(&vp->ring, head, cqe)
	{
		g = io_uring_cqe_get_data(cqe);
		g->res = cqe->res;
		vp->waiting--;
		seen++;
		/* the submitting fiber itself may still be running */
		if (g->state == FS_WAIT)
			vp_push(vp, g);
	}
	io_uring_cq_advance(&vp->ring, seen);
}

/* uring: submit, switch away unless the CQE is already there. */
static ssize_t act_call_uring(struct act_fiber *f, struct act_activation *a)
{
	struct act_vp *vp = f->vp;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&vp->ring);
	int ret;

	if (!sqe)
		return -EBUSY;
	/* a stream: offset -1, the file position (as for a pipe) */
	io_uring_prep_read(sqe, f->tfd, &f->ticks, sizeof(f->ticks),
			   (uint64_t)-1);
	io_uring_sqe_set_data(sqe, f);
	f->res = ACT_PENDING;
	vp->waiting++;
	atomic_fetch_add(&vp->in_call, 1);
	do
		ret = io_uring_submit(&vp->ring);
	while (ret == -EINTR);
	if (ret != 1) {
		vp->waiting--;
		atomic_fetch_sub(&vp->in_call, 1);
		return ret < 0 ? ret : -EIO;
	}
	act_uring_reap(vp);
	if (f->res == ACT_PENDING) {
		f->state = FS_WAIT;
		lab_fiber_switch(&f->ctx, &a->sched);
	} else {
		a->st.inline_completions++;
	}
	atomic_fetch_sub(&vp->in_call, 1);
	return f->res;
}

/* The step's call as the variant makes it.  After a handoff the fiber may
 * continue on another activation: read f->act afresh, never keep it. */
static ssize_t act_call(struct act_fiber *f, bool blocks)
{
	struct act_activation *a = f->act;
	struct act_vp *vp = f->vp;
	ssize_t n;

	a->st.calls++;
	if (blocks)
		a->st.blocking_calls++;
	switch (f->rt->variant) {
	case ACT_NONE:
		atomic_fetch_add(&vp->in_call, 1);
		act_run_off(a);
		n = act_read(f);
		act_run_on(a);
		atomic_fetch_sub(&vp->in_call, 1);
		return n;
	case ACT_FUTEX_HINT:
		return act_call_handoff(f, a, now_ns());
	case ACT_SYNCFIRST:
		n = act_read_nowait(f);
		if (n != -EAGAIN)
			return n;
		a->st.eagain++;
		return act_call_handoff(f, a, now_ns());
	case ACT_MONITOR:
	case ACT_UPCALL:
		return act_call_sys(f, a);
	case ACT_URING:
		return act_call_uring(f, a);
	default:
		return act_read(f); /* pthreads */
	}
}

/* ---- tasks ---------------------------------------------------------------- */

static bool act_take_task(struct act_rt *rt, uint64_t *task)
{
	if (act_stopped(rt))
		return false;
	*task = atomic_fetch_add(&rt->next_task, 1);
	return *task < atomic_load(&rt->phase_end);
}

static int act_task(struct act_rt *rt, struct act_fiber *f, uint64_t task)
{
	const struct activations_config *cfg = rt->cfg;
	uint64_t rng = act_seed(cfg->seed, task), t0 = f->release_ns, t1;
	uint64_t page = rt->task_page ? rt->task_page[task] : 0;
	struct act_activation *a;
	bool blocks;
	uint32_t s;
	ssize_t n;
	int err;

	f->faulted = false;
	for (s = 0; s < cfg->steps; s++) {
		blocks = act_draw(&rng, cfg->p);
		act_spin(rt->work_loops);
		err = act_arm(rt, f, blocks, &page);
		if (err)
			return err;
		n = act_call(f, blocks);
		if (n != (ssize_t)sizeof(f->ticks))
			return n < 0 ? (int)n : -EIO;
		if (act_stopped(rt))
			return -ECANCELED;
	}
	t1 = now_ns();
	f->release_ns = t1; /* the next task arrives as this one ends */
	a = f->act;
	a->st.completions++;
	if (f->faulted)
		a->st.faults_taken++;
	if (atomic_fetch_add(&rt->done[task], 1))
		a->st.duplicate_completions++;
	if (task >= rt->warmup_tasks)
		rt->task_ns[task - rt->warmup_tasks] = (double)(t1 - t0);
	return 0;
}

static void act_parked(struct act_rt *rt)
{
	if (atomic_fetch_add(&rt->parked, 1) + 1 == rt->nr_fibers)
		futex_wake((uint32_t *)&rt->parked, 1);
}

/* A workload fiber: tasks until the phase has none left, then park. */
static void act_worker_body(struct act_fiber *f)
{
	struct act_rt *rt = f->rt;
	uint64_t task;
	int err;

	for (;;) {
		while (act_take_task(rt, &task)) {
			err = act_task(rt, f, task);
			if (err)
				act_fail(rt, err);
			/* a fiber only leaves its VP when its call blocks
			 * (and the variant hands off): yield between tasks,
			 * so every fiber keeps a task in flight and a task's
			 * latency includes its wait for the VP */
			f->state = FS_YIELD;
			lab_fiber_switch(&f->ctx, &f->act->sched);
		}
		f->state = FS_PARK;
		lab_fiber_switch(&f->ctx, &f->act->sched);
	}
}

static void act_fiber_entry(void *arg)
{
	struct act_fiber *f = arg;

	f->body(f);
	abort(); /* bodies never return */
}

/* ---- an activation: run fibers while owning the VP -------------------------- */

/* upcall: is another activation of a's VP blocked in a fiber's call, by
 * the kernel's own account (its slot's block_seq moved since the call
 * began, and the call has not returned)? */
static bool act_vp_kernel_blocked(struct act_activation *a)
{
	struct act_rt *rt = a->rt;
	struct act_activation *b;
	uint32_t i;

	for (i = a->vp->index; i < rt->nr_acts; i += rt->nr_vps) {
		b = &rt->acts[i];
		if (b != a && atomic_load(&b->in_sys) &&
		    __atomic_load_n(&rt->slots[i].block_seq,
				    __ATOMIC_ACQUIRE) !=
			    atomic_load(&b->entry_seq))
			return true;
	}
	return false;
}

static void act_dispatch(struct act_activation *a, struct act_fiber *f)
{
	struct act_rt *rt = a->rt;

	act_record_handoff(a);
	if (rt->instrument &&
	    atomic_load_explicit(&a->vp->in_call, memory_order_relaxed) > 0) {
		a->st.ran_while_blocked++;
		if (rt->variant == ACT_UPCALL && rt->slots &&
		    act_vp_kernel_blocked(a))
			a->st.ran_while_kernel_blocked++;
	}
	f->act = a;
	f->state = FS_RUN;
	a->cur = f;
	act_run_on(a);
	lab_fiber_switch(&a->sched, &f->ctx);
	act_run_off(a);
}

static void act_uring_wait(struct act_activation *a)
{
	struct io_uring_cqe *cqe;
	int ret;

	do
		ret = io_uring_wait_cqe(&a->vp->ring, &cqe);
	while (ret == -EINTR);
	if (ret < 0)
		act_fail(a->rt, ret);
}

static void act_schedule(struct act_activation *a)
{
	struct act_rt *rt = a->rt;
	struct act_vp *vp = a->vp;
	struct act_fiber *f;

	while (a->owns && !act_stopped(rt)) {
		if (rt->variant == ACT_URING)
			act_uring_reap(vp);
		f = vp_pop(vp);
		if (!f) {
			act_record_handoff(a);
			if (rt->variant == ACT_URING && vp->waiting)
				act_uring_wait(a);
			else
				vp_idle(a);
			continue;
		}
		act_dispatch(a, f);
		switch (f->state) {
		case FS_LOST:
			/* off its stack now: another activation may run it */
			vp_push(vp, f);
			break;
		case FS_PARK:
			act_parked(rt);
			break;
		case FS_YIELD:
			vp_push(vp, f);
			break;
		case FS_EXIT:
			pthread_mutex_lock(&vp->lock);
			f->next = vp->pool;
			vp->pool = f;
			pthread_mutex_unlock(&vp->lock);
			break;
		default: /* FS_WAIT: its CQE or its peer requeues it */
			break;
		}
	}
}

/* futex_hint, syncfirst, monitor: a free VP is taken by CAS. */
static bool act_take_free(struct act_activation *a)
{
	struct act_vp *vp = a->vp;
	uint64_t w = atomic_load(&vp->owner);

	if (!ow_is_free(w) || !atomic_compare_exchange_strong(
				      &vp->owner, &w, ow_running(w, a->id)))
		return false;
	a->owns = true;
	a->handoff_from = atomic_load(&vp->t_event);
	a->st.handoffs++;
	return true;
}

static void act_spare_futex(struct act_activation *a)
{
	struct act_vp *vp = a->vp;
	bool woken = false;
	uint32_t v;

	while (!act_stopped(a->rt)) {
		v = atomic_load(&vp->spare_word);
		if (act_take_free(a))
			return;
		if (woken)
			a->st.idle_spare_wakeups++;
		act_futex_wait_ms(&vp->spare_word, v, ACT_WAIT_SLICE_MS);
		woken = atomic_load(&vp->spare_word) != v;
	}
}

/* ---- upcall: the ring, the VP's spare asleep on it --------------------------- */

struct act_drain {
	struct act_activation *a;
	uint64_t poke; /* VPs with a live record: bit per VP */
};

static int act_on_record(void *ctx, const void *data, uint32_t len)
{
	struct act_drain *d = ctx;
	struct act_activation *a = d->a, *b;
	struct act_rt *rt = a->rt;
	const struct up_event *ev = data;

	a->st.ring_records++;
	if (len != sizeof(*ev) || ev->vp >= rt->nr_acts ||
	    ev->kind != UP_KIND_BLOCK) {
		a->st.ring_bad++;
		return 0;
	}
	b = &rt->acts[ev->vp];
	if ((int32_t)ev->tid != atomic_load(&b->tid)) {
		a->st.ring_bad++;
		return 0;
	}
	/* the call may have returned before anyone read the record */
	if (!atomic_load(&b->in_sys) || ev->seq <= atomic_load(&b->entry_seq))
		a->st.stale_upcalls++;
	else
		d->poke |= 1ull << b->vp->index;
	return 0;
}

/*
 * The ring is one for all VPs (the upcall program's), so every VP's spare
 * sleeps on it and a record wakes them all.  The records are only the
 * doorbell: who is blocked is read from the owner words and the slots'
 * block_seq.  Whoever drains a record for another VP pokes that VP's
 * eventfd, in case its spare was not yet asleep when the record came.
 */
static void act_ring_drain(struct act_activation *a)
{
	struct act_rt *rt = a->rt;
	struct act_drain d = { a, 0 };
	uint64_t one = 1;
	uint32_t zero = 0, i;
	int n;

	if (!atomic_compare_exchange_strong(&rt->ring_busy, &zero, 1)) {
		sched_yield();
		return;
	}
	n = bpf_ring_consume(&rt->ring, act_on_record, &d);
	atomic_store(&rt->ring_busy, 0);
	if (n < 0)
		act_fail(rt, n);
	d.poke &= ~(1ull << a->vp->index);
	for (i = 0; d.poke && i < rt->nr_vps; i++) {
		if (!(d.poke & (1ull << i)))
			continue;
		if (write(rt->vps[i].efd, &one, sizeof(one)) == sizeof(one))
			a->st.pokes++;
	}
}

/* The block upcall: the VP's owner is in a fiber's call and the kernel
 * saw it block there.  Take the VP; the event time is the program's. */
static bool act_take_blocked(struct act_activation *a)
{
	struct act_rt *rt = a->rt;
	struct act_vp *vp = a->vp;
	uint64_t w = atomic_load(&vp->owner), t;
	struct act_activation *b;
	struct up_vp *slot;

	if (!ow_is_in_call(w) || ow_is_free(w))
		return false;
	b = &rt->acts[ow_owner(w)];
	slot = &rt->slots[b->id];
	if (__atomic_load_n(&slot->block_seq, __ATOMIC_ACQUIRE) ==
	    atomic_load(&b->entry_seq))
		return false; /* in the call, not blocked (yet) */
	t = __atomic_load_n(&slot->block_ns, __ATOMIC_ACQUIRE);
	if (!atomic_compare_exchange_strong(&vp->owner, &w,
					    ow_running(w, a->id)))
		return false; /* it returned first */
	a->owns = true;
	a->handoff_from = t;
	a->st.handoffs++;
	return true;
}

static void act_ring_wait(struct act_activation *a)
{
	struct act_vp *vp = a->vp;
	struct epoll_event evs[2];
	uint64_t v;
	int n, i;

	while (!act_stopped(a->rt)) {
		act_ring_drain(a);
		if (act_take_blocked(a))
			return;
		n = epoll_wait(vp->epfd, evs, 2, ACT_WAIT_SLICE_MS);
		if (n < 0 && errno != EINTR) {
			act_fail(a->rt, -errno);
			return;
		}
		for (i = 0; i < n; i++)
			if (evs[i].data.u32 == 1 &&
			    read(vp->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				act_fail(a->rt, -errno);
	}
}

static void act_spare_upcall(struct act_activation *a)
{
	struct act_vp *vp = a->vp;
	uint32_t v, zero;

	while (!a->owns && !act_stopped(a->rt)) {
		v = atomic_load(&vp->spare_word);
		zero = 0;
		if (!atomic_compare_exchange_strong(&vp->ring_waiter, &zero,
						    1)) {
			act_futex_wait_ms(&vp->spare_word, v,
					  ACT_WAIT_SLICE_MS);
			continue;
		}
		act_ring_wait(a);
		atomic_store(&vp->ring_waiter, 0);
		/* the next block on this VP needs a spare on the ring before
		 * this one runs a fiber that may block */
		atomic_fetch_add(&vp->spare_word, 1);
		if (!act_stopped(a->rt) &&
		    futex_wake((uint32_t *)&vp->spare_word, 1) > 0)
			a->st.spare_wakeups++;
	}
}

static void *act_main(void *arg)
{
	struct act_activation *a = arg;
	struct act_rt *rt = a->rt;
	struct act_vp *vp = a->vp;
	uint32_t g;
	int err;

	atomic_store(&a->tid, (int32_t)gettid());
	if (rt->variant == ACT_URING && a->owns) {
		/* SINGLE_ISSUER (6.0): this thread is the ring's only
		 * submitter; the VP is never handed to another */
		err = io_uring_queue_init(rt->nr_fibers / rt->nr_vps + 2,
					  &vp->ring,
					  IORING_SETUP_SINGLE_ISSUER);
		if (err == -EINVAL)
			err = io_uring_queue_init(
				rt->nr_fibers / rt->nr_vps + 2, &vp->ring, 0);
		vp->ring_err = err;
		if (!err)
			atomic_store(&vp->have_ring, 1);
	}
	atomic_fetch_add(&rt->started, 1);
	futex_wake((uint32_t *)&rt->started, 1);
	while (!(g = atomic_load(&rt->go)))
		futex_wait((uint32_t *)&rt->go, 0);
	if (g != 1)
		return NULL; /* set-up failed elsewhere */

	while (!act_stopped(rt)) {
		if (a->owns)
			act_schedule(a);
		else if (rt->variant == ACT_UPCALL)
			act_spare_upcall(a);
		else
			act_spare_futex(a);
	}
	return NULL;
}

/* ---- monitor: Go's sysmon ------------------------------------------------------- */

static void *act_monitor_main(void *arg)
{
	struct act_rt *rt = arg;
	struct activations_counts *st = &rt->monitor_st;
	uint64_t period = rt->cfg->monitor_ns, next, now, w, since;
	struct act_vp *vp;
	struct timespec ts;
	uint32_t i;

	/* a 20 us period means nothing under the default 50 us slack */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	while (!act_stopped(rt)) {
		if (!atomic_load(&rt->phase_active)) {
			act_futex_wait_ms(&rt->phase_active, 0,
					  ACT_WAIT_SLICE_MS);
			continue;
		}
		next = now_ns() + period;
		while (atomic_load(&rt->phase_active) && !act_stopped(rt)) {
			ts.tv_sec = (time_t)(next / 1000000000ull);
			ts.tv_nsec = (long)(next % 1000000000ull);
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME,
					       &ts, NULL) == EINTR)
				;
			now = now_ns();
			next += period;
			if (next <= now)
				next = now + period;
			st->monitor_ticks++;
			for (i = 0; i < rt->nr_vps; i++) {
				vp = &rt->vps[i];
				w = atomic_load(&vp->owner);
				if (!ow_is_in_call(w))
					continue;
				since = atomic_load(&vp->since_ns);
				if (now < since + period)
					continue;
				/* as Go's retake(): only a VP with fibers
				 * waiting is worth a spare's wake-up */
				if (vp_empty(vp) &&
				    now < since + ACT_MONITOR_IDLE_NS)
					continue;
				atomic_store(&vp->t_event, since);
				if (!atomic_compare_exchange_strong(
					    &vp->owner, &w, ow_free(w)))
					continue; /* it returned */
				st->monitor_retakes++;
				atomic_fetch_add(&vp->spare_word, 1);
				if (futex_wake((uint32_t *)&vp->spare_word, 1) >
				    0)
					st->spare_wakeups++;
			}
		}
	}
	return NULL;
}

/* ---- pthreads: one kernel thread per in-flight task --------------------------- */

static void *act_pthread_main(void *arg)
{
	struct act_activation *a = arg;
	struct act_rt *rt = a->rt;
	struct act_fiber *f = a->thread_fiber;
	uint32_t seen = 0, ph;
	uint64_t task;
	int err;

	atomic_store(&a->tid, (int32_t)gettid());
	f->act = a;
	atomic_fetch_add(&rt->started, 1);
	futex_wake((uint32_t *)&rt->started, 1);
	for (;;) {
		while ((ph = atomic_load(&rt->phase_word)) == seen &&
		       !act_stopped(rt))
			act_futex_wait_ms(&rt->phase_word, ph,
					  ACT_WAIT_SLICE_MS);
		if (act_stopped(rt))
			break;
		seen = ph;
		while (act_take_task(rt, &task)) {
			/* the kernel runs it; "in task code" is not a VP */
			err = act_task(rt, f, task);
			if (err)
				act_fail(rt, err);
		}
		act_parked(rt);
	}
	return NULL;
}

/* ---- uffd: the runtime's fault handler ------------------------------------------ */

struct act_uffd_pending {
	uint64_t addr, deadline;
};

/* Resolve a page: its stamp, copied in; -EEXIST: it already was. */
static int act_uffd_copy(struct act_rt *rt, uint64_t addr)
{
	uint64_t k = (addr - (uint64_t)(uintptr_t)rt->pages) / ACT_PAGE;
	struct uffdio_copy copy = { .dst = addr,
				    .src = (uint64_t)(uintptr_t)rt->uffd_src,
				    .len = ACT_PAGE,
				    .mode = 0 };

	*(uint64_t *)rt->uffd_src = ACT_PAGE_STAMP(k);
	while (ioctl(rt->uffd, UFFDIO_COPY, &copy) < 0) {
		if (errno != EAGAIN)
			return -errno;
		/* a partial copy of one page is none: go again */
		copy.copy = 0;
	}
	return 0;
}

/*
 * The handler: asleep in ppoll() on the uffd; each fault message starts a
 * "disk read" of block_ns, and the page is copied in when it ends.  The
 * reads overlap (a disk with a queue): the handler sleeps until the
 * earliest one ends or a new message comes.  It stops only after every
 * activation is joined (uffd_quit): a fault it left would never end.
 */
static void *act_uffd_main(void *arg)
{
	struct act_rt *rt = arg;
	struct activations_counts *st = &rt->uffd_st;
	uint32_t cap = 2 * rt->nr_fibers_alloc + 2, n = 0, i, j;
	struct pollfd pfd[2] = { { .fd = rt->uffd, .events = POLLIN },
				 { .fd = rt->uffd_efd, .events = POLLIN } };
	struct act_uffd_pending *pend = calloc(cap, sizeof(*pend));
	uint64_t now, first, left, addr;
	struct uffd_msg msg;
	struct timespec ts;
	int err;

	if (!pend) {
		act_fail(rt, -ENOMEM);
		return NULL;
	}
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	while (!atomic_load(&rt->uffd_quit)) {
		now = now_ns();
		first = UINT64_MAX;
		for (i = 0; i < n; i++)
			if (pend[i].deadline < first)
				first = pend[i].deadline;
		left = first == UINT64_MAX ? ACT_WAIT_SLICE_MS * 1000000ull :
		       first > now	   ? first - now :
					     0;
		ts.tv_sec = (time_t)(left / 1000000000ull);
		ts.tv_nsec = (long)(left % 1000000000ull);
		if (ppoll(pfd, 2, &ts, NULL) < 0 && errno != EINTR) {
			act_fail(rt, -errno);
			break;
		}
		while (read(rt->uffd, &msg, sizeof(msg)) == sizeof(msg)) {
			if (msg.event != UFFD_EVENT_PAGEFAULT)
				continue;
			st->uffd_messages++;
			addr = msg.arg.pagefault.address &
			       ~(uint64_t)(ACT_PAGE - 1);
			/* a fault retried (a signal) asks again: one read */
			for (i = 0; i < n && pend[i].addr != addr; i++)
				;
			if (i < n)
				continue;
			if (n == cap) {
				act_fail(rt, -EOVERFLOW);
				break;
			}
			pend[n].addr = addr;
			pend[n++].deadline = now_ns() + rt->cfg->block_ns;
		}
		now = now_ns();
		for (i = 0; i < n;) {
			if (pend[i].deadline > now) {
				i++;
				continue;
			}
			/* counted first: the copy wakes the fiber, whose
			 * task may close the window before we go on */
			__atomic_fetch_add(&st->uffd_resolved, 1,
					   __ATOMIC_RELEASE);
			err = act_uffd_copy(rt, pend[i].addr);
			if (err)
				__atomic_fetch_sub(&st->uffd_resolved, 1,
						   __ATOMIC_RELEASE);
			if (err && err != -EEXIST)
				act_fail(rt, err);
			for (j = i + 1; j < n; j++)
				pend[j - 1] = pend[j];
			n--;
		}
	}
	free(pend);
	return NULL;
}

/* ---- fault, uffd: the pages ------------------------------------------------------ */

/* The draws of every task, replayed: page k is the k-th blocking call's
 * (tasks in order), so each call that blocks touches a page of its own. */
static int act_count_pages(struct act_rt *rt)
{
	const struct activations_config *cfg = rt->cfg;
	uint64_t total = cfg->warmup_tasks + cfg->tasks, t, rng, k = 0;
	uint32_t s;

	rt->task_page = calloc(total, sizeof(*rt->task_page));
	if (!rt->task_page)
		return -ENOMEM;
	for (t = 0; t < total; t++) {
		rt->task_page[t] = (uint32_t)k;
		rng = act_seed(cfg->seed, t);
		for (s = 0; s < cfg->steps; s++)
			k += act_draw(&rng, cfg->p);
		if (k > ACT_MAX_FAULT_PAGES)
			return -E2BIG;
	}
	rt->nr_pages = k;
	rt->pages_len = (k ? k : 1) * ACT_PAGE;
	return 0;
}

/* fault: a scratch file of stamped pages, mapped read-only and shared,
 * then evicted; MADV_RANDOM: a fault reads its page and no readahead. */
static int act_fault_setup(struct act_rt *rt)
{
	uint64_t chunk = 16, k, i, nr = rt->pages_len / ACT_PAGE;
	unsigned char *buf, *vec;
	void *map;
	int err = 0;

	rt->file_fd = open(rt->cfg->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (rt->file_fd < 0)
		return -errno;
	buf = calloc(chunk, ACT_PAGE);
	if (!buf)
		return -ENOMEM;
	for (k = 0; k < nr && !err; k += chunk) {
		for (i = 0; i < chunk; i++)
			*(uint64_t *)(buf + i * ACT_PAGE) =
				ACT_PAGE_STAMP(k + i);
		i = nr - k < chunk ? nr - k : chunk;
		if (pwrite(rt->file_fd, buf, i * ACT_PAGE,
			   (off_t)(k * ACT_PAGE)) != (ssize_t)(i * ACT_PAGE))
			err = errno ? -errno : -ENOSPC;
	}
	free(buf);
	if (!err && fsync(rt->file_fd) < 0)
		err = -errno;
	if (err)
		return err;
	map = mmap(NULL, rt->pages_len, PROT_READ, MAP_SHARED, rt->file_fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	rt->pages = map;
	if (madvise(map, rt->pages_len, MADV_RANDOM) < 0)
		return -errno;
	vec = malloc(nr);
	if (!vec)
		return -ENOMEM;
	err = lab_evict_file(rt->file_fd, map, rt->pages_len, vec,
			     ACT_EVICT_TRIES);
	free(vec);
	return err;
}

/* uffd: an anonymous range, every page missing, registered for
 * missing-page faults; the handler's fd is non-blocking (it polls). */
static int act_uffd_setup(struct act_rt *rt)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	void *map;

	map = mmap(NULL, rt->pages_len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (map == MAP_FAILED)
		return -errno;
	rt->pages = map;
	rt->uffd_src = aligned_alloc(ACT_PAGE, ACT_PAGE);
	if (!rt->uffd_src)
		return -ENOMEM;
	memset(rt->uffd_src, 0x5a, ACT_PAGE);
	rt->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (rt->uffd < 0)
		return -errno;
	if (ioctl(rt->uffd, UFFDIO_API, &api) < 0)
		return -errno;
	reg.range.start = (uint64_t)(uintptr_t)map;
	reg.range.len = rt->pages_len;
	if (ioctl(rt->uffd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	rt->uffd_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return rt->uffd_efd < 0 ? -errno : 0;
}

static int act_pages_setup(struct act_rt *rt)
{
	int err = act_count_pages(rt);

	rt->hot = ACT_HOT_STAMP;
	if (err)
		return err;
	if (rt->block_kind == ACT_BLOCK_FAULT)
		return act_fault_setup(rt);
	return act_uffd_setup(rt);
}

static void act_pages_teardown(struct act_rt *rt)
{
	uint64_t one = 1;

	if (rt->have_uffd_thread) {
		atomic_store(&rt->uffd_quit, 1);
		if (write(rt->uffd_efd, &one, sizeof(one)) < 0)
			act_fail(rt, -errno);
		pthread_join(rt->uffd_thread, NULL);
	}
	if (rt->uffd >= 0)
		close(rt->uffd);
	if (rt->uffd_efd >= 0)
		close(rt->uffd_efd);
	if (rt->pages)
		munmap(rt->pages, rt->pages_len);
	if (rt->file_fd >= 0)
		close(rt->file_fd);
	free(rt->uffd_src);
	free(rt->task_page);
}

/* ---- set-up and tear-down ------------------------------------------------------- */

static int act_upcall_setup(struct act_rt *rt)
{
	const struct activations_config *cfg = rt->cfg;
	struct epoll_event ev = { .events = EPOLLIN };
	struct act_drain d;
	struct act_vp *vp;
	uint32_t i;
	int err;

	err = up_map_slots_n(cfg->vps_fd, rt->nr_acts, &rt->slots,
			     &rt->slots_len);
	if (err)
		return err;
	rt->tids_fd = cfg->tids_fd;
	for (i = 0; i < rt->nr_acts; i++) {
		struct up_vp *s = &rt->slots[i];

		__atomic_store_n(&s->ring_kinds, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&s->ring_if_sleeping, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&s->sleeping, 0, __ATOMIC_RELAXED);
		rt->base_lost +=
			__atomic_load_n(&s->ring_lost, __ATOMIC_ACQUIRE);
	}
	err = bpf_ring_open(&rt->ring, cfg->ring_fd);
	if (err)
		return err;
	rt->have_ring = true;
	/* a program reused across runs (tests) may hold earlier records */
	memset(&d, 0, sizeof(d));
	d.a = &rt->acts[0];
	err = bpf_ring_consume(&rt->ring, act_on_record, &d);
	if (err < 0)
		return err;
	memset(&rt->acts[0].st, 0, sizeof(rt->acts[0].st));
	for (i = 0; i < rt->nr_vps; i++) {
		vp = &rt->vps[i];
		vp->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->efd < 0)
			return -errno;
		vp->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (vp->epfd < 0)
			return -errno;
		ev.data.u32 = 0;
		if (epoll_ctl(vp->epfd, EPOLL_CTL_ADD, cfg->ring_fd, &ev) < 0)
			return -errno;
		ev.data.u32 = 1;
		if (epoll_ctl(vp->epfd, EPOLL_CTL_ADD, vp->efd, &ev) < 0)
			return -errno;
	}
	return 0;
}

/* Start every thread; register the activations with the upcall program. */
int act_start(struct act_rt *rt)
{
	const struct activations_config *cfg = rt->cfg;
	uint64_t deadline = now_ns() + 10000000000ull;
	struct act_activation *a;
	uint32_t i, n, key, val;
	int err;

	for (i = 0; i < rt->nr_acts; i++) {
		a = &rt->acts[i];
		if (rt->variant == ACT_PTHREADS)
			err = act_spawn(&a->thread, cfg->vp_cpus, rt->nr_vps,
					act_pthread_main, a);
		else
			err = act_spawn(&a->thread, &a->vp->cpu, 1, act_main,
					a);
		if (err)
			return err;
		a->have_thread = true;
	}
	while ((n = atomic_load(&rt->started)) < rt->nr_acts) {
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		act_futex_wait_ms(&rt->started, n, ACT_WAIT_SLICE_MS);
	}
	for (i = 0; i < rt->nr_vps; i++)
		if (rt->vps[i].ring_err)
			return rt->vps[i].ring_err;
	if (rt->variant == ACT_UPCALL) {
		/* from here on, each activation's blocks inside a fiber's
		 * call are upcalls (ring_kinds says which are) */
		for (i = 0; i < rt->nr_acts; i++) {
			key = (uint32_t)atomic_load(&rt->acts[i].tid);
			val = i;
			err = lab_bpf_map_update_elem(rt->tids_fd, &key, &val,
						      BPF_ANY);
			if (err)
				return err;
		}
	}
	if (rt->block_kind == ACT_BLOCK_UFFD) {
		/* on the runtime's CPUs, as a runtime thread */
		err = act_spawn(&rt->uffd_thread, cfg->vp_cpus, rt->nr_vps,
				act_uffd_main, rt);
		if (err)
			return err;
		rt->have_uffd_thread = true;
	}
	if (rt->variant == ACT_MONITOR) {
		/* not pinned: it runs wherever a VP's CPU is free (the CPU of
		 * a VP stuck in a call is idle), as Go's sysmon has no P */
		err = act_spawn(&rt->monitor, cfg->vp_cpus, rt->nr_vps,
				act_monitor_main, rt);
		if (err)
			return err;
		rt->have_monitor = true;
	}
	return 0;
}

static void act_wake_all(struct act_rt *rt)
{
	uint64_t one = 1;
	uint32_t i;

	atomic_store(&rt->stop, 1);
	atomic_store(&rt->go, atomic_load(&rt->go) ? atomic_load(&rt->go) : 2);
	futex_wake((uint32_t *)&rt->go, INT32_MAX);
	atomic_fetch_add(&rt->phase_word, 1);
	futex_wake((uint32_t *)&rt->phase_word, INT32_MAX);
	atomic_store(&rt->phase_active, 0);
	futex_wake((uint32_t *)&rt->phase_active, INT32_MAX);
	for (i = 0; rt->vps && i < rt->nr_vps; i++) {
		struct act_vp *vp = &rt->vps[i];

		atomic_fetch_add(&vp->work_word, 1);
		futex_wake((uint32_t *)&vp->work_word, INT32_MAX);
		atomic_fetch_add(&vp->spare_word, 1);
		futex_wake((uint32_t *)&vp->spare_word, INT32_MAX);
		if (vp->efd >= 0 && write(vp->efd, &one, sizeof(one)) < 0)
			continue;
	}
}

void act_teardown(struct act_rt *rt)
{
	uint32_t i, key;

	act_wake_all(rt);
	for (i = 0; rt->acts && i < rt->nr_acts; i++)
		if (rt->acts[i].have_thread)
			pthread_join(rt->acts[i].thread, NULL);
	if (rt->have_monitor)
		pthread_join(rt->monitor, NULL);
	/* after the activations: none is left in a fault */
	act_pages_teardown(rt);
	if (rt->slots) {
		for (i = 0; i < rt->nr_acts; i++) {
			__atomic_store_n(&rt->slots[i].ring_kinds, 0,
					 __ATOMIC_RELAXED);
			key = (uint32_t)atomic_load(&rt->acts[i].tid);
			/* never registered: -ENOENT, nothing to undo */
			if (key && rt->tids_fd >= 0)
				lab_bpf_map_delete_elem(rt->tids_fd, &key);
		}
		munmap(rt->slots, rt->slots_len);
	}
	if (rt->have_ring)
		bpf_ring_close(&rt->ring);
	for (i = 0; rt->vps && i < rt->nr_vps; i++) {
		struct act_vp *vp = &rt->vps[i];

		if (atomic_load(&vp->have_ring))
			io_uring_queue_exit(&vp->ring);
		if (vp->epfd >= 0)
			close(vp->epfd);
		if (vp->efd >= 0)
			close(vp->efd);
		pthread_mutex_destroy(&vp->lock);
	}
	for (i = 0; rt->fibers && i < rt->nr_fibers_alloc; i++) {
		/* parked fibers sit inside lab_fiber_switch: just unmap */
		lab_fiber_deinit(&rt->fibers[i].ctx);
		if (rt->fibers[i].tfd >= 0)
			close(rt->fibers[i].tfd);
	}
	free(rt->fibers);
	free(rt->acts);
	free(rt->vps);
	free((void *)rt->done);
}

struct act_rt *act_rt_create(const struct activations_config *cfg)
{
	/* aligned_alloc() wants a multiple of the alignment */
	size_t size = (sizeof(struct act_rt) + LAB_CACHELINE - 1) &
		      ~(size_t)(LAB_CACHELINE - 1);
	struct act_rt *rt = aligned_alloc(LAB_CACHELINE, size);

	if (!rt)
		return NULL;
	memset(rt, 0, size);
	rt->cfg = cfg;
	rt->variant = cfg->variant;
	rt->tids_fd = -1;
	rt->block_kind = cfg->block_kind;
	rt->file_fd = rt->uffd = rt->uffd_efd = -1;
	return rt;
}

/*
 * Per VP an owner and `spares` spares; every fiber gets a timerfd.
 * rt->instrument is the caller's to set.
 */
int act_setup(struct act_rt *rt, uint32_t extra)
{
	const struct activations_config *cfg = rt->cfg;
	uint32_t i, per_vp;
	struct act_fiber *f;
	uint64_t one = 1;
	int err, fd;

	rt->nr_vps = cfg->nr_vps;
	rt->nr_fibers = cfg->concurrency;
	rt->nr_fibers_alloc = rt->nr_fibers + extra;
	if (rt->variant == ACT_PTHREADS) {
		rt->nr_acts = cfg->concurrency;
	} else {
		per_vp = 1 +
			 (rt->variant == ACT_NONE || rt->variant == ACT_URING ?
				  0 :
				  cfg->spares);
		rt->nr_acts = rt->nr_vps * per_vp;
	}
	/* each array made safe for act_teardown() before the next one is
	 * allocated: no fd 0 closed on the way out of a failed set-up */
	rt->vps = calloc(rt->nr_vps, sizeof(*rt->vps));
	if (!rt->vps)
		return -ENOMEM;
	for (i = 0; i < rt->nr_vps; i++) {
		struct act_vp *vp = &rt->vps[i];

		vp->index = i;
		vp->cpu = cfg->vp_cpus[i];
		vp->efd = vp->epfd = -1;
		pthread_mutex_init(&vp->lock, NULL);
	}
	rt->fibers = calloc(rt->nr_fibers_alloc ? rt->nr_fibers_alloc : 1,
			    sizeof(*rt->fibers));
	if (!rt->fibers)
		return -ENOMEM;
	for (i = 0; i < rt->nr_fibers_alloc; i++)
		rt->fibers[i].tfd = -1;
	rt->acts = calloc(rt->nr_acts, sizeof(*rt->acts));
	rt->done =
		calloc(cfg->warmup_tasks + cfg->tasks + 1, sizeof(*rt->done));
	if (!rt->acts || !rt->done)
		return -ENOMEM;
	for (i = 0; i < rt->nr_acts; i++) {
		struct act_activation *a = &rt->acts[i];

		a->rt = rt;
		a->id = i;
		/* activation i belongs to VP i % nr_vps; the first nr_vps
		 * own their VPs, the rest start as spares */
		a->vp = &rt->vps[i % rt->nr_vps];
		if (rt->variant != ACT_PTHREADS && i < rt->nr_vps) {
			a->owns = true;
			atomic_store(&a->vp->owner, ow_running(0, i));
		}
	}

	/* TFD_IOC_SET_TICKS needs CONFIG_CHECKPOINT_RESTORE */
	fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	rt->ready_by_ioctl = ioctl(fd, TFD_IOC_SET_TICKS, &one) == 0;
	close(fd);

	for (i = 0; i < rt->nr_fibers_alloc; i++) {
		f = &rt->fibers[i];
		f->rt = rt;
		f->vp = &rt->vps[i % rt->nr_vps];
		f->body = act_worker_body;
		f->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
		if (f->tfd < 0)
			return -errno;
		if (rt->variant == ACT_PTHREADS) {
			rt->acts[i].thread_fiber = f;
			continue;
		}
		err = lab_fiber_init(&f->ctx, ACT_STACK_SIZE, act_fiber_entry,
				     f);
		if (err)
			return err;
	}
	if (rt->block_kind != ACT_BLOCK_TIMERFD) {
		err = act_pages_setup(rt);
		if (err)
			return err;
	}
	if (rt->variant == ACT_UPCALL)
		return act_upcall_setup(rt);
	return 0;
}

/* Run tasks [begin, end) to completion: every fiber parks at the end. */
static int act_phase(struct act_rt *rt, uint64_t begin, uint64_t end)
{
	uint64_t deadline = now_ns() + ACT_PHASE_TIMEOUT_NS, t;
	uint32_t i, n;

	/* every fiber's (thread's) first task is released now */
	t = now_ns();
	for (i = 0; i < rt->nr_fibers; i++)
		rt->fibers[i].release_ns = t;
	atomic_store(&rt->parked, 0);
	atomic_store(&rt->phase_end, end);
	atomic_store(&rt->next_task, begin);
	atomic_store(&rt->phase_active, 1);
	futex_wake((uint32_t *)&rt->phase_active, INT32_MAX);
	if (rt->variant == ACT_PTHREADS) {
		atomic_fetch_add(&rt->phase_word, 1);
		futex_wake((uint32_t *)&rt->phase_word, INT32_MAX);
	} else {
		for (i = 0; i < rt->nr_fibers; i++)
			vp_push(rt->fibers[i].vp, &rt->fibers[i]);
	}
	while ((n = atomic_load(&rt->parked)) < rt->nr_fibers) {
		if (atomic_load(&rt->err))
			break;
		if (now_ns() > deadline) {
			act_fail(rt, -ETIMEDOUT);
			break;
		}
		act_futex_wait_ms(&rt->parked, n, ACT_WAIT_SLICE_MS);
	}
	atomic_store(&rt->phase_active, 0);
	return atomic_load(&rt->err);
}

/* Every thread's counts, the monitor's too (quiescent: between phases). */
static void act_sum(struct act_rt *rt, struct activations_counts *sum)
{
	const struct activations_counts *c;
	uint32_t i;

	memset(sum, 0, sizeof(*sum));
	for (i = 0; i <= rt->nr_acts + 1; i++) {
		c = i < rt->nr_acts  ? &rt->acts[i].st :
		    i == rt->nr_acts ? &rt->monitor_st :
				       &rt->uffd_st;
#define ACT_ADD(name) sum->name += __atomic_load_n(&c->name, __ATOMIC_RELAXED);
		ACTIVATIONS_COUNTERS(ACT_ADD)
#undef ACT_ADD
	}
}

static void act_delta(struct activations_counts *out,
		      const struct activations_counts *before,
		      const struct activations_counts *after)
{
#define ACT_SUB(name) out->name = after->name - before->name;
	ACTIVATIONS_COUNTERS(ACT_SUB)
#undef ACT_SUB
}

static uint64_t act_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int act_check(const struct activations_config *cfg)
{
	uint32_t i, per_vp;

	if (cfg->variant < 0 || cfg->variant >= ACT_NR_VARIANTS ||
	    !cfg->nr_vps || cfg->nr_vps > ACT_MAX_VPS || !cfg->vp_cpus ||
	    !cfg->concurrency || cfg->concurrency > ACT_MAX_FIBERS ||
	    !cfg->steps || !cfg->tasks || !(cfg->p >= 0.0 && cfg->p <= 1.0) ||
	    !cfg->block_ns || cfg->tasks + cfg->warmup_tasks > (1ull << 32))
		return -EINVAL;
	for (i = 0; i < cfg->nr_vps; i++)
		if (cfg->vp_cpus[i] < 0 || cfg->vp_cpus[i] >= CPU_SETSIZE)
			return -EINVAL;
	if (cfg->variant == ACT_MONITOR && !cfg->monitor_ns)
		return -EINVAL;
	if (cfg->block_kind < 0 || cfg->block_kind >= ACT_NR_BLOCK_KINDS ||
	    (cfg->block_kind == ACT_BLOCK_FAULT && !cfg->dir))
		return -EINVAL;
	/* RWF_NOWAIT has no form for a touch, io_uring no op that faults */
	if (cfg->block_kind != ACT_BLOCK_TIMERFD &&
	    (cfg->variant == ACT_SYNCFIRST || cfg->variant == ACT_URING))
		return -EINVAL;
	if (cfg->variant == ACT_UPCALL) {
		per_vp = 1 + cfg->spares;
		if (cfg->nr_vps * per_vp > ACT_MAX_SLOTS || cfg->ring_fd < 0 ||
		    cfg->vps_fd < 0 || cfg->tids_fd < 0)
			return -EINVAL;
	}
	if (cfg->variant != ACT_PTHREADS && !lab_fiber_supported())
		return -ENOTSUP;
	return 0;
}

int activations_run(struct lab_handshake *hs,
		    const struct activations_config *cfg, double *task_ns,
		    double *handoff_ns, uint64_t handoff_cap,
		    struct activations_counts *out)
{
	struct activations_counts before, after;
	uint64_t cpu0 = 0, cpu_ns, loops, lost = 0, i, total;
	cpu_set_t saved;
	struct act_rt *rt;
	int err, e2;

	memset(out, 0, sizeof(*out));
	err = act_check(cfg);
	if (err)
		return err;
	err = lab_pin_saving(cfg->vp_cpus[0], &saved);
	if (err)
		return err;
	rt = act_rt_create(cfg);
	if (!rt) {
		lab_unpin(&saved);
		return -ENOMEM;
	}
	rt->instrument = true;
	rt->task_ns = task_ns;
	rt->handoff_ns = handoff_ns;
	rt->handoff_cap = handoff_ns ? handoff_cap : 0;
	rt->warmup_tasks = cfg->warmup_tasks;
	loops = act_calibrate();
	rt->work_loops = cfg->work_ns * loops / 1000;

	err = act_setup(rt, 0);
	if (!err)
		err = act_start(rt);
	if (err)
		goto out;
	atomic_store(&rt->go, 1);
	futex_wake((uint32_t *)&rt->go, INT32_MAX);
	total = cfg->warmup_tasks + cfg->tasks;
	if (cfg->warmup_tasks)
		err = act_phase(rt, 0, cfg->warmup_tasks);
	if (err)
		goto out;
	/* between phases every fiber is parked: the counters hold still */
	act_sum(rt, &before);
	err = lab_handshake_ready(hs, NULL, 0);
	if (err)
		goto out;
	cpu0 = act_cpu_ns();
	atomic_store(&rt->counting, 1);
	err = act_phase(rt, cfg->warmup_tasks, total);
	atomic_store(&rt->counting, 0);
	cpu_ns = act_cpu_ns() - cpu0;
	if (!err)
		err = lab_handshake_done(hs);
	if (err)
		goto out;
	act_sum(rt, &after);
	act_delta(out, &before, &after);
	/* the (window) counts of ACTIVATIONS_COUNTERS */
	out->cpu_ns = cpu_ns;
	out->loops_per_us = loops;
	out->handoff_samples = atomic_load(&rt->nr_handoff);
	if (out->handoff_samples > rt->handoff_cap)
		out->handoff_samples = rt->handoff_cap;
	out->max_running_activations = (uint64_t)atomic_load(&rt->max_running);
	out->activations = rt->nr_acts;
	out->ready_by_ioctl = rt->ready_by_ioctl;
	/* every measured task exactly once, none of the warm-up again */
	for (i = 0; i < total; i++)
		if (atomic_load(&rt->done[i]) != 1)
			out->duplicate_completions +=
				atomic_load(&rt->done[i]) > 1;
out:
	if (rt->slots)
		for (i = 0; i < rt->nr_acts; i++)
			lost += __atomic_load_n(&rt->slots[i].ring_lost,
						__ATOMIC_ACQUIRE);
	act_teardown(rt);
	out->ring_lost = lost > rt->base_lost ? lost - rt->base_lost : 0;
	e2 = atomic_load(&rt->err);
	if (!err || err == -ECANCELED)
		err = e2 ? e2 : err;
	free(rt);
	lab_unpin(&saved);
	return err;
}
