/*
 * Family `upcall`: rseq aborts as the preemption upcall into the
 * preempted thread (seed 002: "processor has been preempted").
 *
 * glibc (2.35+) registers rseq for every thread, and a process may not
 * register a second area: the critical section uses glibc's (thread
 * pointer + __rseq_offset, <sys/rseq.h>).  The section is a spin loop
 * whose first instruction stores the descriptor's address in rseq_cs, so
 * the loop is always covered: on preemption (and migration, signal
 * delivery) the kernel, returning to user space, finds the thread's
 * instruction pointer inside [start_ip, start_ip + post_commit_offset),
 * checks the RSEQ_SIG word just before abort_ip, clears rseq_cs, fires
 * rseq:rseq_ip_fixup and resumes the thread at abort_ip (kernel/rseq.c,
 * rseq_ip_fixup(); Linux 4.18).  The pattern -- the signature as the
 * operand of a ud1, the handler right after it -- is the kernel
 * selftests' (tools/testing/selftests/rseq/rseq-x86.h).
 *
 * Build: part of lab._native (native/build.py), -lpthread.
 */
#include <linux/bpf.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <sys/timerfd.h>
#include <stdlib.h>
#include <unistd.h>

#include "upcall_preempt.h"
#include "bpf_ring.h"
#include "internal.h"
#include "upcall_abi.h"
#include "upcall_internal.h"

#define UP_RSEQ_GAP_NS	 200000ull /* the competitor's sleep */
#define UP_RSEQ_BURST_NS 20000ull  /* ... and its run */

#if defined(__x86_64__)
/*
 * int lab_up_rseq_spin(struct rseq *rs, const uint32_t *hold): spin in
 * the critical section until *hold is non-zero (0) or the kernel aborts
 * it (1).  The descriptor is 32-byte aligned (struct rseq_cs) and holds
 * absolute addresses: .data.rel.ro, relocated at load.
 */
__asm__(".pushsection .data.rel.ro, \"aw\"\n\t"
	".balign 32\n"
	".Lup_rseq_cs:\n\t"
	".long 0, 0\n\t" /* version, flags: restart on every event */
	".quad .Lup_rseq_start, .Lup_rseq_post - .Lup_rseq_start, "
	".Lup_rseq_abort\n\t"
	".popsection\n\t"
	".text\n\t"
	".globl lab_up_rseq_spin\n\t"
	".hidden lab_up_rseq_spin\n\t"
	".type lab_up_rseq_spin, @function\n"
	"lab_up_rseq_spin:\n\t"
	"leaq .Lup_rseq_cs(%rip), %rax\n"
	".Lup_rseq_start:\n\t"
	"movq %rax, 8(%rdi)\n\t" /* rs->rseq_cs */
	"cmpl $0, (%rsi)\n\t"
	"jne .Lup_rseq_post\n\t"
	"pause\n\t"
	"jmp .Lup_rseq_start\n"
	".Lup_rseq_post:\n\t"
	"xorl %eax, %eax\n\t"
	"ret\n\t"
	".byte 0x0f, 0xb9, 0x3d\n\t" /* ud1 RSEQ_SIG(%rip), %edi */
	".long 0x53053053\n"
	".Lup_rseq_abort:\n\t"
	"movl $1, %eax\n\t"
	"ret\n\t"
	".size lab_up_rseq_spin, . - lab_up_rseq_spin\n");

int lab_up_rseq_spin(struct rseq *rs, const _Atomic uint32_t *hold);

_Static_assert(offsetof(struct rseq, rseq_cs) == 8, "rseq_cs at 8");
_Static_assert(RSEQ_SIG == 0x53053053, "the signature the asm carries");
#endif

static struct rseq *up_rseq_area(void)
{
	return (struct rseq *)((char *)__builtin_thread_pointer() +
			       __rseq_offset);
}

int upcall_rseq_available(void)
{
#if defined(__x86_64__)
	/* __rseq_size 0: glibc did not register (glibc.pthread.rseq=0);
	 * 2.36 says 20, the original ABI's fields through flags: enough */
	if (__rseq_size >= 20 && (int32_t)up_rseq_area()->cpu_id >= 0)
		return 0;
#endif
	return -EOPNOTSUPP;
}

struct up_rseq {
	int cpu, priority;
	_Atomic uint32_t go;   /* harness -> worker: registered, spin */
	_Atomic uint32_t hold; /* harness -> worker: leave the section */
	_Atomic uint32_t done; /* competitor -> harness */
	_Atomic int32_t worker_tid, competitor_tid;
	_Atomic uint64_t aborts;
	_Atomic int err;
	uint32_t nr_wakes;
	uint64_t nivcsw;
};

static int up_set_fifo(int priority)
{
	struct sched_param sp = { .sched_priority = priority };

	return -pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
}

/* a thread's involuntary switches, the kernel's count */
static uint64_t up_nivcsw(pid_t tid)
{
	char line[128];
	unsigned long long n = 0;
	FILE *f;

	snprintf(line, sizeof(line), "/proc/self/task/%d/status", (int)tid);
	f = fopen(line, "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "nonvoluntary_ctxt_switches: %llu", &n) == 1)
			break;
	fclose(f);
	return n;
}

static void *up_rseq_worker(void *arg)
{
	struct up_rseq *r = arg;
	uint64_t n0;
	int err = up_set_fifo(r->priority - 1);

	atomic_store(&r->worker_tid, (int32_t)gettid());
	if (err) {
		atomic_store(&r->err, err);
		return NULL;
	}
	/* a FIFO thread spinning on its CPU: wait for go with a yield (no
	 * block, no abort: not in the section yet) */
	while (!atomic_load(&r->go))
		sched_yield();
	n0 = up_nivcsw(gettid());
#if defined(__x86_64__)
	while (lab_up_rseq_spin(up_rseq_area(), &r->hold))
		atomic_fetch_add(&r->aborts, 1); /* the handler: an abort */
#endif
	r->nivcsw = up_nivcsw(gettid()) - n0;
	return NULL;
}

static void *up_rseq_competitor(void *arg)
{
	struct up_rseq *r = arg;
	uint64_t t;
	uint32_t i;
	int err = up_set_fifo(r->priority);

	atomic_store(&r->competitor_tid, (int32_t)gettid());
	while (!err && !atomic_load(&r->go))
		up_sleep_until(now_ns() + UP_RSEQ_GAP_NS);
	for (i = 0; !err && i < r->nr_wakes; i++) {
		/* each wake takes the CPU from the worker spinning there */
		err = up_sleep_until(now_ns() + UP_RSEQ_GAP_NS);
		t = now_ns();
		while (now_ns() < t + UP_RSEQ_BURST_NS)
			up_pause();
	}
	if (err)
		atomic_store(&r->err, err);
	atomic_store(&r->done, 1);
	return NULL;
}

/* a thread pinned to cpu; fifo > 0: born SCHED_FIFO at that priority
 * (a SCHED_OTHER thread made on a CPU a FIFO thread spins on would not
 * run until the fair server gave it time) */
static int up_rseq_spawn(pthread_t *t, int cpu, int fifo, void *(*fn)(void *),
			 void *arg)
{
	struct sched_param sp = { .sched_priority = fifo };
	pthread_attr_t attr;
	cpu_set_t set;
	int err = -pthread_attr_init(&attr);

	if (err)
		return err;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	err = -pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	if (!err && fifo > 0) {
		err = -pthread_attr_setinheritsched(&attr,
						    PTHREAD_EXPLICIT_SCHED);
		if (!err)
			err = -pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
		if (!err)
			err = -pthread_attr_setschedparam(&attr, &sp);
	}
	if (!err)
		err = -pthread_create(t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return err;
}

int upcall_rseq_aborts(const struct upcall_maps *maps, int cpu,
		       int competitor_priority, uint32_t nr_wakes,
		       struct upcall_rseq_result *out)
{
	struct up_rseq r;
	struct up_vp *vps = NULL, *slot;
	size_t len = 0;
	pthread_t worker, competitor;
	bool have_worker = false, have_competitor = false, registered = false;
	uint64_t fixups0 = 0, preempt0 = 0;
	uint32_t vp = UP_VP, key = 0;
	int err;

	memset(out, 0, sizeof(*out));
	if (competitor_priority < 2 || competitor_priority > 99)
		return -EINVAL;
	err = upcall_rseq_available();
	if (err)
		return err;
	memset(&r, 0, sizeof(r));
	r.cpu = cpu;
	r.priority = competitor_priority;
	r.nr_wakes = nr_wakes;
	err = up_map_slots(maps->vps_fd, &vps, &len);
	if (err)
		return err;
	slot = &vps[UP_VP];
	err = up_rseq_spawn(&worker, cpu, 0, up_rseq_worker, &r);
	if (err)
		goto out;
	have_worker = true;
	while (!atomic_load(&r.worker_tid))
		sched_yield();
	key = (uint32_t)atomic_load(&r.worker_tid);
	/* registered before it enters the section: every fixup counts */
	err = lab_bpf_map_update_elem(maps->tids_fd, &key, &vp, BPF_ANY);
	if (err)
		goto out;
	registered = true;
	fixups0 = __atomic_load_n(&slot->rseq_fixups, __ATOMIC_ACQUIRE);
	preempt0 = __atomic_load_n(&slot->preempt_seq, __ATOMIC_ACQUIRE);
	err = up_rseq_spawn(&competitor, cpu, 0, up_rseq_competitor, &r);
	if (err)
		goto out;
	have_competitor = true;
	atomic_store(&r.go, 1);
	while (!atomic_load(&r.done) && !atomic_load(&r.err))
		up_sleep_until(now_ns() + 1000000ull);
out:
	atomic_store(&r.go, 1);
	atomic_store(&r.hold, 1);
	if (have_competitor)
		pthread_join(competitor, NULL);
	if (have_worker)
		pthread_join(worker, NULL);
	/* after the worker left the section: no fixup can come later */
	if (registered) {
		int e2 = lab_bpf_map_delete_elem(maps->tids_fd, &key);

		if (!err)
			err = e2;
	}
	if (!err)
		err = atomic_load(&r.err);
	out->wakes = nr_wakes;
	out->aborts = atomic_load(&r.aborts);
	out->fixups =
		__atomic_load_n(&slot->rseq_fixups, __ATOMIC_ACQUIRE) - fixups0;
	out->preemptions =
		__atomic_load_n(&slot->preempt_seq, __ATOMIC_ACQUIRE) -
		preempt0;
	out->nivcsw = r.nivcsw;
	out->worker_tid = (uint64_t)atomic_load(&r.worker_tid);
	out->competitor_tid = (uint64_t)atomic_load(&r.competitor_tid);
	munmap(vps, len);
	return err;
}

/* ---- preemption upcalls --------------------------------------------------- */

#define UP_PREEMPT_GAP_NS	100000ull     /* arming -> the timer's expiry */
#define UP_PREEMPT_TIMEOUT_NS	2000000000ull /* a wake that never comes */
#define UP_PREEMPT_VERDICT_HIT	1u
#define UP_PREEMPT_VERDICT_MISS 2u

struct up_preempt {
	const struct upcall_preempt_config *cfg;
	struct upcall_preempt_counts *out;
	struct up_vp *slot;
	int tfd; /* the competitor's timerfd, armed by the scheduler */
	_Atomic uint32_t stop;
	_Atomic int32_t worker_tid, competitor_tid;
	_Atomic uint64_t armed_seq; /* preempt_seq when the timer was armed */
	_Atomic uint32_t verdict;   /* competitor: UP_PREEMPT_VERDICT_* */
	_Atomic int err;
	bool have_ring;
	struct bpf_ring ring;
	uint64_t ring_seq; /* the last record's */
	/* the current wake, as the scheduler learnt it */
	uint64_t last_seq, t_event, t_recv;
	bool hit, counting;
};

/* spins until told to stop: no system call, so every switch out is a
 * preemption */
static void *up_preempt_worker(void *arg)
{
	struct up_preempt *u = arg;

	atomic_store(&u->worker_tid, (int32_t)gettid());
	while (!atomic_load_explicit(&u->stop, memory_order_relaxed))
		up_pause();
	return NULL;
}

static void *up_preempt_competitor(void *arg)
{
	struct up_preempt *u = arg;
	int32_t me = (int32_t)gettid();
	uint64_t expiries, t;
	ssize_t n;

	atomic_store(&u->competitor_tid, me);
	for (;;) {
		n = read(u->tfd, &expiries, sizeof(expiries));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(expiries)) {
			atomic_store(&u->err, n < 0 ? -errno : -EIO);
			break;
		}
		if (atomic_load(&u->stop))
			break;
		t = now_ns();
		while (now_ns() < t + u->cfg->burst_ns)
			up_pause();
		/* the worker cannot be switched out again while this runs
		 * on its CPU: the last preemption is this wake's, if any */
		atomic_store(
			&u->verdict,
			__atomic_load_n(&u->slot->preempt_seq,
					__ATOMIC_ACQUIRE) !=
						atomic_load(&u->armed_seq) &&
					(int32_t)__atomic_load_n(
						&u->slot->preempted_by,
						__ATOMIC_RELAXED) == me ?
				UP_PREEMPT_VERDICT_HIT :
				UP_PREEMPT_VERDICT_MISS);
	}
	return NULL;
}

static int up_preempt_arm(struct up_preempt *u, uint64_t delay_ns)
{
	struct itimerspec its = { .it_value = up_ts(now_ns() + delay_ns) };

	atomic_store(&u->armed_seq,
		     __atomic_load_n(&u->slot->preempt_seq, __ATOMIC_ACQUIRE));
	atomic_store(&u->verdict, 0);
	if (timerfd_settime(u->tfd, TFD_TIMER_ABSTIME, &its, NULL))
		return -errno;
	return 0;
}

/* a preemption published: the competitor's is the sample, another
 * thread's is counted */
static void up_preempt_seen(struct up_preempt *u, uint64_t t_event, uint32_t by,
			    uint64_t t_recv)
{
	if ((int32_t)by == atomic_load(&u->competitor_tid)) {
		u->hit = true;
		u->t_event = t_event;
		u->t_recv = t_recv;
		if (u->counting)
			u->out->by_competitor++;
	} else if (u->counting) {
		u->out->others++;
	}
}

static int up_preempt_record(void *ctx, const void *data, uint32_t len)
{
	struct up_preempt *u = ctx;
	const struct up_event *ev = data;
	uint64_t t = now_ns();

	if (len != sizeof(*ev) || ev->vp != UP_VP ||
	    ev->kind != UP_KIND_PREEMPT || ev->seq <= u->ring_seq) {
		u->out->ring_bad++;
		return 0;
	}
	if ((int32_t)ev->tid != atomic_load(&u->worker_tid)) {
		u->out->foreign++;
		return 0;
	}
	u->ring_seq = ev->seq;
	up_preempt_seen(u, ev->ktime_ns, ev->other_tid, t);
	return 0;
}

/* bpf_flag: look at the slot once */
static void up_preempt_look(struct up_preempt *u)
{
	uint64_t seq = __atomic_load_n(&u->slot->preempt_seq, __ATOMIC_ACQUIRE);
	uint64_t t = now_ns();

	if (seq == u->last_seq)
		return;
	if (u->counting)
		u->out->missed_events += seq - u->last_seq - 1;
	u->last_seq = seq;
	up_preempt_seen(
		u, __atomic_load_n(&u->slot->preempt_ns, __ATOMIC_RELAXED),
		__atomic_load_n(&u->slot->preempted_by, __ATOMIC_RELAXED), t);
}

/* One competitor wake: 0 with u->hit set if it preempted the worker (and
 * the scheduler learnt of it), 1 if it did not (a retry), or -errno. */
static int up_preempt_wake(struct up_preempt *u)
{
	uint64_t deadline = now_ns() + UP_PREEMPT_TIMEOUT_NS;
	uint32_t v = 0;
	int n, err;

	u->hit = false;
	err = up_preempt_arm(u, UP_PREEMPT_GAP_NS);
	if (err)
		return err;
	/* done when the competitor has spoken and, if it preempted the
	 * worker, the scheduler has seen that preemption */
	while (!(v && (u->hit || v == UP_PREEMPT_VERDICT_MISS ||
		       u->cfg->bystander))) {
		if (atomic_load(&u->err))
			return atomic_load(&u->err);
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		if (u->have_ring) {
			n = bpf_ring_wait(&u->ring, 1);
			if (n < 0)
				return n;
			n = bpf_ring_consume(&u->ring, up_preempt_record, u);
			if (n < 0)
				return n;
			if (u->counting)
				u->out->ring_records += (uint64_t)n;
		} else if (!u->cfg->bystander) {
			up_preempt_look(u);
		} else {
			up_pause();
		}
		v = atomic_load(&u->verdict);
	}
	if (u->counting)
		u->out->wakes++;
	if (u->hit || u->cfg->bystander)
		return 0;
	if (u->counting)
		u->out->retries++;
	return 1;
}

static int up_preempt_check(const struct upcall_preempt_config *cfg,
			    const struct upcall_maps *maps)
{
	if ((cfg->mechanism != UPCALL_BPF_RINGBUF &&
	     cfg->mechanism != UPCALL_BPF_FLAG) ||
	    cfg->cpu == cfg->sched_cpu || cfg->cpu < 0 || cfg->sched_cpu < 0 ||
	    cfg->competitor_priority < 2 || cfg->competitor_priority > 99 ||
	    maps->vps_fd < 0 || maps->tids_fd < 0 ||
	    (cfg->mechanism == UPCALL_BPF_RINGBUF && maps->ring_fd < 0))
		return -EINVAL;
	return 0;
}

/* the window's loop: warm-up, then nr_samples preemptions */
static int up_preempt_loop(struct up_preempt *u, struct lab_handshake *hs,
			   double *latency_ns)
{
	const struct upcall_preempt_config *cfg = u->cfg;
	uint64_t taken = 0, total = cfg->warmup + cfg->nr_samples;
	uint64_t base_seq = 0, base_nivcsw = 0;
	pid_t worker = atomic_load(&u->worker_tid);
	int err = 0;

	while (!err && taken < total) {
		if (taken == cfg->warmup && !u->counting) {
			err = lab_handshake_ready(hs, NULL, 0);
			if (err)
				break;
			base_seq = __atomic_load_n(&u->slot->preempt_seq,
						   __ATOMIC_ACQUIRE);
			base_nivcsw = up_nivcsw(worker);
			u->counting = true;
		}
		err = up_preempt_wake(u);
		if (err == 1) {
			err = 0;
			continue;
		}
		if (err)
			break;
		if (u->counting && !cfg->bystander)
			latency_ns[taken - cfg->warmup] = up_delta(
				u->t_recv, u->t_event, &u->out->clamped);
		taken++;
	}
	if (err)
		return err;
	u->out->upcalls = cfg->bystander ? 0 : cfg->nr_samples;
	u->out->preemptions =
		__atomic_load_n(&u->slot->preempt_seq, __ATOMIC_ACQUIRE) -
		base_seq;
	u->out->worker_nivcsw = up_nivcsw(worker) - base_nivcsw;
	return lab_handshake_done(hs);
}

int upcall_preempt_run(struct lab_handshake *hs,
		       const struct upcall_preempt_config *cfg,
		       const struct upcall_maps *maps, double *latency_ns,
		       struct upcall_preempt_counts *out)
{
	struct up_preempt *u;
	struct up_vp *vps = NULL;
	size_t len = 0;
	cpu_set_t saved;
	pthread_t worker, competitor;
	bool have_worker = false, have_competitor = false, registered = false;
	uint64_t base_lost = 0;
	uint32_t vp = UP_VP, key = 0;
	int err, e2;

	memset(out, 0, sizeof(*out));
	err = up_preempt_check(cfg, maps);
	if (err)
		return err;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->cfg = cfg;
	u->out = out;
	u->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (u->tfd < 0) {
		err = -errno;
		free(u);
		return err;
	}
	err = lab_pin_saving(cfg->sched_cpu, &saved);
	if (err) {
		close(u->tfd);
		free(u);
		return err;
	}
	err = up_map_slots(maps->vps_fd, &vps, &len);
	if (err)
		goto out;
	u->slot = &vps[UP_VP];
	base_lost = __atomic_load_n(&u->slot->ring_lost, __ATOMIC_ACQUIRE);
	if (cfg->mechanism == UPCALL_BPF_RINGBUF) {
		err = bpf_ring_open(&u->ring, maps->ring_fd);
		if (err)
			goto out;
		u->have_ring = true;
		__atomic_store_n(&u->slot->ring_kinds, 1u << UP_KIND_PREEMPT,
				 __ATOMIC_RELEASE);
	}
	/* the competitor first: asleep in read() before the worker spins */
	err = up_rseq_spawn(&competitor, cfg->cpu, cfg->competitor_priority,
			    up_preempt_competitor, u);
	if (err)
		goto out;
	have_competitor = true;
	err = up_rseq_spawn(&worker, cfg->cpu, cfg->competitor_priority - 1,
			    up_preempt_worker, u);
	if (err)
		goto out;
	have_worker = true;
	while (!atomic_load(&u->worker_tid) || !atomic_load(&u->competitor_tid))
		up_pause();
	out->worker_tid = (uint64_t)atomic_load(&u->worker_tid);
	out->competitor_tid = (uint64_t)atomic_load(&u->competitor_tid);
	if (!cfg->bystander) {
		key = (uint32_t)out->worker_tid;
		err = lab_bpf_map_update_elem(maps->tids_fd, &key, &vp,
					      BPF_ANY);
		if (err)
			goto out;
		registered = true;
	}
	u->last_seq = __atomic_load_n(&u->slot->preempt_seq, __ATOMIC_ACQUIRE);
	err = up_preempt_loop(u, hs, latency_ns);
out:
	/* unregistered before the worker exits: its last switch is no
	 * preemption, and nothing is published after the counts */
	if (registered) {
		e2 = lab_bpf_map_delete_elem(maps->tids_fd, &key);
		if (!err)
			err = e2;
	}
	atomic_store(&u->stop, 1);
	if (have_competitor) {
		e2 = up_preempt_arm(u, 0); /* wake it to see stop */
		if (!err)
			err = e2;
		pthread_join(competitor, NULL);
	}
	if (have_worker)
		pthread_join(worker, NULL);
	if (!err)
		err = atomic_load(&u->err);
	if (u->have_ring) {
		e2 = bpf_ring_consume(&u->ring, up_preempt_record, u);
		if (e2 > 0)
			out->ring_records += (uint64_t)e2;
		else if (e2 < 0 && !err)
			err = e2;
		bpf_ring_close(&u->ring);
	}
	if (u->slot) {
		__atomic_store_n(&u->slot->ring_kinds, 0, __ATOMIC_RELAXED);
		out->ring_lost =
			__atomic_load_n(&u->slot->ring_lost, __ATOMIC_ACQUIRE) -
			base_lost;
	}
	if (vps)
		munmap(vps, len);
	close(u->tfd);
	free(u);
	lab_unpin(&saved);
	return err;
}
