/*
 * User-level locks for fibers on activations (issue 14: critical sections
 * that survive preemption).  Private: not seen by cffi.  Header only,
 * static inline: the lock is the hot path of every variant using it.
 *
 * The lock word names its holder: its fiber and the slot of the activation
 * (VP thread) running it, the slot of the upcall program's lab_upcall_vps
 * that lab_upcall_preempt keeps (upcall_abi.h: struct up_vp, `preempted`
 * is 1 from the thread's involuntary switch out to its switch back in).  A
 * waiter can therefore ask the kernel's view "is the holder's activation
 * on a CPU?" without a system call: the question Anderson et al.'s
 * preemption upcall answers.
 *
 *   word = 0: free; else (fiber + 1) << 8 | waiters << 7 | slot.
 *
 * Policies (enum act_lock_policy), all test-and-test-and-set on the word:
 * - ACT_LOCK_OBLIVIOUS: spin until free (FastThreads' original spin lock:
 *   a preempted holder makes every waiter spin out its time slice).
 * - ACT_LOCK_SPIN_YIELD: spin spin_limit times, then sched_yield() and
 *   spin again (what runtimes do today).
 * - ACT_LOCK_INFORMED: spin only while the holder's activation runs; when
 *   its slot says preempted, call dom->recover (the runtime's recovery:
 *   act_lend_cpu() below, or its own) and, if that did not run the
 *   holder, sched_yield().
 * - ACT_LOCK_FUTEX: spin spin_limit times, then set the waiters bit and
 *   FUTEX_WAIT on the word (the kernel-lock path pthread mutexes take);
 *   release wakes one waiter when the bit is set.
 *
 * Recovery by lending a CPU (act_lend_cpu / act_lend_check): the
 * preempted holder's registers are in the kernel (its activation is
 * runnable behind whoever took its CPU), so "continue the fiber on another
 * VP" is: move the holder's activation to the waiter's CPU
 * (sched_setaffinity of its tid) and give it that CPU (the waiter sleeps on
 * a futex) until the holder leaves its critical section; the holder then
 * moves itself back to its home CPU and wakes the lender.  One struct
 * act_lock_host per slot says where home is and who lent it a CPU.
 *
 * API (stable; add, do not rename):
 *   act_lock_init(l)
 *   act_lock_word(fiber, slot), act_lock_holder_fiber(w),
 *   act_lock_holder_slot(w)
 *   act_lock_acquire(l, me, dom, st) -> the holder word it saw first (0:
 *     uncontended), act_lock_release(l, dom, st)
 *   act_lock_holder_preempted(dom, w)
 *   act_lock_host_init(h, tid, home_cpu),
 *   act_lend_cpu(dom, l, w, st) (an act_lock_recover_fn),
 *   act_lend_check(h, st) (the holder, after its release)
 * Every count goes to the caller's struct act_lock_stats (one per thread:
 * no shared counters on the hot path).
 */
#ifndef LAB_ACT_LOCK_INTERNAL_H
#define LAB_ACT_LOCK_INTERNAL_H

/* first: it defines _GNU_SOURCE (sched_setaffinity, sched_getcpu) */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "upcall_abi.h"

enum act_lock_policy {
	ACT_LOCK_OBLIVIOUS = 0,
	ACT_LOCK_SPIN_YIELD = 1,
	ACT_LOCK_INFORMED = 2,
	ACT_LOCK_FUTEX = 3,
};

#define ACT_LOCK_SLOT_MASK 0x7fu
#define ACT_LOCK_WAITERS   0x80u
#define ACT_LOCK_FIBER_MAX ((1u << 24) - 2)

struct act_lock {
	_Alignas(LAB_CACHELINE) _Atomic uint32_t word;
};

struct act_lock_stats {
	uint64_t acquisitions;
	uint64_t contended;	/* acquisitions that found it held */
	uint64_t spin_ns;	/* time from a contended try to the acquire,
				 * less the time lent (lent_ns) */
	uint64_t spin_iters;	/* loads of a held word */
	uint64_t yields;	/* sched_yield() calls */
	uint64_t futex_waits;	/* FUTEX_WAIT calls */
	uint64_t futex_wakes;	/* FUTEX_WAKE calls */
	uint64_t saw_preempted; /* informed: polls that found the holder
				 * preempted */
	uint64_t recoveries;	/* informed: holders given a CPU */
	uint64_t lent_ns;	/* ... time the lender slept */
	uint64_t returns;	/* holder: moved back home after a loan */
};

/* Where a slot's activation lives, and who lent it a CPU. */
struct act_lock_host {
	_Alignas(LAB_CACHELINE) _Atomic uint32_t lender; /* 0 or cpu + 1 */
	_Atomic int32_t tid;
	int home_cpu;
	pthread_mutex_t move; /* serialises the moves of this activation */
};

struct act_lock_domain;
/* informed: the holder (word w) is preempted; return 1 if it was run to
 * its release (or the lock changed hands), 0 to yield instead */
typedef int (*act_lock_recover_fn)(struct act_lock_domain *dom,
				   struct act_lock *l, uint32_t w,
				   struct act_lock_stats *st);

struct act_lock_domain {
	int policy;		     /* enum act_lock_policy */
	uint32_t spin_limit;	     /* spin_yield, futex: spins first */
	const struct up_vp *slots;   /* informed: the program's slots */
	struct act_lock_host *hosts; /* act_lend_cpu: one per slot */
	uint32_t nr_slots;
	act_lock_recover_fn recover; /* informed, NULL: only yield */
};

static inline void act_lock_init(struct act_lock *l)
{
	atomic_store(&l->word, 0);
}

static inline uint32_t act_lock_word(uint32_t fiber, uint32_t slot)
{
	return (fiber + 1) << 8 | (slot & ACT_LOCK_SLOT_MASK);
}

static inline uint32_t act_lock_holder_fiber(uint32_t w)
{
	return (w >> 8) - 1;
}

static inline uint32_t act_lock_holder_slot(uint32_t w)
{
	return w & ACT_LOCK_SLOT_MASK;
}

static inline bool act_lock_holder_preempted(const struct act_lock_domain *dom,
					     uint32_t w)
{
	uint32_t slot = act_lock_holder_slot(w);

	if (!dom->slots || slot >= dom->nr_slots)
		return false;
	return __atomic_load_n(&dom->slots[slot].preempted, __ATOMIC_ACQUIRE);
}

static inline void act_lock_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/*
 * Take l for me (act_lock_word()).  Returns the holder word the first try
 * saw (0: it was free).
 */
static inline uint32_t act_lock_acquire(struct act_lock *l, uint32_t me,
					struct act_lock_domain *dom,
					struct act_lock_stats *st)
{
	uint32_t w = 0, first, spins = 0;
	uint64_t t0, lent0 = st->lent_ns;

	if (atomic_compare_exchange_strong(&l->word, &w, me)) {
		st->acquisitions++;
		return 0;
	}
	first = w;
	st->contended++;
	t0 = now_ns();
	for (;;) {
		w = atomic_load_explicit(&l->word, memory_order_relaxed);
		if (!w) {
			/* futex: a waiter that slept keeps the bit for
			 * whoever still sleeps (a spurious wake is cheap) */
			uint32_t want =
				me |
				(spins > dom->spin_limit &&
						 dom->policy == ACT_LOCK_FUTEX ?
					 ACT_LOCK_WAITERS :
					 0);

			if (atomic_compare_exchange_weak(&l->word, &w, want))
				break;
			continue;
		}
		st->spin_iters++;
		spins++;
		switch (dom->policy) {
		case ACT_LOCK_SPIN_YIELD:
			if (spins % (dom->spin_limit + 1) == 0) {
				st->yields++;
				sched_yield();
				continue;
			}
			break;
		case ACT_LOCK_INFORMED:
			if (act_lock_holder_preempted(dom, w)) {
				st->saw_preempted++;
				if (dom->recover && dom->recover(dom, l, w, st))
					continue;
				st->yields++;
				sched_yield();
				continue;
			}
			break;
		case ACT_LOCK_FUTEX:
			if (spins > dom->spin_limit) {
				if (!(w & ACT_LOCK_WAITERS) &&
				    !atomic_compare_exchange_weak(
					    &l->word, &w, w | ACT_LOCK_WAITERS))
					continue;
				st->futex_waits++;
				futex_wait((uint32_t *)&l->word,
					   w | ACT_LOCK_WAITERS);
				continue;
			}
			break;
		default:
			break;
		}
		act_lock_pause();
	}
	st->acquisitions++;
	/* asleep while its CPU was lent is not spinning: lent_ns has it */
	st->spin_ns += now_ns() - t0 - (st->lent_ns - lent0);
	return first;
}

static inline void act_lock_release(struct act_lock *l,
				    struct act_lock_domain *dom,
				    struct act_lock_stats *st)
{
	uint32_t w = atomic_exchange(&l->word, 0);

	if (dom->policy == ACT_LOCK_FUTEX && (w & ACT_LOCK_WAITERS)) {
		st->futex_wakes++;
		futex_wake((uint32_t *)&l->word, 1);
	}
}

/* ---- recovery: lend the waiter's CPU to a preempted holder ---------------- */

static inline int act_lock_host_init(struct act_lock_host *h, int32_t tid,
				     int home_cpu)
{
	atomic_store(&h->lender, 0);
	atomic_store(&h->tid, tid);
	h->home_cpu = home_cpu;
	return -pthread_mutex_init(&h->move, NULL);
}

static inline int act_lock_pin_tid(int32_t tid, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(tid, sizeof(set), &set) ? -errno : 0;
}

/*
 * The waiter (on its VP's CPU) found holder w of l preempted: move the holder's
 * activation here and sleep until it has left its critical section and
 * gone home (act_lend_check).  1: lent (or the lock changed hands under
 * us), 0: nothing done (someone else is moving it, or it resumed).
 *
 * Ordering: the lender sets `lender`, then re-reads the lock; the holder
 * clears the lock word, then reads `lender` (both seq_cst): at least one
 * sees the other, and the holder re-reads `lender` under `move`, so a
 * holder is never left on a lent CPU with no one to send it home.
 */
static inline int act_lend_cpu(struct act_lock_domain *dom, struct act_lock *l,
			       uint32_t w, struct act_lock_stats *st)
{
	int my_cpu = sched_getcpu(); /* the waiter runs on its VP's CPU */
	struct act_lock_host *h = &dom->hosts[act_lock_holder_slot(w)];
	uint32_t me = (uint32_t)my_cpu + 1;
	uint64_t t0;

	if (pthread_mutex_trylock(&h->move))
		return 0;
	if (my_cpu < 0 || atomic_load(&h->lender) || h->home_cpu == my_cpu) {
		pthread_mutex_unlock(&h->move);
		return 0;
	}
	atomic_store(&h->lender, me);
	if ((atomic_load(&l->word) | ACT_LOCK_WAITERS) !=
		    (w | ACT_LOCK_WAITERS) ||
	    !act_lock_holder_preempted(dom, w) ||
	    act_lock_pin_tid(atomic_load(&h->tid), my_cpu)) {
		atomic_store(&h->lender, 0);
		pthread_mutex_unlock(&h->move);
		return 0;
	}
	pthread_mutex_unlock(&h->move);
	st->recoveries++;
	t0 = now_ns();
	/* the timeout is a safety net: the holder always wakes us */
	while (atomic_load(&h->lender) == me) {
		struct timespec ts = { 1, 0 };

		syscall(SYS_futex, (uint32_t *)&h->lender, FUTEX_WAIT_PRIVATE,
			me, &ts, NULL, 0);
	}
	st->lent_ns += now_ns() - t0;
	return 1;
}

/* The holder, after each release (and between tasks): if a CPU was lent
 * to it, go home and wake the lender.  0 or -errno (affinity). */
static inline int act_lend_check(struct act_lock_host *h,
				 struct act_lock_stats *st)
{
	int err = 0;

	if (!atomic_load(&h->lender))
		return 0;
	pthread_mutex_lock(&h->move);
	if (atomic_load(&h->lender)) {
		err = act_lock_pin_tid(0, h->home_cpu);
		atomic_store(&h->lender, 0);
		futex_wake((uint32_t *)&h->lender, 1);
		st->returns++;
	}
	pthread_mutex_unlock(&h->move);
	return err;
}

#endif /* LAB_ACT_LOCK_INTERNAL_H */
