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
#include <stdlib.h>
#include <unistd.h>

#include "upcall_preempt.h"
#include "bpf_ring.h"
#include "internal.h"
#include "upcall_abi.h"
#include "upcall_internal.h"

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

/* ---- preemption upcalls --------------------------------------------------- */

/*
 * The competitor times itself: its sleep is an hrtimer on the worker's
 * CPU, so its wake-up is local there (a timer armed from the learner's CPU
 * would fire there, and the learner would be in that interrupt, sending
 * the wake-up IPI, at the very moment it should notice the preemption).
 * The learner takes the preemptions as they come; the harness only says
 * when the window opens and when enough were seen.
 */
#define UP_PREEMPT_GAP_NS     100000ull	    /* the competitor's sleep */
#define UP_PREEMPT_TIMEOUT_NS 2000000000ull /* no preemption for this long */
#define UP_PREEMPT_POLL_NS    20000ull	    /* the harness's look, same_cpu */

struct up_preempt {
	const struct upcall_preempt_config *cfg;
	struct upcall_preempt_counts *out;
	struct up_vp *slot;
	_Atomic uint32_t go;		  /* the competitor starts (a futex) */
	_Atomic uint32_t stop_competitor; /* ... stops */
	_Atomic uint32_t leave, left;	  /* rseq_abort: out of the section */
	_Atomic uint32_t stop;		  /* the worker stops */
	_Atomic int32_t worker_tid, competitor_tid;
	_Atomic uint64_t wakes, hits; /* the competitor's */
	_Atomic uint32_t target;      /* ... hits to make, then it waits */
	_Atomic uint64_t base_seq;    /* preempt_seq when the counts start */
	_Atomic int err;
	/* the learner's: the harness (cross_cpu) or the worker (same_cpu) */
	_Atomic bool counting;	   /* the window is open: record samples */
	_Atomic uint64_t taken;	   /* preemptions by the competitor seen */
	_Atomic uint64_t recorded; /* samples written */
	bool have_ring;
	struct bpf_ring ring;
	uint64_t ring_seq;	   /* the last record's */
	uint64_t last_seq;	   /* the preempt_seq last looked at */
	_Atomic uint64_t seen_seq; /* ... published for the harness */
	double *latency_ns, *since_resume_ns;
};

/* The learner saw a preemption the program published: the competitor's
 * is a sample (in the window), another thread's is counted. */
static void up_preempt_seen(struct up_preempt *u, uint64_t t_event, uint32_t by,
			    uint64_t t_recv)
{
	uint64_t i = atomic_load(&u->recorded);

	if ((int32_t)by != atomic_load(&u->competitor_tid)) {
		u->out->others++;
		return;
	}
	u->out->by_competitor++;
	if (atomic_load(&u->counting) && i < u->cfg->nr_samples) {
		u->latency_ns[i] = up_delta(t_recv, t_event, &u->out->clamped);
		if (u->cfg->same_cpu)
			/* the slot's resume_ns is this return's: the worker
			 * runs, so it was switched back in */
			u->since_resume_ns[i] =
				up_delta(t_recv,
					 __atomic_load_n(&u->slot->resume_ns,
							 __ATOMIC_RELAXED),
					 &u->out->clamped);
		atomic_store(&u->recorded, i + 1);
	}
	atomic_fetch_add(&u->taken, 1);
}

static int up_preempt_record(void *ctx, const void *data, uint32_t len)
{
	struct up_preempt *u = ctx;
	const struct up_event *ev = data;
	uint64_t t = now_ns();

	u->out->ring_records++;
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
	atomic_store(&u->seen_seq, ev->seq);
	return 0;
}

/* bpf_flag (and rseq_abort's handler): look at the slot once; what one
 * look folds is counted */
static void up_preempt_look(struct up_preempt *u)
{
	uint64_t seq = __atomic_load_n(&u->slot->preempt_seq, __ATOMIC_ACQUIRE);
	uint64_t t = now_ns();

	if (seq == u->last_seq)
		return;
	u->out->missed_events += seq - u->last_seq - 1;
	u->last_seq = seq;
	up_preempt_seen(
		u, __atomic_load_n(&u->slot->preempt_ns, __ATOMIC_RELAXED),
		__atomic_load_n(&u->slot->preempted_by, __ATOMIC_RELAXED), t);
	atomic_store(&u->seen_seq, seq);
}

static int up_preempt_drain(struct up_preempt *u)
{
	int n = bpf_ring_consume(&u->ring, up_preempt_record, u);

	return n < 0 ? n : 0;
}

/* the learner's one step: cross_cpu sleeps in epoll on the ring (up to
 * 1 ms) or looks at the flag; same_cpu never sleeps */
static int up_preempt_learn(struct up_preempt *u)
{
	int n;

	if (u->cfg->mechanism == UPCALL_BPF_FLAG) {
		up_preempt_look(u);
		return 0;
	}
	if (!u->cfg->same_cpu) {
		n = bpf_ring_wait(&u->ring, 1);
		if (n < 0)
			return n;
	}
	return up_preempt_drain(u);
}

/* same_cpu by rseq abort: spin inside the critical section; the kernel
 * resumes a preempted worker at the handler, which looks at its slot */
static void up_preempt_rseq_worker(struct up_preempt *u)
{
#if defined(__x86_64__)
	while (lab_up_rseq_spin(up_rseq_area(), &u->leave)) {
		u->out->rseq_aborts++;
		up_preempt_look(u);
	}
#endif
	atomic_store(&u->left, 1);
}

/* spins until told to stop: no system call, so every switch out is a
 * preemption; same_cpu: learning of its own preemptions as it goes */
static void *up_preempt_worker(void *arg)
{
	struct up_preempt *u = arg;
	int err;

	atomic_store(&u->worker_tid, (int32_t)gettid());
	while (u->cfg->same_cpu && !u->cfg->bystander && !atomic_load(&u->go) &&
	       !atomic_load(&u->stop))
		up_pause();
	if (u->cfg->same_cpu && !u->cfg->bystander &&
	    u->cfg->mechanism == UPCALL_RSEQ_ABORT)
		up_preempt_rseq_worker(u);
	while (!atomic_load_explicit(&u->stop, memory_order_relaxed)) {
		if (!u->cfg->same_cpu || u->cfg->bystander ||
		    u->cfg->mechanism == UPCALL_RSEQ_ABORT) {
			up_pause();
			continue;
		}
		err = up_preempt_learn(u);
		if (err) {
			atomic_store(&u->err, err);
			break;
		}
	}
	return NULL;
}

/* wakes every UP_PREEMPT_GAP_NS on the worker's CPU, runs burst_ns, and
 * says whether that wake took the CPU from the worker: the slot's last
 * preemption is new since its previous look and is its own.  Having made
 * target preemptions it waits for the harness to ask for more (the
 * learner folded some, or saw them before the window opened), so that
 * the preemptions it makes are the upcalls the learner records. */
static void *up_preempt_competitor(void *arg)
{
	struct up_preempt *u = arg;
	int32_t me = (int32_t)gettid();
	uint64_t seen = atomic_load(&u->base_seq), seq, t;
	uint32_t target;
	int err = 0;

	atomic_store(&u->competitor_tid, me);
	while (!atomic_load(&u->go))
		futex_wait((uint32_t *)&u->go, 0);
	/* every return from a wait is a wake on the worker's CPU, and may
	 * take it from the worker (the release by go, by target, by stop) */
	while (!err) {
		t = now_ns();
		atomic_fetch_add(&u->wakes, 1);
		/* the worker cannot be switched out again while this runs on
		 * its CPU: the slot holds this wake's preemption, if any */
		seq = __atomic_load_n(&u->slot->preempt_seq, __ATOMIC_ACQUIRE);
		if (seq != seen &&
		    (int32_t)__atomic_load_n(&u->slot->preempted_by,
					     __ATOMIC_RELAXED) == me)
			atomic_fetch_add(&u->hits, 1);
		seen = seq;
		while (now_ns() < t + u->cfg->burst_ns)
			up_pause();
		/* target first: the harness moves it after setting stop, so a
		 * wait on the value read here cannot miss the stop */
		target = atomic_load(&u->target);
		if (atomic_load(&u->stop_competitor))
			break;
		if (atomic_load(&u->hits) >= target)
			futex_wait((uint32_t *)&u->target, target);
		else
			err = up_sleep_until(now_ns() + UP_PREEMPT_GAP_NS);
	}
	if (err)
		atomic_store(&u->err, err);
	return NULL;
}

static int up_preempt_check(const struct upcall_preempt_config *cfg,
			    const struct upcall_maps *maps)
{
	if ((cfg->mechanism != UPCALL_BPF_RINGBUF &&
	     cfg->mechanism != UPCALL_BPF_FLAG &&
	     cfg->mechanism != UPCALL_RSEQ_ABORT) ||
	    (cfg->mechanism == UPCALL_RSEQ_ABORT && !cfg->same_cpu) ||
	    cfg->cpu == cfg->sched_cpu || cfg->cpu < 0 || cfg->sched_cpu < 0 ||
	    cfg->competitor_priority < 2 || cfg->competitor_priority > 99 ||
	    !cfg->nr_samples || maps->vps_fd < 0 || maps->tids_fd < 0 ||
	    (cfg->mechanism == UPCALL_BPF_RINGBUF && maps->ring_fd < 0))
		return -EINVAL;
	return 0;
}

/* The harness: opens the window after warmup preemptions by the
 * competitor (bystander: wakes), closes it when nr_samples are recorded
 * (wakes); when the competitor has made its target and the learner has
 * seen everything published but recorded too few, asks for the rest.
 * cross_cpu, it is the learner too. */
static int up_preempt_loop(struct up_preempt *u, struct lab_handshake *hs)
{
	const struct upcall_preempt_config *cfg = u->cfg;
	_Atomic uint64_t *progress = cfg->bystander ? &u->wakes : &u->taken;
	uint64_t deadline = now_ns() + UP_PREEMPT_TIMEOUT_NS, last = 0, n;
	uint64_t base_wakes = 0, rest;
	bool counting = false;
	int err;

	atomic_store(&u->target, cfg->bystander ? UINT32_MAX / 2 :
						  (uint32_t)(cfg->warmup +
							     cfg->nr_samples));
	atomic_store(&u->go, 1);
	futex_wake((uint32_t *)&u->go, 1);
	for (;;) {
		err = atomic_load(&u->err);
		if (err)
			return err;
		n = atomic_load(progress);
		if (!counting && n >= cfg->warmup) {
			err = lab_handshake_ready(hs, NULL, 0);
			if (err)
				return err;
			base_wakes = atomic_load(&u->wakes);
			counting = true;
			atomic_store(&u->counting, true);
		}
		if (counting &&
		    (cfg->bystander ?
			     atomic_load(&u->wakes) - base_wakes >=
				     cfg->nr_samples :
			     atomic_load(&u->recorded) >= cfg->nr_samples))
			break;
		if (!cfg->bystander &&
		    atomic_load(&u->hits) >= atomic_load(&u->target) &&
		    atomic_load(&u->seen_seq) ==
			    __atomic_load_n(&u->slot->preempt_seq,
					    __ATOMIC_ACQUIRE)) {
			rest = counting ? cfg->nr_samples -
						  atomic_load(&u->recorded) :
					  cfg->warmup - n + cfg->nr_samples;
			atomic_fetch_add(&u->target, (uint32_t)rest);
			futex_wake((uint32_t *)&u->target, 1);
		}
		if (n != last) {
			last = n;
			deadline = now_ns() + UP_PREEMPT_TIMEOUT_NS;
		} else if (now_ns() > deadline) {
			return -ETIMEDOUT;
		}
		if (!cfg->same_cpu && !cfg->bystander)
			err = up_preempt_learn(u);
		else
			err = up_sleep_until(now_ns() + UP_PREEMPT_POLL_NS);
		if (err)
			return err;
	}
	return lab_handshake_done(hs);
}

/* rseq_abort: the worker out of its critical section before the counts
 * are read and it is unregistered -- no abort can come after them */
static int up_preempt_leave(struct up_preempt *u)
{
	uint64_t deadline = now_ns() + UP_PREEMPT_TIMEOUT_NS;

	atomic_store(&u->leave, 1);
	while (!atomic_load(&u->left)) {
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		up_pause();
	}
	return 0;
}

/* the end, in the order that keeps the counts whole: the competitor
 * stopped; the worker out of its section; it unregistered (nothing is
 * published after) and the kernel's count read at once; the worker
 * stopped; the learner's last look at what was published */
static int up_preempt_stop(struct up_preempt *u, const struct upcall_maps *maps,
			   pthread_t *competitor, pthread_t *worker,
			   uint32_t *key, uint64_t base_seq,
			   uint64_t base_nivcsw, uint64_t base_fixups)
{
	struct upcall_preempt_counts *out = u->out;
	pid_t tid = atomic_load(&u->worker_tid);
	int err = 0, e2;

	atomic_store(&u->stop_competitor, 1);
	atomic_store(&u->go, 1);
	futex_wake((uint32_t *)&u->go, 1);
	atomic_fetch_add(&u->target, 1);
	futex_wake((uint32_t *)&u->target, 1);
	if (competitor)
		pthread_join(*competitor, NULL);
	if (worker && u->cfg->mechanism == UPCALL_RSEQ_ABORT &&
	    u->cfg->same_cpu && !u->cfg->bystander)
		err = up_preempt_leave(u);
	out->rseq_fixups =
		__atomic_load_n(&u->slot->rseq_fixups, __ATOMIC_ACQUIRE) -
		base_fixups;
	if (key) {
		e2 = lab_bpf_map_delete_elem(maps->tids_fd, key);
		if (!err)
			err = e2;
	}
	if (tid)
		out->worker_nivcsw = up_nivcsw(tid) - base_nivcsw;
	out->preemptions =
		__atomic_load_n(&u->slot->preempt_seq, __ATOMIC_ACQUIRE) -
		base_seq;
	atomic_store(&u->stop, 1);
	atomic_store(&u->leave, 1);
	if (worker)
		pthread_join(*worker, NULL);
	/* single-threaded now: the learner's last look, whoever it was */
	atomic_store(&u->counting, false);
	if (u->have_ring) {
		e2 = up_preempt_drain(u);
		if (!err)
			err = e2;
	} else if (!u->cfg->bystander) {
		up_preempt_look(u);
	}
	return err;
}

int upcall_preempt_run(struct lab_handshake *hs,
		       const struct upcall_preempt_config *cfg,
		       const struct upcall_maps *maps, double *latency_ns,
		       double *since_resume_ns,
		       struct upcall_preempt_counts *out)
{
	struct up_preempt *u;
	struct up_vp *vps = NULL;
	size_t len = 0;
	cpu_set_t saved;
	pthread_t worker, competitor;
	bool have_worker = false, have_competitor = false, registered = false;
	uint64_t base_lost = 0, base_seq = 0, base_nivcsw = 0, base_fixups = 0;
	uint32_t vp = UP_VP, key = 0;
	int err, e2;

	memset(out, 0, sizeof(*out));
	err = up_preempt_check(cfg, maps);
	if (!err && !cfg->bystander &&
	    (!latency_ns || (cfg->same_cpu && !since_resume_ns)))
		err = -EINVAL;
	if (!err && cfg->mechanism == UPCALL_RSEQ_ABORT)
		err = upcall_rseq_available();
	if (err)
		return err;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->cfg = cfg;
	u->out = out;
	u->latency_ns = latency_ns;
	u->since_resume_ns = since_resume_ns;
	err = lab_pin_saving(cfg->sched_cpu, &saved);
	if (err) {
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
	/* the competitor first: asleep on go before the worker spins; both
	 * born SCHED_FIFO (a SCHED_OTHER thread made on a CPU a FIFO thread
	 * spins on would not run until the fair server gave it time) */
	err = lab_spawn_on_cpu(&competitor, cfg->cpu, SCHED_FIFO,
			       cfg->competitor_priority, up_preempt_competitor,
			       u);
	if (err)
		goto out;
	have_competitor = true;
	err = lab_spawn_on_cpu(&worker, cfg->cpu, SCHED_FIFO,
			       cfg->competitor_priority - 1, up_preempt_worker,
			       u);
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
	/* the counts start here, the competitor's wakes after */
	base_seq = __atomic_load_n(&u->slot->preempt_seq, __ATOMIC_ACQUIRE);
	atomic_store(&u->base_seq, base_seq);
	base_nivcsw = up_nivcsw((pid_t)out->worker_tid);
	base_fixups = __atomic_load_n(&u->slot->rseq_fixups, __ATOMIC_ACQUIRE);
	u->last_seq = base_seq;
	atomic_store(&u->seen_seq, base_seq);
	err = up_preempt_loop(u, hs);
out:
	if (u->slot) {
		e2 = up_preempt_stop(u, maps,
				     have_competitor ? &competitor : NULL,
				     have_worker ? &worker : NULL,
				     registered ? &key : NULL, base_seq,
				     base_nivcsw, base_fixups);
		if (!err)
			err = e2;
	}
	if (!err)
		err = atomic_load(&u->err);
	out->upcalls = atomic_load(&u->recorded);
	out->wakes = atomic_load(&u->wakes);
	out->retries = out->wakes - atomic_load(&u->hits);
	if (u->have_ring)
		bpf_ring_close(&u->ring);
	if (u->slot) {
		__atomic_store_n(&u->slot->ring_kinds, 0, __ATOMIC_RELAXED);
		out->ring_lost =
			__atomic_load_n(&u->slot->ring_lost, __ATOMIC_ACQUIRE) -
			base_lost;
	}
	if (vps)
		munmap(vps, len);
	free(u);
	lab_unpin(&saved);
	return err;
}
