/*
 * K42's soft and hard preemption of a virtual processor (seed 004: "the
 * 'soft' method is a request to the thread-kern to save its state in
 * userspace if possible within a certain time frame, while the 'hard'
 * version has the kernel do a full context save explicitly").
 *
 * One VP: an activation (a kernel thread pinned to cfg->cpu) runs
 * cfg->fibers fibers round robin, each a slice of quantum_ns of CPU work
 * at a time; the switch between fibers is the runtime's safe point, where
 * a fiber's state is already saved by our own context switch.  A
 * requester (the "kernel" that wants the CPU back: a SCHED_FIFO thread on
 * the same CPU) wakes on its timer once per interval_ns:
 *   soft: it posts a request (a shared word, or a signal whose handler
 *     sets it) and waits on a futex up to deadline_ns; the runtime's next
 *     safe point takes the request, wakes it and waits until given the VP
 *     back.  Past the deadline the requester takes the CPU anyway (a hard
 *     preemption, counted as a miss): every request is answered once, by
 *     whichever of the two compare-and-swaps on the request word wins.
 *   hard: it just runs: the kernel preempts the activation wherever it is
 *     and saves its registers itself.
 * Either way it then keeps the CPU for hold_ns and sleeps again.
 *
 * The cost to the runtime: the slices completed per ns in the request
 * phase against the quiet phases before and after it (the same threads,
 * no requests), the requester's own hold subtracted (Python derives it).
 * The fibers' work is an LCG chain, so a fiber's final value proves its
 * state survived every preemption: it must equal the chain skipped ahead
 * by its steps (k42_lcg_skip), computed without running it.
 *
 * With the upcall program's preemption function attached (vps_fd,
 * tids_fd), the activation is registered in slot K42_SLOT and the
 * requester reads, when it runs, whether the kernel preempted the
 * activation for it (preempted_by, preempt_seq) or the activation was off
 * the CPU already (another task had it).
 *
 * Build: part of lab._native (native/build.py).
 */
#include <linux/bpf.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include "activations_k42.h"
#include "bpf_ring.h"
#include "internal.h"
#include "upcall_abi.h"
#include "upcall_internal.h"

#define K42_STACK (64 * 1024)
/* waits end by a wake-up; the timeout only lets a stop be seen */
#define K42_WAIT_NS 100000000ull
#define LCG_A	    6364136223846793005ull
#define LCG_C	    1442695040888963407ull

/* Linux: include/uapi/linux/prctl.h, from the time-slice extension on */
#ifndef PR_RSEQ_SLICE_EXTENSION
#define PR_RSEQ_SLICE_EXTENSION	    79
#define PR_RSEQ_SLICE_EXTENSION_GET 1
#endif

enum k42_req_state {
	REQ_IDLE = 0,
	REQ_POSTED,   /* the requester asks */
	REQ_RELEASED, /* the runtime gave the VP up at a safe point */
	REQ_TAKEN,    /* the deadline passed: the requester took it */
};

struct k42_fiber {
	struct lab_fiber ctx;
	struct k42_rt *rt;
	uint64_t seed;
	uint64_t x; /* the chain's value after its last slice */
	uint64_t slices;
};

struct k42_rt {
	const struct k42_config *cfg;
	struct lab_handshake *hs;
	uint64_t loops;
	struct lab_fiber sched; /* the activation's own context */
	struct k42_fiber *fibers;
	struct up_vp *slots;
	size_t slots_len;
	double *latency_ns, *safe_point_ns;
	struct k42_counts c;

	_Alignas(LAB_CACHELINE) _Atomic uint32_t
		pending; /* the safe point's flag */
	_Alignas(LAB_CACHELINE) _Atomic uint32_t req; /* enum k42_req_state */
	_Atomic uint32_t grant;	  /* bumped: the VP is given back */
	_Atomic uint64_t safe_ns; /* the safe point's stamp */
	_Alignas(LAB_CACHELINE) _Atomic uint64_t t[4]; /* phases: quiet,
							* requests, quiet, end */
	_Atomic uint32_t phases_set;
	_Atomic uint32_t stop;
	_Atomic uint32_t act_state; /* 1: started (tid set), 2: done */
	_Atomic uint32_t go;	    /* the requester may start */
	_Atomic int32_t act_tid;
	_Atomic int err;
	_Atomic uint64_t signals;
	uint64_t quiet_slices, request_slices, safe_points;
	uint64_t released, late;
};

static struct k42_rt *_Atomic k42_signal_rt;

static inline uint64_t k42_lcg_run(uint64_t x, uint64_t steps)
{
	uint64_t i;

	for (i = 0; i < steps; i++)
		x = x * LCG_A + LCG_C;
	return x;
}

/* x_n = A^n x + C (A^(n-1) + ... + 1) mod 2^64, by squaring (Brown 1994) */
uint64_t k42_lcg_skip(uint64_t x, uint64_t steps)
{
	uint64_t a = LCG_A, c = LCG_C, acc_a = 1, acc_c = 0;

	while (steps) {
		if (steps & 1) {
			acc_a *= a;
			acc_c = acc_c * a + c;
		}
		c = (a + 1) * c;
		a *= a;
		steps >>= 1;
	}
	return acc_a * x + acc_c;
}

static uint64_t k42_calibrate(void)
{
	uint64_t best = 0, t0, dt, rate, x = 1;
	int r;

	/* the fastest of a few rounds: the ones without an interruption */
	for (r = 0; r < 7; r++) {
		t0 = now_ns();
		x = k42_lcg_run(x, 200000);
		lab_keep(x);
		dt = now_ns() - t0;
		rate = dt ? 200000ull * 1000 / dt : 0;
		if (rate > best)
			best = rate;
	}
	return best ? best : 1000; /* steps per us */
}

static void k42_fail(struct k42_rt *rt, int err)
{
	int none = 0;

	atomic_compare_exchange_strong(&rt->err, &none, err);
	atomic_store(&rt->stop, 1);
	futex_wake((uint32_t *)&rt->grant, 1);
	futex_wake((uint32_t *)&rt->req, 1);
	futex_wake((uint32_t *)&rt->go, 1);
	futex_wake((uint32_t *)&rt->act_state, 1);
}

static int k42_wait_ns(_Atomic uint32_t *word, uint32_t expected, uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull),
			       (long)(ns % 1000000000ull) };

	if (syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected,
		    &ts, NULL, 0) < 0)
		return -errno;
	return 0;
}

/* ---- the runtime: one VP, fibers round robin -------------------------------- */

static void k42_fiber_main(void *arg)
{
	struct k42_fiber *f = arg;
	struct k42_rt *rt = f->rt;
	uint64_t x = f->seed;

	for (;;) {
		/* the chain lives in a register here: a hard preemption is the
		 * kernel saving it, a soft one our switch below */
		x = k42_lcg_run(x, rt->loops);
		f->x = x;
		f->slices++;
		lab_fiber_switch(&f->ctx, &rt->sched);
	}
}

static void k42_safe_point(struct k42_rt *rt)
{
	uint32_t posted = REQ_POSTED, g;
	/* stamped after the flag was seen, so never before the post */
	uint64_t now = now_ns();

	atomic_store(&rt->pending, 0);
	/* both before the swap: a requester past its deadline may see the
	 * release before our wake, read the stamp and bump grant at once */
	g = atomic_load(&rt->grant);
	atomic_store(&rt->safe_ns, now);
	if (!atomic_compare_exchange_strong(&rt->req, &posted, REQ_RELEASED)) {
		rt->late++;
		return;
	}
	futex_wake((uint32_t *)&rt->req, 1);
	/* the VP is released: this activation waits until it is given back */
	while (atomic_load(&rt->grant) == g && !atomic_load(&rt->stop))
		k42_wait_ns(&rt->grant, g, K42_WAIT_NS);
	rt->released++;
}

static void k42_account(struct k42_rt *rt, uint64_t now)
{
	if (!atomic_load_explicit(&rt->phases_set, memory_order_acquire) ||
	    now < rt->t[0])
		return;
	if (now >= rt->t[3]) {
		atomic_store(&rt->stop, 1);
		return;
	}
	if (now >= rt->t[1] && now < rt->t[2])
		rt->request_slices++;
	else
		rt->quiet_slices++;
}

static void k42_signal_handler(int sig)
{
	struct k42_rt *rt = atomic_load(&k42_signal_rt);

	(void)sig;
	if (rt) {
		atomic_store_explicit(&rt->pending, 1, memory_order_release);
		atomic_fetch_add(&rt->signals, 1);
	}
}

static void *k42_activation(void *arg)
{
	struct k42_rt *rt = arg;
	uint32_t i = 0;
	uint64_t now;

	atomic_store(&rt->act_tid, (int32_t)gettid());
	atomic_store(&rt->act_state, 1);
	futex_wake((uint32_t *)&rt->act_state, 1);
	while (!atomic_load(&rt->stop)) {
		lab_fiber_switch(&rt->sched, &rt->fibers[i].ctx);
		/* the safe point: a fiber switched out at the end of its slice */
		now = now_ns();
		rt->safe_points++;
		k42_account(rt, now);
		if (atomic_load_explicit(&rt->pending, memory_order_acquire))
			k42_safe_point(rt);
		if (++i == rt->cfg->fibers)
			i = 0;
	}
	atomic_store(&rt->act_state, 2);
	futex_wake((uint32_t *)&rt->act_state, 1);
	return NULL;
}

/* ---- the requester: the "kernel" that wants the CPU ------------------------- */

static void k42_sleep_until(uint64_t t)
{
	struct timespec ts = { (time_t)(t / 1000000000ull),
			       (long)(t % 1000000000ull) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL))
		;
}

/* hard or the soft request's post: did the kernel switch the activation
 * out for this thread? */
static void k42_check_slot(struct k42_rt *rt, uint64_t *last_seq, bool counting)
{
	volatile struct up_vp *s;
	uint64_t seq;

	if (!rt->slots)
		return;
	s = &rt->slots[K42_SLOT];
	seq = __atomic_load_n(&s->preempt_seq, __ATOMIC_ACQUIRE);
	if (counting) {
		if (s->preempted && seq != *last_seq &&
		    s->preempted_by == (uint32_t)gettid())
			rt->c.preempted_by_requester++;
		else if (s->preempted)
			rt->c.vp_off_cpu_at_request++;
		else
			rt->c.unexplained_requests++;
	}
	*last_seq = seq;
}

/* soft: post, wait up to the deadline; true when released at a safe point */
static bool k42_soft_request(struct k42_rt *rt, uint64_t *post_ns)
{
	const struct k42_config *cfg = rt->cfg;
	uint32_t posted = REQ_POSTED;
	uint64_t deadline, now;

	*post_ns = now_ns();
	deadline = *post_ns + cfg->deadline_ns;
	atomic_store(&rt->req, REQ_POSTED);
	if (cfg->request == K42_REQUEST_SIGNAL)
		syscall(SYS_tgkill, getpid(), atomic_load(&rt->act_tid),
			SIGRTMIN);
	else
		atomic_store_explicit(&rt->pending, 1, memory_order_release);
	for (;;) {
		if (atomic_load(&rt->req) != REQ_POSTED)
			return true;
		now = now_ns();
		if (now >= deadline || atomic_load(&rt->stop)) {
			/* the runtime's swap may have won just now */
			return !atomic_compare_exchange_strong(
				&rt->req, &posted, REQ_TAKEN);
		}
		k42_wait_ns(&rt->req, REQ_POSTED, deadline - now);
	}
}

static void *k42_requester(void *arg)
{
	struct k42_rt *rt = arg;
	const struct k42_config *cfg = rt->cfg;
	uint64_t k, n = cfg->warmup + cfg->samples, target, run, end, post;
	uint64_t last_seq = 0, quiet, t0;
	bool counting, released;
	int err;

	while (!atomic_load(&rt->go) && !atomic_load(&rt->stop))
		k42_wait_ns(&rt->go, 0, K42_WAIT_NS);
	target = now_ns() + cfg->interval_ns;
	k42_check_slot(rt, &last_seq, false);
	for (k = 0; k < n && !atomic_load(&rt->stop); k++) {
		counting = k >= cfg->warmup;
		if (k == cfg->warmup) {
			err = lab_handshake_ready(rt->hs, NULL, 0);
			if (err) {
				k42_fail(rt, err);
				break;
			}
			/* quiet, requests, quiet: each quiet phase half as
			 * long as the requests, so drift cancels */
			quiet = cfg->samples * cfg->interval_ns / 2;
			t0 = now_ns();
			rt->t[0] = t0;
			rt->t[1] = t0 + quiet;
			rt->t[2] = rt->t[1] + cfg->samples * cfg->interval_ns;
			rt->t[3] = rt->t[2] + quiet;
			atomic_store_explicit(&rt->phases_set, 1,
					      memory_order_release);
			target = rt->t[1];
		}
		k42_sleep_until(target);
		released = false;
		if (cfg->variant == K42_SOFT) {
			k42_check_slot(rt, &last_seq, counting);
			released = k42_soft_request(rt, &post);
			run = now_ns();
			if (counting && released) {
				rt->safe_point_ns[rt->c.safe_point_samples++] =
					(double)(atomic_load(&rt->safe_ns) -
						 post);
			}
			if (counting) {
				rt->c.released_at_safe_point += released;
				rt->c.deadline_misses += !released;
			}
		} else {
			run = now_ns();
			k42_check_slot(rt, &last_seq, counting);
		}
		if (counting) {
			rt->latency_ns[k - cfg->warmup] =
				(double)(run > target ? run - target : 0);
			rt->c.requests++;
			rt->c.answers++;
		}
		end = run + cfg->hold_ns;
		while (now_ns() < end)
			;
		if (counting)
			rt->c.hold_ns += now_ns() - run;
		if (cfg->variant == K42_SOFT) {
			atomic_store(&rt->req, REQ_IDLE);
			if (released) {
				atomic_fetch_add(&rt->grant, 1);
				futex_wake((uint32_t *)&rt->grant, 1);
			}
		}
		target += cfg->interval_ns;
	}
	/* the runtime ends its last quiet phase by the clock */
	while (atomic_load(&rt->act_state) != 2)
		k42_wait_ns(&rt->act_state, atomic_load(&rt->act_state),
			    K42_WAIT_NS);
	if (!atomic_load(&rt->err) && k == n) {
		err = lab_handshake_done(rt->hs);
		if (err)
			k42_fail(rt, err);
	}
	return NULL;
}

/* ---- set-up, run, tear-down ------------------------------------------------- */

static int k42_map_slots(struct k42_rt *rt, int vps_fd)
{
	_Static_assert(K42_SLOT < UP_NR_VPS,
		       "K42_SLOT is a slot of the program");
	int err = up_map_slots(vps_fd, &rt->slots, &rt->slots_len);

	if (err)
		return err;
	/* no ring records: the requester reads the slot itself */
	rt->slots[K42_SLOT].ring_kinds = 0;
	return 0;
}

static int k42_check_config(const struct k42_config *cfg)
{
	if ((cfg->variant != K42_SOFT && cfg->variant != K42_HARD) ||
	    cfg->request < 0 || cfg->request >= K42_NR_REQUESTS ||
	    !cfg->fibers || cfg->fibers > K42_MAX_FIBERS || !cfg->samples ||
	    !cfg->interval_ns || !cfg->quantum_ns || cfg->cpu < 0 ||
	    cfg->cpu >= CPU_SETSIZE || cfg->rt_priority < 1 ||
	    cfg->rt_priority > 99 || (cfg->vps_fd < 0) != (cfg->tids_fd < 0))
		return -EINVAL;
	/* the next request must not come before this one is over */
	if (cfg->hold_ns >= cfg->interval_ns ||
	    (cfg->variant == K42_SOFT &&
	     cfg->deadline_ns + cfg->hold_ns >= cfg->interval_ns))
		return -EINVAL;
	return lab_fiber_supported() ? 0 : -ENOTSUP;
}

static void k42_check_states(struct k42_rt *rt)
{
	uint32_t i;

	for (i = 0; i < rt->cfg->fibers; i++) {
		struct k42_fiber *f = &rt->fibers[i];

		if (f->x != k42_lcg_skip(f->seed, f->slices * rt->loops))
			rt->c.state_mismatches++;
	}
}

int k42_run(struct lab_handshake *hs, const struct k42_config *cfg,
	    double *latency_ns, double *safe_point_ns, struct k42_counts *out)
{
	struct sigaction sa = { .sa_handler = k42_signal_handler }, old_sa;
	bool have_sa = false, have_req = false;
	bool registered = false;
	pthread_t act, req;
	struct k42_rt *rt;
	uint32_t key = 0, val = K42_SLOT, i, nr_fibers = 0;
	int err, e2;

	memset(out, 0, sizeof(*out));
	err = k42_check_config(cfg);
	if (err)
		return err;
	rt = calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	rt->cfg = cfg;
	rt->hs = hs;
	rt->latency_ns = latency_ns;
	rt->safe_point_ns = safe_point_ns;
	rt->loops = cfg->quantum_ns * k42_calibrate() / 1000;
	if (!rt->loops)
		rt->loops = 1;
	rt->fibers = calloc(cfg->fibers, sizeof(*rt->fibers));
	if (!rt->fibers) {
		err = -ENOMEM;
		goto out;
	}
	for (; nr_fibers < cfg->fibers; nr_fibers++) {
		struct k42_fiber *f = &rt->fibers[nr_fibers];

		f->rt = rt;
		f->seed = f->x = 0x9e3779b97f4a7c15ull * (nr_fibers + 1);
		err = lab_fiber_init(&f->ctx, K42_STACK, k42_fiber_main, f);
		if (err)
			goto out;
	}
	if (cfg->vps_fd >= 0) {
		err = k42_map_slots(rt, cfg->vps_fd);
		if (err)
			goto out;
	}
	if (cfg->variant == K42_SOFT && cfg->request == K42_REQUEST_SIGNAL) {
		struct k42_rt *none = NULL;

		/* one run at a time owns the handler */
		if (!atomic_compare_exchange_strong(&k42_signal_rt, &none,
						    rt)) {
			err = -EBUSY;
			goto out;
		}
		sigemptyset(&sa.sa_mask);
		sa.sa_flags = SA_RESTART;
		if (sigaction(SIGRTMIN, &sa, &old_sa) < 0) {
			err = -errno;
			atomic_store(&k42_signal_rt, NULL);
			goto out;
		}
		have_sa = true;
	}
	err = lab_spawn_on_cpu(&act, cfg->cpu, SCHED_OTHER, 0, k42_activation,
			       rt);
	if (err)
		goto out;
	err = lab_spawn_on_cpu(&req, cfg->cpu, SCHED_FIFO, cfg->rt_priority,
			       k42_requester, rt);
	if (err)
		goto stop;
	have_req = true;
	while (!atomic_load(&rt->act_state))
		k42_wait_ns(&rt->act_state, 0, K42_WAIT_NS);
	if (cfg->tids_fd >= 0) {
		key = (uint32_t)atomic_load(&rt->act_tid);
		err = lab_bpf_map_update_elem(cfg->tids_fd, &key, &val,
					      BPF_ANY);
		if (err)
			goto stop;
		registered = true;
	}
	atomic_store(&rt->go, 1);
	futex_wake((uint32_t *)&rt->go, 1);
	pthread_join(req, NULL);
	have_req = false;
stop:
	if (err)
		k42_fail(rt, err);
	if (have_req)
		pthread_join(req, NULL);
	/* an early stop: the activation ends at its next safe point */
	atomic_store(&rt->stop, 1);
	futex_wake((uint32_t *)&rt->grant, 1);
	pthread_join(act, NULL);
	if (!err)
		err = atomic_load(&rt->err);
	if (!err && rt->c.requests != cfg->samples)
		err = -EIO;
out:
	if (registered) {
		e2 = lab_bpf_map_delete_elem(cfg->tids_fd, &key);
		if (!err)
			err = e2;
	}
	if (have_sa) {
		sigaction(SIGRTMIN, &old_sa, NULL);
		atomic_store(&k42_signal_rt, NULL);
	}
	if (!err) {
		k42_check_states(rt);
		*out = rt->c;
		out->quiet_slices = rt->quiet_slices;
		out->request_slices = rt->request_slices;
		out->quiet_ns = (rt->t[1] - rt->t[0]) + (rt->t[3] - rt->t[2]);
		out->request_ns = rt->t[2] - rt->t[1];
		out->safe_points = rt->safe_points;
		out->late_safe_points = rt->late;
		out->signals_handled = atomic_load(&rt->signals);
		out->loops_per_slice = rt->loops;
	}
	if (rt->slots)
		munmap(rt->slots, rt->slots_len);
	for (i = 0; i < nr_fibers; i++)
		lab_fiber_deinit(&rt->fibers[i].ctx);
	free(rt->fibers);
	free(rt);
	return err;
}

int k42_rseq_slice_probe(void)
{
	/* Linux before the extension: EINVAL (an unknown prctl option) */
	if (prctl(PR_RSEQ_SLICE_EXTENSION, PR_RSEQ_SLICE_EXTENSION_GET, 0, 0,
		  0) < 0)
		return -errno;
	return 0;
}
