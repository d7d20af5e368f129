/*
 * Family `activations`, multiprogramming (issue 14, item 3): the 1992
 * paper's N-body experiment on this machine.  `processes` runtime
 * processes, forked from the worker, each with nr_vps VPs on the same
 * CPUs, each run a parallel time-stepped workload: a step is `bodies`
 * body updates (the user-level tasks), taken by the process's VPs from
 * one ticket word; an update is work_ns of CPU work, then, under lock
 * b % locks, cs_ns more and the body's state; the step's last update
 * opens the next step (the barrier).
 *
 * The lock policies are the critical-sections part's (act_lock_internal.h).
 * What differs between the variants is how a VP waits -- for a lock, and
 * for the step's last body -- and whether it may run at all:
 *   oblivious   spins (FastThreads on Topaz threads: it cannot know that
 *               the holder's VP lost its CPU to the other process);
 *   spin_yield  spins (MP_SPIN_LIMIT polls for a lock, MP_SPIN_NS at the
 *               barrier), then sched_yield()s, and again;
 *   informed    spins while the lock holder's VP runs; once the upcall
 *               program says the kernel preempted it (lab_upcall_preempt:
 *               the holder's slot's `preempted`) it lends the holder its
 *               CPU (act_lend_cpu: the holder's thread moves here, the
 *               waiter sleeps until it has released and gone home); for
 *               the step's last body it spins MP_SPIN_NS, then sleeps;
 *   pthreads    kernel threads, not pinned, pthread mutexes, a futex
 *               barrier: the kernel schedules (Topaz threads);
 *   allocation  informed, plus processor allocation: the runtimes share an
 *               allocation (MAP_SHARED, made before the fork) of the CPUs;
 *               each says how many VPs it wants, a user-space allocator
 *               divides the CPUs evenly among the wants, and a VP runs
 *               only on a CPU its process was given.  A VP whose CPU was
 *               taken parks at its next safe point (between bodies);
 *               a parked VP takes its CPU when it is given back and the
 *               other process's VP has left it ("add this processor").
 *               A VP that finds itself preempted (its slot's preempt_seq
 *               moved) takes that as "processor taken": its process asks
 *               for one VP less (never below one) and gives that CPU back;
 *               at each step's start it asks for all again.
 * Every check of the allocation is at a take: VPs owned after it must not
 * exceed the allocation (alloc_violations).
 *
 * Why processes and not threads: the paper's experiment is two address
 * spaces, each with its own user-level scheduler, competing through the
 * kernel.  The processes die with the worker (PR_SET_PDEATHSIG) and are
 * reaped on every path here.
 */
#include <limits.h>
#include <linux/bpf.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "activations_internal.h"
#include "act_lock_internal.h"
#include "activations_mp.h"
#include "upcall_internal.h"

/* how long spin_yield spins before it yields, and informed / allocation
 * before they sleep for the step's last body: about a futex round trip */
#define MP_SPIN_NS 5000ull
#define MP_NOBODY  UINT32_MAX
/* spin_yield: spins before each sched_yield() (act_lock's spin_limit) */
#define MP_SPIN_LIMIT 100
/* set-up: how long the children may take to be ready */
#define MP_READY_TIMEOUT_MS 10000

struct mp_lock {
	struct act_lock lock;  /* its word names the holder's slot */
	uint64_t value;	       /* the state it protects */
	pthread_mutex_t mutex; /* pthreads */
};

/* One runtime process's shared state: the parent reads its results. */
struct mp_proc {
	/* (step << 32) | next body: a VP takes (step, body) in one CAS, so a
	 * take never mixes one step's number with another's body */
	_Alignas(LAB_CACHELINE) _Atomic uint64_t ticket;
	_Alignas(LAB_CACHELINE) _Atomic uint32_t step; /* barrier futex */
	_Atomic uint32_t waiters;
	_Atomic uint32_t stop;
	_Alignas(LAB_CACHELINE) _Atomic uint32_t completed;
	_Alignas(LAB_CACHELINE) _Atomic uint32_t started; /* VPs up */
	int err;
	uint64_t step_start_ns, begin_ns, end_ns, steps_run;
	int32_t tids[ACT_MP_MAX_VPS];
	struct mp_lock locks[ACT_MP_MAX_LOCKS];
	uint32_t done[ACT_MP_MAX_BODIES]; /* per body: steps it was updated */
	double step_ns[ACT_MP_MAX_STEPS];
	struct activations_mp_counts counts;
};

struct mp_shared {
	_Alignas(LAB_CACHELINE) _Atomic uint32_t ready; /* processes set up */
	_Atomic uint32_t go;
	_Atomic uint32_t all_done; /* processes past their measured steps */
	/* the allocation, under alloc_lock */
	_Alignas(LAB_CACHELINE) _Atomic uint32_t alloc_lock;
	_Atomic uint32_t alloc_word; /* bumped (and woken) on every change */
	uint32_t nr_cpus, processes;
	uint32_t want[ACT_MP_MAX_PROCESSES];
	_Atomic uint32_t alloc[ACT_MP_MAX_PROCESSES];
	_Atomic uint32_t owned[ACT_MP_MAX_PROCESSES];
	_Atomic uint32_t owner[ACT_MP_MAX_VPS]; /* CPU i's process */
	_Atomic uint32_t busy[ACT_MP_MAX_VPS];	/* process + 1 running there */
	struct mp_proc procs[ACT_MP_MAX_PROCESSES];
};

struct mp_run;

struct mp_vp {
	struct mp_run *run;
	uint32_t index, slot;
	struct up_vp *s; /* its slot, NULL without the program */
	uint64_t seen_preempt, hold_seq;
	bool active; /* allocation: runs on its CPU */
	pthread_t thread;
	struct activations_mp_counts st;
	struct act_lock_stats lock_st;
};

struct mp_run {
	const struct activations_mp_config *cfg;
	struct mp_shared *sh;
	struct mp_proc *proc;
	uint32_t p; /* this process's index */
	uint64_t work_loops, cs_loops;
	struct up_vp *slots;
	struct act_lock_domain dom;	       /* the lock policy */
	struct act_lock_host hosts[UP_NR_VPS]; /* informed: by slot */
	struct mp_vp vps[ACT_MP_MAX_VPS];
};

/* The go word, the allocation and the parked VPs are shared between
 * processes: not FUTEX_PRIVATE. */
static void mp_futex_wait(_Atomic uint32_t *word, uint32_t expected, int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, &ts, NULL,
		0);
}

static void mp_futex_wake(_Atomic uint32_t *word)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL,
		0);
}

/* Bump, then wake: a parked VP that read the word before our change
 * cannot sleep through it (its FUTEX_WAIT finds the word moved). */
static void mp_alloc_changed(struct mp_shared *sh)
{
	atomic_fetch_add(&sh->alloc_word, 1);
	mp_futex_wake(&sh->alloc_word);
}

static inline uint64_t mp_slot_load(uint64_t *field)
{
	return __atomic_load_n(field, __ATOMIC_ACQUIRE);
}

/* ---- processor allocation ------------------------------------------------ */

static void mp_alloc_lock(struct mp_shared *sh)
{
	uint32_t z;

	for (;;) {
		z = 0;
		if (atomic_compare_exchange_weak(&sh->alloc_lock, &z, 1))
			return;
		while (atomic_load_explicit(&sh->alloc_lock,
					    memory_order_relaxed))
			up_pause();
	}
}

/*
 * The allocator the paper puts in the kernel, here in user space under
 * alloc_lock: each process's share is the CPUs divided evenly among the
 * wants (none beyond its want); a process over its share loses CPUs
 * (`prefer` first), free CPUs go to processes under theirs.  Returns 1
 * if an owner changed.
 */
static int mp_reallocate(struct mp_shared *sh, uint32_t prefer)
{
	uint32_t target[ACT_MP_MAX_PROCESSES] = { 0 };
	uint32_t count[ACT_MP_MAX_PROCESSES] = { 0 };
	uint32_t left = sh->nr_cpus, p, c, o, k;
	int changed = 0;
	bool more = true;

	while (left && more) {
		more = false;
		for (p = 0; p < sh->processes && left; p++)
			if (target[p] < sh->want[p]) {
				target[p]++;
				left--;
				more = true;
			}
	}
	for (c = 0; c < sh->nr_cpus; c++) {
		o = atomic_load(&sh->owner[c]);
		if (o != MP_NOBODY)
			count[o]++;
	}
	for (k = 0; k <= sh->nr_cpus; k++) {
		/* k = 0: the CPU named first, then from the last one down */
		if (k == 0 && prefer >= sh->nr_cpus)
			continue;
		c = k == 0 ? prefer : sh->nr_cpus - k;
		o = atomic_load(&sh->owner[c]);
		if (o != MP_NOBODY && count[o] > target[o]) {
			atomic_store(&sh->owner[c], MP_NOBODY);
			count[o]--;
			changed = 1;
		}
	}
	for (c = 0; c < sh->nr_cpus; c++) {
		if (atomic_load(&sh->owner[c]) != MP_NOBODY)
			continue;
		for (p = 0; p < sh->processes; p++)
			if (count[p] < target[p]) {
				atomic_store(&sh->owner[c], p);
				count[p]++;
				changed = 1;
				break;
			}
	}
	for (p = 0; p < sh->processes; p++)
		atomic_store(&sh->alloc[p], count[p]);
	return changed;
}

/*
 * A process gives one VP back (give_back: "processor taken", only a CPU
 * beyond its last one; the CPU `prefer`) or asks for all again ("add processor").
 * Decided under alloc_lock, so two VPs preempted at once give back one
 * CPU each only while the process wants more than one.  A change wakes
 * every parked VP and every barrier sleeper of every process (one may
 * have lost its CPU).  Returns true if the process's want changed.
 */
static bool mp_request(struct mp_vp *vp, bool give_back, uint32_t prefer)
{
	struct mp_run *run = vp->run;
	struct mp_shared *sh = run->sh;
	uint32_t *want = &sh->want[run->p], p;
	int changed = 0;
	bool moved = false;

	mp_alloc_lock(sh);
	/* give back only a CPU it has beyond its last one */
	if (give_back ? *want > 1 && atomic_load(&sh->alloc[run->p]) > 1 :
			*want < run->cfg->nr_vps) {
		*want = give_back ? *want - 1 : run->cfg->nr_vps;
		moved = true;
		changed = mp_reallocate(sh, prefer);
	}
	atomic_store(&sh->alloc_lock, 0);
	if (!changed)
		return moved;
	vp->st.reallocations++;
	mp_alloc_changed(sh);
	for (p = 0; p < sh->processes; p++)
		if (atomic_load(&sh->procs[p].waiters))
			mp_futex_wake(&sh->procs[p].step);
	return moved;
}

/* Wait parked until this VP's CPU is its process's and free, or stop. */
static void mp_park(struct mp_vp *vp)
{
	struct mp_run *run = vp->run;
	struct mp_shared *sh = run->sh;
	uint32_t c = vp->index, p = run->p, gen, z, owned;

	if (vp->active) {
		vp->active = false;
		vp->st.parks++;
		atomic_fetch_sub(&sh->owned[p], 1);
		/* off the CPU's fiber code: whoever it was given may take it */
		atomic_store(&sh->busy[c], 0);
		mp_alloc_changed(sh);
	}
	for (;;) {
		gen = atomic_load(&sh->alloc_word);
		if (atomic_load(&run->proc->stop))
			return;
		z = 0;
		if (atomic_load(&sh->owner[c]) == p &&
		    atomic_compare_exchange_strong(&sh->busy[c], &z, p + 1)) {
			owned = atomic_fetch_add(&sh->owned[p], 1) + 1;
			if (owned > atomic_load(&sh->alloc[p]))
				vp->st.alloc_violations++;
			vp->st.unparks++;
			vp->active = true;
			/* preempted while parked is no processor taken */
			if (vp->s)
				vp->seen_preempt =
					mp_slot_load(&vp->s->preempt_seq);
			return;
		}
		mp_futex_wait(&sh->alloc_word, gen, ACT_WAIT_SLICE_MS);
	}
}

/* Between bodies: preemptions seen; allocation: processor taken, park. */
static void mp_safe_point(struct mp_vp *vp)
{
	struct mp_run *run = vp->run;
	struct mp_shared *sh = run->sh;
	uint64_t seq;
	bool taken = false;

	if (vp->s) {
		seq = mp_slot_load(&vp->s->preempt_seq);
		if (seq != vp->seen_preempt) {
			vp->st.preemptions += seq - vp->seen_preempt;
			vp->seen_preempt = seq;
			taken = true;
		}
	}
	if (run->cfg->variant != ACT_MP_ALLOCATION)
		return;
	if (taken && mp_request(vp, true, vp->index))
		vp->st.processor_taken++;
	if (atomic_load(&sh->owner[vp->index]) != run->p)
		mp_park(vp);
}

/* ---- the lock policies: one call each way ------------------------------- */

/* The variants' lock policies, as the critical-sections part's
 * (act_lock_internal.h): the informed waiter lends its CPU to a preempted
 * holder, the paper's recovery as Linux allows it. */
static void mp_lock_domain_init(struct mp_run *run)
{
	static const int policy[ACT_MP_NR_VARIANTS] = {
		[ACT_MP_OBLIVIOUS] = ACT_LOCK_OBLIVIOUS,
		[ACT_MP_SPIN_YIELD] = ACT_LOCK_SPIN_YIELD,
		[ACT_MP_INFORMED] = ACT_LOCK_INFORMED,
		[ACT_MP_ALLOCATION] = ACT_LOCK_INFORMED,
	};

	run->dom.policy = policy[run->cfg->variant];
	run->dom.spin_limit = MP_SPIN_LIMIT;
	run->dom.slots = run->slots;
	run->dom.hosts = run->hosts;
	run->dom.nr_slots = UP_NR_VPS;
	run->dom.recover = act_lend_cpu;
}

static void mp_lock_acquire(struct mp_vp *vp, struct mp_lock *l)
{
	if (vp->run->cfg->variant == ACT_MP_PTHREADS) {
		vp->lock_st.acquisitions++;
		if (pthread_mutex_trylock(&l->mutex)) {
			vp->lock_st.contended++;
			pthread_mutex_lock(&l->mutex);
		}
	} else {
		act_lock_acquire(&l->lock, act_lock_word(vp->index, vp->slot),
				 &vp->run->dom, &vp->lock_st);
	}
	if (vp->s)
		vp->hold_seq = mp_slot_load(&vp->s->preempt_seq);
}

static void mp_lock_release(struct mp_vp *vp, struct mp_lock *l)
{
	struct mp_run *run = vp->run;

	if (vp->s && mp_slot_load(&vp->s->preempt_seq) != vp->hold_seq)
		vp->st.holder_preemptions++;
	if (run->cfg->variant == ACT_MP_PTHREADS) {
		pthread_mutex_unlock(&l->mutex);
		return;
	}
	act_lock_release(&l->lock, &run->dom, &vp->lock_st);
	/* a CPU lent to us while we held it: go home, wake the lender */
	if (act_lend_check(&run->hosts[vp->slot], &vp->lock_st))
		vp->st.lend_errors++;
}

/* No body left in step s: wait for its last one (or stop). */
static void mp_wait_step(struct mp_vp *vp, uint32_t s)
{
	struct mp_proc *proc = vp->run->proc;
	int variant = vp->run->cfg->variant;
	uint64_t t0 = now_ns();

	while (atomic_load(&proc->step) == s && !atomic_load(&proc->stop)) {
		if (variant == ACT_MP_OBLIVIOUS ||
		    (variant != ACT_MP_PTHREADS &&
		     now_ns() - t0 < MP_SPIN_NS)) {
			up_pause();
			continue;
		}
		if (variant == ACT_MP_SPIN_YIELD) {
			vp->st.yields++;
			sched_yield();
			continue;
		}
		vp->st.barrier_sleeps++;
		atomic_fetch_add(&proc->waiters, 1);
		if (atomic_load(&proc->step) == s)
			mp_futex_wait(&proc->step, s, ACT_WAIT_SLICE_MS);
		atomic_fetch_sub(&proc->waiters, 1);
		/* allocation: the CPU may have been taken meanwhile */
		return;
	}
	if (variant != ACT_MP_PTHREADS)
		vp->st.barrier_spin_ns += now_ns() - t0;
}

/* ---- the workload --------------------------------------------------------- */

static void mp_step_end(struct mp_vp *vp, uint32_t s)
{
	struct mp_run *run = vp->run;
	const struct activations_mp_config *cfg = run->cfg;
	struct mp_proc *proc = run->proc;
	struct mp_shared *sh = run->sh;
	uint64_t t = now_ns();
	bool stop = false;

	atomic_store(&proc->completed, 0);
	proc->steps_run = s + 1;
	if (s == 0)
		proc->begin_ns = t;
	else if (s <= cfg->time_steps)
		proc->step_ns[s - 1] = (double)(t - proc->step_start_ns);
	proc->step_start_ns = t;
	if (s == cfg->time_steps) {
		proc->end_ns = t;
		atomic_fetch_add(&sh->all_done, 1);
		mp_futex_wake(&sh->all_done);
	}
	if (s >= cfg->time_steps && atomic_load(&sh->all_done) == sh->processes)
		stop = true;
	/* a new step has work for every VP: ask for them again */
	if (!stop && cfg->variant == ACT_MP_ALLOCATION &&
	    mp_request(vp, false, MP_NOBODY))
		vp->st.add_processor++;
	if (stop)
		atomic_store(&proc->stop, 1);
	atomic_store(&proc->ticket, (uint64_t)(s + 1) << 32);
	atomic_store(&proc->step, s + 1);
	if (stop || atomic_load(&proc->waiters))
		mp_futex_wake(&proc->step);
	if (stop)
		mp_alloc_changed(sh);
}

static void mp_body(struct mp_vp *vp, uint32_t s, uint32_t b)
{
	struct mp_run *run = vp->run;
	struct mp_proc *proc = run->proc;
	struct mp_lock *l = &proc->locks[b % run->cfg->locks];

	act_spin(run->work_loops);
	mp_lock_acquire(vp, l);
	act_spin(run->cs_loops);
	/* body b is only ever updated under its lock */
	if (proc->done[b] != s)
		vp->st.duplicate_updates++;
	else
		proc->done[b] = s + 1;
	l->value += b;
	mp_lock_release(vp, l);
	vp->st.body_updates++;
	if (atomic_fetch_add(&proc->completed, 1) + 1 == run->cfg->bodies)
		mp_step_end(vp, s);
}

static void *mp_vp_main(void *arg)
{
	struct mp_vp *vp = arg;
	struct mp_run *run = vp->run;
	const struct activations_mp_config *cfg = run->cfg;
	struct mp_proc *proc = run->proc;
	uint32_t key = (uint32_t)gettid(), val = vp->slot, s, b;
	uint64_t t;
	int err = 0;

	proc->tids[vp->index] = (int32_t)key;
	if (cfg->variant != ACT_MP_PTHREADS)
		err = act_lock_host_init(&run->hosts[vp->slot], (int32_t)key,
					 cfg->vp_cpus[vp->index]);
	if (!err && cfg->tids_fd >= 0)
		err = lab_bpf_map_update_elem(cfg->tids_fd, &key, &val,
					      BPF_ANY);
	if (err)
		proc->err = err;
	atomic_fetch_add(&proc->started, 1);
	futex_wake((uint32_t *)&proc->started, 1);
	while (!atomic_load(&run->sh->go) && !atomic_load(&proc->stop))
		mp_futex_wait(&run->sh->go, 0, ACT_WAIT_SLICE_MS);
	if (vp->s)
		vp->seen_preempt = mp_slot_load(&vp->s->preempt_seq);
	if (cfg->variant == ACT_MP_ALLOCATION) {
		/* the allocation made before the fork gave it its CPU, or not */
		vp->active = atomic_load(&run->sh->busy[vp->index]) ==
			     run->p + 1;
		if (!vp->active)
			mp_park(vp);
	}
	while (!atomic_load(&proc->stop)) {
		mp_safe_point(vp);
		if (atomic_load(&proc->stop))
			break;
		t = atomic_load(&proc->ticket);
		s = (uint32_t)(t >> 32);
		b = (uint32_t)t;
		if (b >= cfg->bodies) {
			mp_wait_step(vp, s);
			continue;
		}
		if (atomic_compare_exchange_weak(&proc->ticket, &t, t + 1))
			mp_body(vp, s, b);
	}
	if (vp->s)
		vp->st.preemptions +=
			mp_slot_load(&vp->s->preempt_seq) - vp->seen_preempt;
	vp->st.lock_acquires = vp->lock_st.acquisitions;
	vp->st.lock_contended = vp->lock_st.contended;
	vp->st.lock_spin_ns = vp->lock_st.spin_ns;
	vp->st.yields += vp->lock_st.yields;
	vp->st.saw_preempted = vp->lock_st.saw_preempted;
	vp->st.recoveries = vp->lock_st.recoveries;
	vp->st.lent_ns = vp->lock_st.lent_ns;
	vp->st.lend_returns = vp->lock_st.returns;
	return NULL;
}

#define MP_ADD(name) sum->name += st->name;
static void mp_counts_add(struct activations_mp_counts *sum,
			  const struct activations_mp_counts *st)
{
	ACTIVATIONS_MP_COUNTERS(MP_ADD)
}
#undef MP_ADD

/* A runtime process: its VPs until the workload stops.  0 or -errno. */
static int mp_child(struct mp_run *run)
{
	const struct activations_mp_config *cfg = run->cfg;
	struct mp_proc *proc = run->proc;
	struct mp_shared *sh = run->sh;
	uint32_t i, n = 0, started, b;
	cpu_set_t set;
	int err = 0;

	mp_lock_domain_init(run);
	for (i = 0; i < cfg->nr_vps; i++) {
		struct mp_vp *vp = &run->vps[i];

		vp->run = run;
		vp->index = i;
		vp->slot = run->p * cfg->nr_vps + i;
		vp->s = run->slots ? &run->slots[vp->slot] : NULL;
		CPU_ZERO(&set);
		if (cfg->variant == ACT_MP_PTHREADS) {
			/* kernel threads: the kernel places them */
			for (b = 0; b < cfg->nr_vps; b++)
				CPU_SET(cfg->vp_cpus[b], &set);
		} else {
			CPU_SET(cfg->vp_cpus[i], &set);
		}
		err = lab_spawn_pinned(&vp->thread, &set, -1, 0, mp_vp_main,
				       vp);
		if (err)
			break;
		n++;
	}
	while (!err && (started = atomic_load(&proc->started)) < n)
		act_futex_wait_ms(&proc->started, started, ACT_WAIT_SLICE_MS);
	if (!err)
		err = proc->err;
	proc->counts.initial_owned = atomic_load(&sh->owned[run->p]);
	proc->err = err;
	atomic_fetch_add(&sh->ready, 1);
	mp_futex_wake(&sh->ready);
	if (err)
		atomic_store(&proc->stop, 1);
	for (i = 0; i < n; i++) {
		pthread_join(run->vps[i].thread, NULL);
		mp_counts_add(&proc->counts, &run->vps[i].st);
	}
	proc->counts.steps_run = proc->steps_run;
	for (b = 0; b < cfg->bodies; b++)
		if (proc->done[b] != proc->steps_run)
			proc->counts.missing_updates++;
	proc->counts.final_owned = atomic_load(&sh->owned[run->p]);
	return err;
}

/* ---- the caller: set up, fork, window, reap ------------------------------ */

static int mp_check(const struct activations_mp_config *cfg)
{
	uint32_t i;

	if (cfg->variant < 0 || cfg->variant >= ACT_MP_NR_VARIANTS ||
	    !cfg->processes || cfg->processes > ACT_MP_MAX_PROCESSES ||
	    !cfg->nr_vps || cfg->nr_vps > ACT_MP_MAX_VPS || !cfg->vp_cpus ||
	    !cfg->bodies || cfg->bodies > ACT_MP_MAX_BODIES ||
	    !cfg->time_steps || cfg->time_steps > ACT_MP_MAX_STEPS ||
	    !cfg->locks || cfg->locks > ACT_MP_MAX_LOCKS ||
	    cfg->processes * cfg->nr_vps > UP_NR_VPS)
		return -EINVAL;
	/* informed waiters and processor taken read the slots */
	if ((cfg->variant == ACT_MP_INFORMED ||
	     cfg->variant == ACT_MP_ALLOCATION) &&
	    (cfg->vps_fd < 0 || cfg->tids_fd < 0))
		return -EINVAL;
	/* a process with no CPU would never finish its steps */
	if (cfg->variant == ACT_MP_ALLOCATION && cfg->processes > cfg->nr_vps)
		return -EINVAL;
	for (i = 0; i < cfg->nr_vps; i++)
		if (cfg->vp_cpus[i] < 0 || cfg->vp_cpus[i] >= CPU_SETSIZE)
			return -EINVAL;
	return 0;
}

static void mp_shared_init(struct mp_shared *sh,
			   const struct activations_mp_config *cfg)
{
	pthread_mutexattr_t ma;
	uint32_t p, i, o;

	sh->nr_cpus = cfg->nr_vps;
	sh->processes = cfg->processes;
	pthread_mutexattr_init(&ma);
	for (p = 0; p < cfg->processes; p++) {
		sh->want[p] = cfg->nr_vps;
		for (i = 0; i < cfg->locks; i++)
			pthread_mutex_init(&sh->procs[p].locks[i].mutex, &ma);
	}
	pthread_mutexattr_destroy(&ma);
	for (i = 0; i < cfg->nr_vps; i++)
		atomic_store(&sh->owner[i], MP_NOBODY);
	mp_reallocate(sh, MP_NOBODY);
	for (i = 0; i < cfg->nr_vps; i++) {
		o = atomic_load(&sh->owner[i]);
		if (o == MP_NOBODY)
			continue;
		if (cfg->variant == ACT_MP_ALLOCATION) {
			/* the VP on it starts owning it */
			atomic_store(&sh->busy[i], o + 1);
			atomic_fetch_add(&sh->owned[o], 1);
		}
	}
	if (cfg->variant != ACT_MP_ALLOCATION)
		for (p = 0; p < cfg->processes; p++)
			atomic_store(&sh->owned[p], cfg->nr_vps);
}

/*
 * Reap every child; kill them all first when the run failed, or as soon
 * as one fails (the others would wait for it forever).  Waits in poll()
 * on pidfds: the caller's other children are never reaped.  0 or -ECHILD.
 */
static int mp_reap(const pid_t *pids, uint32_t n, bool kill_them,
		   struct activations_mp_process *out)
{
	struct pollfd fds[ACT_MP_MAX_PROCESSES];
	uint32_t i, j, left = n;
	int err = 0, status;

	for (i = 0; i < n; i++) {
		if (kill_them)
			kill(pids[i], SIGKILL);
		fds[i].fd = (int)syscall(SYS_pidfd_open, pids[i], 0);
		fds[i].events = POLLIN;
	}
	while (left) {
		for (i = 0; i < n; i++)
			if (fds[i].fd < 0 && fds[i].events)
				break;
		/* no pidfd for one (an old kernel): wait for it in turn */
		if (i == n && poll(fds, n, -1) < 0 && errno != EINTR)
			break;
		for (i = 0; i < n; i++) {
			if (!fds[i].events ||
			    (fds[i].fd >= 0 && !(fds[i].revents & POLLIN)))
				continue;
			while (waitpid(pids[i], &status, 0) < 0 &&
			       errno == EINTR)
				;
			if (fds[i].fd >= 0)
				close(fds[i].fd);
			fds[i].fd = -1;
			fds[i].events = 0;
			left--;
			if (out)
				out[i].status = status;
			if (status && !err) {
				err = -ECHILD;
				for (j = 0; j < n; j++)
					if (fds[j].events)
						kill(pids[j], SIGKILL);
			}
		}
	}
	return kill_them ? 0 : err;
}

/* Has a child exited (not reaped: mp_reap does that)? */
static bool mp_any_exited(const pid_t *pids, uint32_t n)
{
	siginfo_t si;
	uint32_t i;

	for (i = 0; i < n; i++) {
		memset(&si, 0, sizeof(si));
		if (!waitid(P_PID, (id_t)pids[i], &si,
			    WEXITED | WNOHANG | WNOWAIT) &&
		    si.si_pid)
			return true;
	}
	return false;
}

static void mp_unregister(struct mp_shared *sh,
			  const struct activations_mp_config *cfg)
{
	uint32_t p, i, key;

	if (cfg->tids_fd < 0)
		return;
	for (p = 0; p < cfg->processes; p++)
		for (i = 0; i < cfg->nr_vps; i++) {
			key = (uint32_t)sh->procs[p].tids[i];
			if (key)
				lab_bpf_map_delete_elem(cfg->tids_fd, &key);
		}
}

int activations_mp_run(struct lab_handshake *hs,
		       const struct activations_mp_config *cfg,
		       struct activations_mp_process *out, double *step_ns)
{
	pid_t pids[ACT_MP_MAX_PROCESSES], parent = getpid();
	struct up_vp *slots = NULL;
	size_t slots_len = 0, len = sizeof(struct mp_shared);
	struct mp_shared *sh;
	uint64_t loops, t0;
	uint32_t p, n = 0, ready;
	int err, rerr;

	err = mp_check(cfg);
	if (err)
		return err;
	if (cfg->vps_fd >= 0) {
		err = up_map_slots(cfg->vps_fd, &slots, &slots_len);
		if (err)
			return err;
	}
	sh = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		  -1, 0);
	if (sh == MAP_FAILED) {
		err = -errno;
		goto out_slots;
	}
	mp_shared_init(sh, cfg);
	/* calibrated once, before the fork: every process does the same
	 * work per body */
	loops = act_calibrate();
	for (p = 0; p < cfg->processes; p++) {
		pids[p] = fork();
		if (pids[p] < 0) {
			err = -errno;
			goto out_kill;
		}
		if (!pids[p]) {
			struct mp_run *run = calloc(1, sizeof(*run));

			/* dies with the worker, even if it is killed */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent || !run)
				_exit(3);
			run->cfg = cfg;
			run->sh = sh;
			run->p = p;
			run->proc = &sh->procs[p];
			run->slots = slots;
			run->work_loops = cfg->work_ns * loops / 1000;
			run->cs_loops = cfg->cs_ns * loops / 1000;
			_exit(mp_child(run) ? 1 : 0);
		}
		n++;
	}
	t0 = now_ns();
	while ((ready = atomic_load(&sh->ready)) < n) {
		if (now_ns() - t0 > MP_READY_TIMEOUT_MS * 1000000ull) {
			err = -ETIMEDOUT;
			goto out_kill;
		}
		mp_futex_wait(&sh->ready, ready, 100);
		if (mp_any_exited(pids, n)) {
			err = -ECHILD;
			goto out_kill;
		}
	}
	for (p = 0; p < n; p++)
		if (sh->procs[p].err) {
			err = sh->procs[p].err;
			goto out_kill;
		}
	err = lab_handshake_ready(hs, pids, (int)n);
	if (err)
		goto out_kill;
	atomic_store(&sh->go, 1);
	mp_futex_wake(&sh->go);
	err = mp_reap(pids, n, false, out);
	n = 0;
	rerr = lab_handshake_done(hs);
	if (!err)
		err = rerr;
	if (err)
		goto out_unmap;
	for (p = 0; p < cfg->processes; p++) {
		struct mp_proc *proc = &sh->procs[p];

		out[p].begin_ns = proc->begin_ns;
		out[p].end_ns = proc->end_ns;
		out[p].pid = pids[p];
		out[p].counts = proc->counts;
		memcpy(step_ns + (size_t)p * cfg->time_steps, proc->step_ns,
		       cfg->time_steps * sizeof(double));
	}
	goto out_unmap;
out_kill:
	/* a child's set-up failed, or ours: none may outlive the call */
	for (p = 0; p < n; p++)
		atomic_store(&sh->procs[p].stop, 1);
	mp_reap(pids, n, true, NULL);
out_unmap:
	mp_unregister(sh, cfg);
	munmap(sh, len);
out_slots:
	if (slots)
		munmap(slots, slots_len);
	return err;
}
