/*
 * Family `activations`, part "critical sections that survive preemption"
 * (issue 14 item 2; seed 002: a VP preempted while its thread holds a lock
 * makes every other VP spin).  Fibers (fiber.c) on nr_vps pinned VP
 * threads take tasks: work_ns outside, then one of `locks` locks and cs_ns
 * inside, updating the lock's counter non-atomically (read, work, write:
 * an overlap loses an update, which the run counts).  SCHED_FIFO
 * competitors pinned on the VPs' CPUs preempt the VPs at random points.
 *
 * The locks are act_lock_internal.h's; the upcall program's preemption
 * function (lab_upcall_preempt) keeps each VP thread's slot, so the
 * holder's preemptions are counted from the kernel's switches, and the
 * informed variant lends a waiter's CPU to a preempted holder
 * (act_lend_cpu).  The rseq variant holds nothing: per-CPU counters
 * updated in an rseq critical section (glibc's registered area), which the
 * kernel aborts on preemption: the section restarts from its beginning.
 *
 * Built by native/build.py with the other native files.
 */
#include "internal.h"
#include "upcall_internal.h"

#include <linux/bpf.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/rseq.h>

#include "act_lock_internal.h"
#include "activations_cs.h"
#include "activations_internal.h"

#define CS_STACK (64 * 1024)

struct cs_rt;

struct cs_data {
	_Alignas(LAB_CACHELINE) volatile uint64_t count;
	pthread_mutex_t mutex; /* pthreads */
};

struct cs_fiber {
	struct lab_fiber ctx;
	struct cs_thread *th;
	uint32_t id;
	bool parked;
	uint64_t release_ns;
};

/* a VP's activation, or (pthreads) one kernel thread */
struct cs_thread {
	_Alignas(LAB_CACHELINE) struct lab_fiber sched;
	struct cs_rt *rt;
	pthread_t thread;
	bool have_thread;
	uint32_t index; /* = its slot in lab_upcall_vps */
	int cpu;	/* home CPU (pthreads: -1, free on the VPs' CPUs) */
	uint32_t nr_fibers;
	struct cs_fiber **fibers;
	struct act_lock_stats ls;
	struct activations_cs_counts st;
	_Atomic int32_t tid;
};

struct cs_competitor {
	struct cs_rt *rt;
	pthread_t thread;
	bool have_thread;
	int cpu;
	uint64_t phase_ns;
};

struct cs_rt {
	const struct activations_cs_config *cfg;
	int variant;
	uint64_t work_loops, cs_loops;
	struct cs_data *data;
	uint64_t *shards; /* rseq: [cpu][lock] */
	uint32_t nr_cpus, shard_stride;
	struct act_lock *locks;
	struct act_lock_host *hosts;
	struct act_lock_domain dom;
	struct up_vp *slots;
	size_t slots_len;
	uint32_t nr_threads;
	struct cs_thread *threads;
	struct cs_fiber *fibers;
	struct cs_competitor *comps;
	uint32_t nr_comps;

	_Alignas(LAB_CACHELINE) _Atomic uint64_t next_task;
	_Atomic uint64_t phase_end;
	uint64_t window_first; /* tasks before it are warm-up */
	uint64_t phase_start_ns;
	_Atomic uint32_t phase; /* bumped to start a phase */
	_Atomic uint32_t parked;
	_Atomic uint32_t started;
	_Atomic uint32_t stop;
	_Atomic uint32_t window;
	_Atomic int err;
	_Alignas(LAB_CACHELINE) _Atomic uint64_t bursts;
	_Atomic uint64_t nr_acq;
	_Atomic uint32_t *done;
	double *task_ns;
	struct activations_cs_acq *acq;
	uint64_t acq_cap;
};

static void cs_fail(struct cs_rt *rt, int err)
{
	int zero = 0;

	atomic_compare_exchange_strong(&rt->err, &zero, err);
}

static uint64_t cs_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t cs_preempt_seq(struct cs_rt *rt, uint32_t slot)
{
	return __atomic_load_n(&rt->slots[slot].preempt_seq, __ATOMIC_ACQUIRE);
}

/*
 * The rseq critical section: cs_loops of act_spin's multiplies, then the
 * commit, one store of count + 1 to this CPU's counter of the lock.  The
 * kernel moves a preempted (or migrated, or signalled) thread to the abort
 * handler, which restarts it; RSEQ_SIG before the handler is the
 * signature the kernel checks (the x86 selftests' ud1 encoding, so a
 * disassembler reads it as one instruction).  Linux 4.18+.
 */
static __attribute__((noinline)) void cs_rseq_add(struct rseq *rs,
						  struct cs_rt *rt,
						  uint32_t lock,
						  uint64_t *restarts)
{
	uint64_t *ptr;
	uint32_t cpu;

retry:
	cpu = __atomic_load_n(&rs->cpu_id_start, __ATOMIC_RELAXED);
	ptr = &rt->shards[(uint64_t)cpu * rt->shard_stride + lock];
	__asm__ goto(
		".pushsection __rseq_cs, \"aw\"\n\t"
		".balign 32\n"
		"3:\n\t"
		".long 0x0, 0x0\n\t"
		".quad 1f, (2f - 1f), 4f\n\t"
		".popsection\n\t"
		"leaq 3b(%%rip), %%rax\n\t"
		"movq %%rax, %[rseq_cs]\n"
		"1:\n\t"
		"cmpl %[cpu_id], %[cpu]\n\t"
		"jnz 4f\n\t"
		"movq %[loops], %%rcx\n\t"
		"movq %[loops], %%rdx\n\t"
		"testq %%rcx, %%rcx\n\t"
		"jz 6f\n"
		"5:\n\t"
		"imulq %[mul], %%rdx\n\t"
		"addq %[inc], %%rdx\n\t"
		"subq $1, %%rcx\n\t"
		"jnz 5b\n"
		"6:\n\t"
		"movq (%[ptr]), %%rax\n\t"
		"addq $1, %%rax\n\t"
		"movq %%rax, (%[ptr])\n"
		"2:\n\t"
		".pushsection __rseq_failure, \"ax\"\n\t"
		".byte 0x0f, 0xb9, 0x3d\n\t"
		".long 0x53053053\n"
		"4:\n\t"
		"jmp %l[abort]\n\t"
		".popsection\n\t"
		:
		: [rseq_cs] "m"(rs->rseq_cs), [cpu_id] "m"(rs->cpu_id),
		  [cpu] "r"(cpu), [ptr] "r"(ptr), [loops] "r"(rt->cs_loops),
		  [mul] "r"(6364136223846793005ull),
		  [inc] "r"(1442695040888963407ull)
		: "memory", "cc", "rax", "rcx", "rdx"
		: abort);
	return;
abort:
	(*restarts)++;
	goto retry;
}

static struct rseq *cs_rseq_area(void)
{
	return (struct rseq *)((char *)__builtin_thread_pointer() +
			       __rseq_offset);
}

/* Inside the lock: the protected update, observed. */
static void cs_section(struct cs_rt *rt, struct cs_thread *th, uint32_t fiber,
		       uint32_t lock)
{
	struct cs_data *d = &rt->data[lock];
	uint64_t seq, p0 = 0, p1 = 0;
	int cpu;

	if (rt->slots)
		p0 = cs_preempt_seq(rt, th->index);
	seq = d->count;
	act_spin(rt->cs_loops);
	if (rt->slots)
		p1 = cs_preempt_seq(rt, th->index);
	cpu = sched_getcpu();
	if (d->count != seq)
		th->st.exclusion_violations++;
	d->count = seq + 1;
	th->st.holder_preemptions += p1 - p0;
	if (p1 != p0) {
		th->st.preempted_sections++;
		if (th->cpu >= 0 && cpu != th->cpu)
			th->st.continued_elsewhere++;
	}
	if (rt->acq &&
	    atomic_load_explicit(&rt->window, memory_order_relaxed)) {
		uint64_t i = atomic_fetch_add(&rt->nr_acq, 1);

		if (i < rt->acq_cap)
			rt->acq[i] = (struct activations_cs_acq){
				.lock = lock,
				.fiber = fiber,
				.seq = (uint32_t)seq,
				.seq_release = (uint32_t)d->count,
				.preemptions = (uint32_t)(p1 - p0),
				.home_cpu = (uint32_t)th->cpu,
				.release_cpu = (uint32_t)cpu,
				.slot = th->index,
			};
	}
}

static void cs_task(struct cs_rt *rt, struct cs_thread *th, uint32_t fiber,
		    uint64_t t)
{
	uint32_t lock =
		(uint32_t)(cs_mix(rt->cfg->seed ^ cs_mix(t)) % rt->cfg->locks);
	struct cs_data *d = &rt->data[lock];
	uint64_t t0;

	act_spin(rt->work_loops);
	switch (rt->variant) {
	case ACT_CS_RSEQ:
		cs_rseq_add(cs_rseq_area(), rt, lock, &th->st.rseq_restarts);
		th->st.acquisitions++;
		break;
	case ACT_CS_PTHREADS:
		if (pthread_mutex_trylock(&d->mutex)) {
			th->ls.contended++;
			t0 = now_ns();
			pthread_mutex_lock(&d->mutex);
			th->ls.spin_ns += now_ns() - t0;
		}
		th->ls.acquisitions++;
		cs_section(rt, th, fiber, lock);
		pthread_mutex_unlock(&d->mutex);
		break;
	default:
		act_lock_acquire(&rt->locks[lock],
				 act_lock_word(fiber, th->index), &rt->dom,
				 &th->ls);
		cs_section(rt, th, fiber, lock);
		act_lock_release(&rt->locks[lock], &rt->dom, &th->ls);
		if (rt->variant == ACT_CS_INFORMED) {
			int err =
				act_lend_check(&rt->hosts[th->index], &th->ls);

			if (err)
				cs_fail(rt, err);
		}
		break;
	}
}

/* Take tasks until the phase has none; true if one was done. */
static bool cs_one(struct cs_rt *rt, struct cs_thread *th, struct cs_fiber *f)
{
	uint64_t t = atomic_fetch_add(&rt->next_task, 1), end;

	if (t >= atomic_load(&rt->phase_end))
		return false;
	cs_task(rt, th, f->id, t);
	end = now_ns();
	if (atomic_fetch_add(&rt->done[t], 1))
		th->st.duplicate_completions++;
	if (t >= rt->window_first) {
		th->st.completions++;
		rt->task_ns[t - rt->window_first] =
			(double)(end - f->release_ns);
	}
	f->release_ns = end;
	return true;
}

static void cs_fiber_main(void *arg)
{
	struct cs_fiber *f = arg;

	for (;;) {
		f->release_ns = f->th->rt->phase_start_ns;
		/* a task, then the VP's other fibers go first */
		while (cs_one(f->th->rt, f->th, f))
			lab_fiber_switch(&f->ctx, &f->th->sched);
		f->parked = true;
		lab_fiber_switch(&f->ctx, &f->th->sched);
	}
}

static void cs_run_phase(struct cs_rt *rt, struct cs_thread *th)
{
	struct cs_fiber self = { .th = th, .id = th->index };
	uint32_t active = th->nr_fibers, i;

	if (rt->variant == ACT_CS_PTHREADS) {
		self.release_ns = rt->phase_start_ns;
		while (cs_one(rt, th, &self))
			;
		return;
	}
	for (i = 0; i < th->nr_fibers; i++)
		th->fibers[i]->parked = false;
	while (active) {
		for (i = 0; i < th->nr_fibers; i++) {
			struct cs_fiber *f = th->fibers[i];

			if (f->parked)
				continue;
			lab_fiber_switch(&th->sched, &f->ctx);
			if (f->parked)
				active--;
		}
	}
}

static void *cs_thread_main(void *arg)
{
	struct cs_thread *th = arg;
	struct cs_rt *rt = th->rt;
	uint32_t seen = 0;

	atomic_store(&th->tid, (int32_t)gettid());
	if (th->cpu >= 0) {
		int err = lab_pin_self(th->cpu);

		if (err)
			cs_fail(rt, err);
	}
	atomic_fetch_add(&rt->started, 1);
	futex_wake((uint32_t *)&rt->started, 1);
	for (;;) {
		uint32_t ph = atomic_load(&rt->phase);

		if (atomic_load(&rt->stop))
			break;
		if (ph == seen) {
			act_futex_wait_ms(&rt->phase, ph, ACT_WAIT_SLICE_MS);
			continue;
		}
		seen = ph;
		cs_run_phase(rt, th);
		atomic_fetch_add(&rt->parked, 1);
		futex_wake((uint32_t *)&rt->parked, 1);
	}
	return NULL;
}

/* A pinned SCHED_FIFO thread: every period (from its own phase), a burst
 * of spinning that preempts whatever ran on its CPU. */
static void *cs_competitor_main(void *arg)
{
	struct cs_competitor *c = arg;
	struct cs_rt *rt = c->rt;
	const struct activations_cs_config *cfg = rt->cfg;
	struct sched_param sp = { .sched_priority = 1 };
	uint64_t next, t;
	int err;

	/* the default 50 us slack would move the wake-ups */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	err = lab_pin_self(c->cpu);
	if (!err)
		err = -pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
	if (err)
		cs_fail(rt, err);
	atomic_fetch_add(&rt->started, 1);
	futex_wake((uint32_t *)&rt->started, 1);
	if (err)
		return NULL;
	next = now_ns() + c->phase_ns;
	while (!atomic_load(&rt->stop)) {
		struct timespec ts = { (time_t)(next / 1000000000ull),
				       (long)(next % 1000000000ull) };

		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		if (atomic_load(&rt->stop))
			break;
		t = now_ns();
		if (atomic_load_explicit(&rt->window, memory_order_relaxed))
			atomic_fetch_add(&rt->bursts, 1);
		while (now_ns() - t < cfg->competitor_burst_ns)
			act_lock_pause();
		next += cfg->competitor_period_ns;
		if (next < now_ns())
			next = now_ns() + cfg->competitor_period_ns;
	}
	return NULL;
}

/* ---- set-up, phases, tear-down ------------------------------------------- */

/* the upcall program's slots, one per thread of the run (slot = thread) */
static int cs_map_slots(struct cs_rt *rt, int vps_fd)
{
	if (rt->nr_threads > UP_NR_VPS)
		return -EINVAL;
	return up_map_slots(vps_fd, &rt->slots, &rt->slots_len);
}

static int cs_check(const struct activations_cs_config *cfg)
{
	uint32_t i;

	if (cfg->variant < 0 || cfg->variant >= ACT_CS_NR_VARIANTS ||
	    !cfg->nr_vps || cfg->nr_vps > ACT_MAX_VPS || !cfg->vp_cpus ||
	    !cfg->concurrency || !cfg->locks || cfg->locks > ACT_CS_MAX_LOCKS ||
	    !cfg->tasks || cfg->competitors > ACT_CS_MAX_COMPETITORS ||
	    (cfg->competitors &&
	     cfg->competitor_burst_ns >= cfg->competitor_period_ns) ||
	    cfg->vps_fd < 0 || cfg->tids_fd < 0)
		return -EINVAL;
	if (cfg->variant == ACT_CS_PTHREADS ?
		    cfg->concurrency > ACT_CS_MAX_THREADS :
		    cfg->concurrency < cfg->nr_vps ||
			    cfg->concurrency > ACT_MAX_FIBERS ||
			    cfg->concurrency > ACT_LOCK_FIBER_MAX)
		return -EINVAL;
	for (i = 0; i < cfg->nr_vps; i++)
		if (cfg->vp_cpus[i] < 0 || cfg->vp_cpus[i] >= CPU_SETSIZE)
			return -EINVAL;
	return 0;
}

static void cs_teardown(struct cs_rt *rt)
{
	uint32_t i, key;

	atomic_store(&rt->stop, 1);
	atomic_fetch_add(&rt->phase, 1);
	futex_wake((uint32_t *)&rt->phase, INT32_MAX);
	for (i = 0; i < rt->nr_comps; i++)
		if (rt->comps[i].have_thread)
			pthread_join(rt->comps[i].thread, NULL);
	for (i = 0; i < rt->nr_threads; i++) {
		struct cs_thread *th = &rt->threads[i];

		if (!th->have_thread)
			continue;
		pthread_join(th->thread, NULL);
		key = (uint32_t)atomic_load(&th->tid);
		if (key)
			lab_bpf_map_delete_elem(rt->cfg->tids_fd, &key);
	}
	if (rt->fibers)
		for (i = 0; i < rt->cfg->concurrency; i++)
			lab_fiber_deinit(&rt->fibers[i].ctx);
	if (rt->slots)
		munmap(rt->slots, rt->slots_len);
	if (rt->data)
		for (i = 0; i < rt->cfg->locks; i++)
			pthread_mutex_destroy(&rt->data[i].mutex);
	if (rt->hosts)
		for (i = 0; i < rt->nr_threads; i++)
			pthread_mutex_destroy(&rt->hosts[i].move);
	if (rt->threads)
		for (i = 0; i < rt->nr_threads; i++)
			free(rt->threads[i].fibers);
	free(rt->data);
	free(rt->shards);
	free(rt->locks);
	free(rt->hosts);
	free(rt->threads);
	free(rt->fibers);
	free(rt->comps);
	free(rt->done);
}

static void *cs_zalloc(size_t n, size_t size)
{
	void *p;

	if (posix_memalign(&p, LAB_CACHELINE, n * size + LAB_CACHELINE))
		return NULL;
	memset(p, 0, n * size + LAB_CACHELINE);
	return p;
}

static int cs_setup(struct cs_rt *rt)
{
	const struct activations_cs_config *cfg = rt->cfg;
	bool fibers = cfg->variant != ACT_CS_PTHREADS;
	uint32_t i, per;
	int err;

	rt->nr_threads = fibers ? cfg->nr_vps : cfg->concurrency;
	rt->nr_comps = cfg->competitors;
	rt->nr_cpus = (uint32_t)sysconf(_SC_NPROCESSORS_CONF);
	rt->shard_stride = (cfg->locks + 7) & ~7u; /* a CPU's row: own lines */
	rt->data = cs_zalloc(cfg->locks, sizeof(*rt->data));
	rt->shards = cs_zalloc((size_t)rt->nr_cpus * rt->shard_stride,
			       sizeof(uint64_t));
	rt->locks = cs_zalloc(cfg->locks, sizeof(*rt->locks));
	rt->hosts = cs_zalloc(rt->nr_threads, sizeof(*rt->hosts));
	rt->threads = cs_zalloc(rt->nr_threads, sizeof(*rt->threads));
	rt->comps = cs_zalloc(rt->nr_comps + 1, sizeof(*rt->comps));
	rt->done = cs_zalloc(cfg->warmup_tasks + cfg->tasks, sizeof(*rt->done));
	if (fibers)
		rt->fibers = cs_zalloc(cfg->concurrency, sizeof(*rt->fibers));
	if (!rt->data || !rt->shards || !rt->locks || !rt->hosts ||
	    !rt->threads || !rt->comps || !rt->done || (fibers && !rt->fibers))
		return -ENOMEM;
	for (i = 0; i < cfg->locks; i++) {
		act_lock_init(&rt->locks[i]);
		pthread_mutex_init(&rt->data[i].mutex, NULL);
	}
	err = cs_map_slots(rt, cfg->vps_fd);
	if (err)
		return err;
	rt->dom = (struct act_lock_domain){
		.policy = cfg->variant == ACT_CS_SPIN_YIELD ?
				  ACT_LOCK_SPIN_YIELD :
			  cfg->variant == ACT_CS_INFORMED ? ACT_LOCK_INFORMED :
							    ACT_LOCK_OBLIVIOUS,
		.spin_limit = cfg->spin_limit,
		.slots = rt->slots,
		.hosts = rt->hosts,
		.nr_slots = rt->nr_threads,
		.recover = act_lend_cpu,
	};
	per = (cfg->concurrency + rt->nr_threads - 1) / rt->nr_threads;
	for (i = 0; i < rt->nr_threads; i++) {
		struct cs_thread *th = &rt->threads[i];

		th->rt = rt;
		th->index = i;
		th->cpu = fibers ? cfg->vp_cpus[i] : -1;
		th->fibers = fibers ? cs_zalloc(per, sizeof(*th->fibers)) :
				      NULL;
		if (fibers && !th->fibers)
			return -ENOMEM;
		err = act_lock_host_init(&rt->hosts[i], 0, th->cpu);
		if (err)
			return err;
	}
	for (i = 0; fibers && i < cfg->concurrency; i++) {
		struct cs_fiber *f = &rt->fibers[i];
		struct cs_thread *th = &rt->threads[i % rt->nr_threads];

		f->id = i;
		f->th = th;
		th->fibers[th->nr_fibers++] = f;
		err = lab_fiber_init(&f->ctx, CS_STACK, cs_fiber_main, f);
		if (err)
			return err;
	}
	for (i = 0; i < rt->nr_comps; i++) {
		rt->comps[i].rt = rt;
		rt->comps[i].cpu = cfg->vp_cpus[i % cfg->nr_vps];
		rt->comps[i].phase_ns =
			cfg->competitor_period_ns ?
				cs_mix(cfg->seed + 1000 + i) %
					cfg->competitor_period_ns :
				0;
	}
	return 0;
}

static int cs_start(struct cs_rt *rt)
{
	const struct activations_cs_config *cfg = rt->cfg;
	uint32_t i, want = rt->nr_threads + rt->nr_comps, n;
	uint64_t deadline = now_ns() + 10ull * 1000000000ull;
	cpu_set_t set;
	int err;

	CPU_ZERO(&set);
	for (i = 0; i < cfg->nr_vps; i++)
		CPU_SET(cfg->vp_cpus[i], &set);
	for (i = 0; i < rt->nr_threads; i++) {
		struct cs_thread *th = &rt->threads[i];

		err = -pthread_create(&th->thread, NULL, cs_thread_main, th);
		if (err)
			return err;
		th->have_thread = true;
		if (th->cpu < 0)
			pthread_setaffinity_np(th->thread, sizeof(set), &set);
	}
	for (i = 0; i < rt->nr_comps; i++) {
		err = -pthread_create(&rt->comps[i].thread, NULL,
				      cs_competitor_main, &rt->comps[i]);
		if (err)
			return err;
		rt->comps[i].have_thread = true;
	}
	while ((n = atomic_load(&rt->started)) < want) {
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		act_futex_wait_ms(&rt->started, n, ACT_WAIT_SLICE_MS);
	}
	if (atomic_load(&rt->err))
		return atomic_load(&rt->err);
	/* from here on the program keeps each thread's slot */
	for (i = 0; i < rt->nr_threads; i++) {
		uint32_t key = (uint32_t)atomic_load(&rt->threads[i].tid);

		atomic_store(&rt->hosts[i].tid, (int32_t)key);
		err = lab_bpf_map_update_elem(cfg->tids_fd, &key, &i, BPF_ANY);
		if (err)
			return err;
	}
	return 0;
}

static int cs_phase(struct cs_rt *rt, uint64_t first, uint64_t end)
{
	uint32_t n;

	atomic_store(&rt->parked, 0);
	atomic_store(&rt->next_task, first);
	atomic_store(&rt->phase_end, end);
	rt->phase_start_ns = now_ns();
	atomic_fetch_add(&rt->phase, 1);
	futex_wake((uint32_t *)&rt->phase, INT32_MAX);
	while ((n = atomic_load(&rt->parked)) < rt->nr_threads) {
		if (atomic_load(&rt->err))
			return atomic_load(&rt->err);
		act_futex_wait_ms(&rt->parked, n, ACT_WAIT_SLICE_MS);
	}
	return atomic_load(&rt->err);
}

static void cs_sum(struct cs_rt *rt, struct activations_cs_counts *sum)
{
	uint32_t i;

	memset(sum, 0, sizeof(*sum));
	for (i = 0; i < rt->nr_threads; i++) {
		struct cs_thread *th = &rt->threads[i];
		struct act_lock_stats *ls = &th->ls;

		th->st.acquisitions += ls->acquisitions;
		th->st.contended += ls->contended;
		th->st.spin_ns += ls->spin_ns;
		th->st.spin_iters += ls->spin_iters;
		th->st.yields += ls->yields;
		th->st.futex_waits += ls->futex_waits;
		th->st.saw_preempted += ls->saw_preempted;
		th->st.recoveries += ls->recoveries;
		th->st.lent_ns += ls->lent_ns;
		th->st.returns += ls->returns;
		memset(ls, 0, sizeof(*ls));
#define CS_ADD(name) sum->name += th->st.name;
		ACTIVATIONS_CS_COUNTERS(CS_ADD)
#undef CS_ADD
	}
}

static uint64_t cs_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int activations_cs_run(struct lab_handshake *hs,
		       const struct activations_cs_config *cfg, double *task_ns,
		       struct activations_cs_acq *acq, uint64_t acq_cap,
		       uint64_t *nr_acq, struct activations_cs_counts *out)
{
	struct cs_rt rt = { .cfg = cfg };
	struct activations_cs_counts before, after;
	uint64_t loops, cpu0, cpu_ns, total, lost = 0, i, c;
	int err;

	if (!lab_fiber_supported())
		return -ENOTSUP;
	err = cs_check(cfg);
	if (err)
		return err;
	if (cfg->variant == ACT_CS_RSEQ && (int)__rseq_size <= 0)
		return -ENOTSUP; /* glibc.pthread.rseq=0: nothing registered */
	rt.variant = cfg->variant;
	loops = act_calibrate();
	rt.work_loops = cfg->work_ns * loops / 1000;
	rt.cs_loops = cfg->cs_ns * loops / 1000;
	rt.task_ns = task_ns;
	rt.window_first = cfg->warmup_tasks;
	total = cfg->warmup_tasks + cfg->tasks;
	err = cs_setup(&rt);
	if (!err)
		err = cs_start(&rt);
	if (!err && cfg->warmup_tasks)
		err = cs_phase(&rt, 0, cfg->warmup_tasks);
	if (err)
		goto out;
	cs_sum(&rt, &before);
	rt.acq = acq;
	rt.acq_cap = acq ? acq_cap : 0;
	err = lab_handshake_ready(hs, NULL, 0);
	if (err)
		goto out;
	atomic_store(&rt.window, 1);
	cpu0 = cs_cpu_ns();
	err = cs_phase(&rt, cfg->warmup_tasks, total);
	atomic_store(&rt.window, 0);
	cpu_ns = cs_cpu_ns() - cpu0;
	if (err)
		goto out;
	err = lab_handshake_done(hs);
	if (err)
		goto out;
	cs_sum(&rt, &after);
#define CS_DELTA(name) out->name = after.name - before.name;
	ACTIVATIONS_CS_COUNTERS(CS_DELTA)
#undef CS_DELTA
	/* the protected counters: every section's update, none lost */
	for (i = 0; i < cfg->locks; i++) {
		c = rt.data[i].count;
		for (uint32_t cpu = 0; cpu < rt.nr_cpus; cpu++)
			c += rt.shards[(uint64_t)cpu * rt.shard_stride + i];
		lost += c;
	}
	out->exclusion_violations += lost > total ? lost - total : total - lost;
	out->competitor_bursts = atomic_load(&rt.bursts);
	out->cpu_ns = cpu_ns;
	out->threads = rt.nr_threads;
	out->loops_per_us = loops;
	if (nr_acq) {
		uint64_t n = atomic_load(&rt.nr_acq);

		*nr_acq = n < rt.acq_cap ? n : rt.acq_cap;
	}
out:
	cs_teardown(&rt);
	return err;
}
