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

/* the calling thread's involuntary switches, the kernel's count */
static uint64_t up_nivcsw(void)
{
	char line[128];
	unsigned long long n = 0;
	FILE *f = fopen("/proc/thread-self/status", "re");

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
	n0 = up_nivcsw();
#if defined(__x86_64__)
	while (lab_up_rseq_spin(up_rseq_area(), &r->hold))
		atomic_fetch_add(&r->aborts, 1); /* the handler: an abort */
#endif
	r->nivcsw = up_nivcsw() - n0;
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

static int up_rseq_spawn(pthread_t *t, int cpu, void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	cpu_set_t set;
	int err = -pthread_attr_init(&attr);

	if (err)
		return err;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	err = -pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
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
	err = up_rseq_spawn(&worker, cpu, up_rseq_worker, &r);
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
	err = up_rseq_spawn(&competitor, cpu, up_rseq_competitor, &r);
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
