/*
 * The upcall program (family `upcall`, seeds 000 and 002): the kernel tells
 * a user-level scheduler, within microseconds, that one of its threads
 * blocked or became runnable again -- scheduler activations' upcalls,
 * built from eBPF on scheduler tracepoints because Linux has no upcall.
 *
 * Compiled once per suite run by the runner (lab/upcall_program.py,
 * SuitePrograms), which hands the loaded programs' and maps' fds to each
 * worker that needs them; the worker attaches for its run only.  Without a
 * runner (tests, notebooks) the worker process compiles it itself.  The
 * runner's probes are separate programs.
 *
 * Raw tracepoints, not perf-event tracepoints: a perf-event tracepoint
 * program that returns 0 drops the event for every perf user of that
 * tracepoint (perf_trace_run_bpf_submit()), a hole in everyone else's
 * view of sched_switch while we are attached; a raw tracepoint program
 * gets the tracepoint's own arguments (ctx->args[i], TP_PROTO order) and
 * filters nothing.  task_struct fields are read at the running kernel's
 * offsets (LAB_OFF_*, from its BTF: lab/probes/btf.py), never through
 * the stand-in headers' layout.
 *
 *   sched_switch(preempt, prev, next, prev_state)
 *                        prev (current) is a registered thread, not
 *                        preempted, and prev_state has a sleep bit (& 0xff:
 *                        S, D, ...; a preempted or yielding thread stays
 *                        runnable and is no block): a block event.
 *   sched_switch again   (lab_upcall_preempt, for the runs that ask) a
 *                        registered thread switched out still runnable:
 *                        a preemption event; switched back in: resumed.
 *   rseq_ip_fixup        (lab_upcall_rseq_fixup, for the runs that ask)
 *                        a registered thread's rseq critical section
 *                        aborted: counted in its slot.
 *   sched_waking(p)      a registered thread that blocked is being woken:
 *                        an unblock event.  sched_waking, not
 *                        sched_wakeup: it fires first, in the waker's
 *                        context on the waker's CPU, as soon as
 *                        try_to_wake_up() has matched the sleeping state
 *                        (under p->pi_lock: once per sleep); sched_wakeup
 *                        of a remote wake-up fires only on the target CPU
 *                        after the IPI, which would hide that delay from
 *                        the upcall.  The probes' wake-to-run starts here
 *                        too.
 *
 * lab_upcall_tids maps a registered thread (tid) to its virtual processor
 * (VP); the scheduler registers it with bpf(2) and nothing else counts.
 * Each event is published on the VP's slot of lab_upcall_vps, an
 * mmap-able array the scheduler polls: the kernel's time
 * (bpf_ktime_get_ns(), CLOCK_MONOTONIC), then the sequence number with a
 * locked add (a full barrier: the time is visible before the number that
 * announces it).  "blocked" is 1 from a block to the waking that ends it.
 * The slot's configuration says which events also go to the ring buffer
 * lab_upcall_ring, the epoll-able channel: always with BPF_RB_FORCE_WAKEUP
 * (bpf_ringbuf), never (bpf_flag: pure polling), or only while the
 * scheduler says it sleeps (bpf_flag_sleep: spin, then sleep in epoll):
 * the scheduler stores sleeping = 1 and then re-reads the sequence, the
 * program adds to the sequence and then reads sleeping, so one of them
 * always sees the other (a futex-style waiters bit; nothing here can wake
 * a futex).  A record the ring had no room for counts in ring_lost.
 *
 * The anatomy (lab_upcall_a_* programs, attached only for runs with
 * anatomy = true) stamps, for the one upcall in flight, each kernel stage
 * between the event and the scheduler's own stamp, in lab_upcall_stages
 * (one mmap-able entry the C scheduler arms before each upcall and copies
 * out with each sample):
 *   the event            the block / waking above (or, for the mechanisms
 *                        without a program, the user stamp C stores);
 *   raise_ns             the first IPI the event's CPU sends itself: the
 *                        irq_work self-IPI (ipi:ipi_send_cpu, which
 *                        irq_work_raise() traces with the work's function);
 *   irq_work_ns          irq_vectors:irq_work_entry on the event's CPU: the
 *                        ring's wake-up runs (bpf_ringbuf_notify());
 *   waking_ns            sched_waking of the scheduler thread;
 *   wake_ipi_ns          the first IPI to the scheduler's CPU after that
 *                        (a cross-CPU wake-up: the wakelist IPI or a
 *                        reschedule);
 *   switch_in_ns         sched_switch with next = the scheduler;
 * and counts the IPIs the event's CPU sends (ipis, self_ipis) until the
 * scheduler has taken the upcall and disarms.  Each stamp is the first
 * after the event; a stage that did not happen (a spinning scheduler is
 * never woken) stays 0.  bpf_ktime_get_ns() throughout: CLOCK_MONOTONIC,
 * the scheduler's clock.
 *
 * The shared memory's layout (the slots, the records, the stages) is
 * native/upcall_abi.h, which the C side includes too.
 */
#include "upcall_abi.h"

/* the ring's size in pages: lab/upcall_program.py (RING_PAGES) defines it */
#ifndef LAB_UPCALL_RING_PAGES
#error "LAB_UPCALL_RING_PAGES: compile the text lab/upcall_program.py makes"
#endif

BPF_HASH(lab_upcall_tids, u32, u32, 256);
BPF_F_TABLE("array", u32, struct up_vp, lab_upcall_vps, UP_NR_VPS,
	    BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct up_stages, lab_upcall_stages, 1,
	    BPF_F_MMAPABLE);
BPF_RINGBUF_OUTPUT(lab_upcall_ring, LAB_UPCALL_RING_PAGES);

/* a task_struct's pid from a raw tracepoint's argument */
static __always_inline u32 lab_upcall_pid(u64 task)
{
	u32 pid = 0;

	bpf_probe_read_kernel(&pid, sizeof(pid),
			      (void *)(task + LAB_OFF_task_struct_pid));
	return pid;
}

/* a registered thread's slot, its VP in *vp; NULL if it is not one */
static __always_inline struct up_vp *lab_upcall_slot_of(u32 tid, u32 *vp)
{
	u32 *vpp = lab_upcall_tids.lookup(&tid);

	if (!vpp)
		return NULL;
	*vp = *vpp;
	return lab_upcall_vps.lookup(vp);
}

static __always_inline struct up_stages *lab_upcall_in_flight(void)
{
	u32 zero = 0;
	struct up_stages *st = lab_upcall_stages.lookup(&zero);

	return st && st->armed ? st : NULL;
}

static inline void lab_upcall_deliver(struct up_vp *slot, u32 vp, u32 tid,
				      u32 kind, u64 now, u64 seq, u32 state,
				      u32 other_tid)
{
	struct up_event ev = {};
	struct up_stages *st;
	u64 flags = BPF_RB_FORCE_WAKEUP;
	u32 zero = 0;

	if (!(slot->ring_kinds & (1u << kind)))
		return;
	/* after the locked add on the sequence: see the header */
	if (slot->ring_if_sleeping && !*(volatile u32 *)&slot->sleeping)
		return;
	if (vp == 0) {
		st = lab_upcall_stages.lookup(&zero);
		if (st && st->ring_wakeup == UP_RING_ADAPTIVE)
			flags = 0;
	}
	ev.ktime_ns = now;
	ev.seq = seq;
	ev.tid = tid;
	ev.vp = vp;
	ev.kind = kind;
	ev.cpu = bpf_get_smp_processor_id();
	ev.state = state;
	ev.other_tid = other_tid;
	if (lab_upcall_ring.ringbuf_output(&ev, sizeof(ev), flags))
		__sync_fetch_and_add(&slot->ring_lost, 1);
}

/* the anatomy's start: the event of the kind the scheduler armed for */
static __always_inline void lab_upcall_stage_event(u32 vp, u32 kind, u64 now)
{
	struct up_stages *st;

	if (vp != 0 || !(st = lab_upcall_in_flight()))
		return;
	if (st->armed != (kind == UP_KIND_BLOCK ? UP_ARMED_BLOCK :
						  UP_ARMED_UNBLOCK) ||
	    st->event_ns)
		return;
	st->event_cpu = bpf_get_smp_processor_id();
	st->event_ns = now;
}

/* sched_switch(bool preempt, struct task_struct *prev,
 *              struct task_struct *next, unsigned int prev_state) */
int lab_upcall_block(struct bpf_raw_tracepoint_args *ctx)
{
	struct up_vp *slot;
	u32 tid, vp = 0, state = (u32)ctx->args[3];
	u64 now, seq;

	if (ctx->args[0] || !(state & 0xff))
		return 0;
	tid = (u32)bpf_get_current_pid_tgid(); /* prev is current */
	slot = lab_upcall_slot_of(tid, &vp);
	if (!slot)
		return 0;
	now = bpf_ktime_get_ns();
	slot->block_ns = now;
	slot->block_cpu = bpf_get_smp_processor_id();
	slot->blocked = 1;
	seq = __sync_fetch_and_add(&slot->block_seq, 1) + 1;
	lab_upcall_stage_event(vp, UP_KIND_BLOCK, now);
	lab_upcall_deliver(slot, vp, tid, UP_KIND_BLOCK, now, seq, state, 0);
	return 0;
}

/* sched_waking(struct task_struct *p) */
int lab_upcall_wake(struct bpf_raw_tracepoint_args *ctx)
{
	struct up_vp *slot;
	u32 tid = lab_upcall_pid(ctx->args[0]), vp = 0;
	u64 now, seq;

	slot = lab_upcall_slot_of(tid, &vp);
	/* only the waking that ends a block it saw: a thread woken on its
	 * way to sleep (before it switched out) never blocked */
	if (!slot || !slot->blocked)
		return 0;
	now = bpf_ktime_get_ns();
	slot->blocked = 0;
	slot->wake_ns = now;
	slot->wake_cpu = bpf_get_smp_processor_id();
	seq = __sync_fetch_and_add(&slot->wake_seq, 1) + 1;
	lab_upcall_stage_event(vp, UP_KIND_UNBLOCK, now);
	lab_upcall_deliver(slot, vp, tid, UP_KIND_UNBLOCK, now, seq, 0, 0);
	return 0;
}

/* sched_switch again, attached only for the runs that ask for preemption
 * upcalls (the block function stays as cheap for the others): a
 * registered thread switched out while still runnable -- preempt, or no
 * sleep bit in prev_state: the exact complement of a block, and what the
 * probes count as an involuntary switch (lab/probes/switches.c) -- is a
 * preemption event, published as the others are (time, then sequence),
 * with the task that took the CPU; a registered thread switched in while
 * marked preempted ends it (resume_ns: when it got a CPU back).  A thread
 * of ours only yields while unregistered, so a preemption here is the
 * kernel taking the CPU. */
int lab_upcall_preempt(struct bpf_raw_tracepoint_args *ctx)
{
	struct up_vp *slot;
	u32 tid, vp = 0, state = (u32)ctx->args[3];
	u32 next = lab_upcall_pid(ctx->args[2]);
	u64 now = 0, seq;

	slot = lab_upcall_slot_of(next, &vp);
	if (slot && slot->preempted) {
		now = bpf_ktime_get_ns();
		slot->resume_ns = now;
		slot->resume_cpu = bpf_get_smp_processor_id();
		slot->preempted = 0;
		__sync_fetch_and_add(&slot->resume_seq, 1);
	}
	if (!ctx->args[0] && (state & 0xff))
		return 0;		       /* a block: lab_upcall_block's */
	tid = (u32)bpf_get_current_pid_tgid(); /* prev is current */
	slot = lab_upcall_slot_of(tid, &vp);
	if (!slot)
		return 0;
	if (!now)
		now = bpf_ktime_get_ns();
	slot->preempt_ns = now;
	slot->preempt_cpu = bpf_get_smp_processor_id();
	slot->preempted_by = next;
	slot->preempted = 1;
	seq = __sync_fetch_and_add(&slot->preempt_seq, 1) + 1;
	lab_upcall_deliver(slot, vp, tid, UP_KIND_PREEMPT, now, seq, state,
			   next);
	return 0;
}

/* rseq_ip_fixup(unsigned long regs_ip, unsigned long start_ip,
 *               unsigned long post_commit_offset, unsigned long abort_ip),
 * attached only for the runs that ask: the kernel aborted an rseq
 * critical section of current (kernel/rseq.c, rseq_ip_fixup(): fired
 * once per abort, as it moves the thread to abort_ip); for a registered
 * thread, counted in its slot, so the runtime's own count of its abort
 * handler's runs can be held against the kernel's. */
int lab_upcall_rseq_fixup(struct bpf_raw_tracepoint_args *ctx)
{
	struct up_vp *slot;
	u32 vp = 0;

	slot = lab_upcall_slot_of((u32)bpf_get_current_pid_tgid(), &vp);
	if (!slot)
		return 0;
	__sync_fetch_and_add(&slot->rseq_fixups, 1);
	return 0;
}

/* ---- the anatomy: the upcall in flight, stage by stage ------------------ */

/* the stages record if an event is in flight and `now` is after it */
static __always_inline struct up_stages *lab_upcall_after(u64 now)
{
	struct up_stages *st = lab_upcall_in_flight();

	return st && st->event_ns && now >= st->event_ns ? st : NULL;
}

static __always_inline void lab_upcall_ipi_to(struct up_stages *st, u32 target,
					      u64 now)
{
	u32 cpu = bpf_get_smp_processor_id();

	if (cpu == st->event_cpu) {
		__sync_fetch_and_add(&st->ipis, 1);
		if (target == cpu) {
			__sync_fetch_and_add(&st->self_ipis, 1);
			if (!st->raise_ns)
				st->raise_ns = now;
		}
	}
	if (st->waking_ns && !st->wake_ipi_ns && target == st->sched_cpu &&
	    target != cpu)
		st->wake_ipi_ns = now;
}

/* ipi_send_cpu(unsigned int cpu, unsigned long callsite, void *callback) */
int lab_upcall_a_ipi(struct bpf_raw_tracepoint_args *ctx)
{
	u64 now = bpf_ktime_get_ns();
	struct up_stages *st = lab_upcall_after(now);

	if (st)
		lab_upcall_ipi_to(st, (u32)ctx->args[0], now);
	return 0;
}

/* ipi_send_cpumask(const struct cpumask *cpumask, unsigned long callsite,
 * void *callback): counted, the target not read (never a self-IPI) */
int lab_upcall_a_ipi_mask(struct bpf_raw_tracepoint_args *ctx)
{
	u64 now = bpf_ktime_get_ns();
	struct up_stages *st = lab_upcall_after(now);

	if (st)
		lab_upcall_ipi_to(st, (u32)-1, now);
	return 0;
}

/* irq_work_entry(int vector) */
int lab_upcall_a_irq_work(struct bpf_raw_tracepoint_args *ctx)
{
	u64 now = bpf_ktime_get_ns();
	struct up_stages *st = lab_upcall_after(now);

	if (st && !st->irq_work_ns &&
	    bpf_get_smp_processor_id() == st->event_cpu)
		st->irq_work_ns = now;
	return 0;
}

/* sched_waking(struct task_struct *p) */
int lab_upcall_a_waking(struct bpf_raw_tracepoint_args *ctx)
{
	u64 now = bpf_ktime_get_ns();
	struct up_stages *st = lab_upcall_after(now);

	if (st && !st->waking_ns &&
	    lab_upcall_pid(ctx->args[0]) == st->sched_tid)
		st->waking_ns = now;
	return 0;
}

/* sched_switch(bool preempt, prev, next, prev_state) */
int lab_upcall_a_switch(struct bpf_raw_tracepoint_args *ctx)
{
	u64 now = bpf_ktime_get_ns();
	struct up_stages *st = lab_upcall_after(now);

	if (st && !st->switch_in_ns &&
	    lab_upcall_pid(ctx->args[2]) == st->sched_tid)
		st->switch_in_ns = now;
	return 0;
}
