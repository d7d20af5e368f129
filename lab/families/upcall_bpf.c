/*
 * The upcall program (family `upcall`, seeds 000 and 002): the kernel tells
 * a user-level scheduler, within microseconds, that one of its threads
 * blocked or became runnable again -- scheduler activations' upcalls,
 * built from eBPF on scheduler tracepoints because Linux has no upcall.
 *
 * Loaded by the worker process itself (lab.probes.bpf_program), compiled
 * outside the measured window; the runner's probes are separate programs.
 *
 *   sched:sched_switch   prev is a registered thread and prev_state has a
 *                        sleep bit (& 0xff: S, D, ...; a preempted or
 *                        yielding thread stays runnable and is no block):
 *                        a block event.
 *   sched:sched_waking   a registered thread that blocked is being woken:
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
 * native/upcall.c holds the same two structs: keep them in step (the
 * tests compare the sizes).
 */
#ifndef LAB_UPCALL_RING_PAGES
#define LAB_UPCALL_RING_PAGES 16
#endif
#define LAB_UPCALL_VPS 64

#define LAB_UPCALL_BLOCK 0
#define LAB_UPCALL_UNBLOCK 1

/* one VP's slot: 64 bytes, mapped by the scheduler */
struct lab_upcall_vp {
	u64 block_seq;		/* block events published */
	u64 block_ns;		/* kernel time of the last one */
	u64 wake_seq;		/* unblock events published */
	u64 wake_ns;
	u64 ring_lost;		/* ring records that found no room */
	u32 blocked;		/* 1 from a block to its waking */
	u32 sleeping;		/* scheduler: 1 while (about to be) in epoll */
	u32 ring_kinds;		/* scheduler: bit k: events of kind k to the ring */
	u32 ring_if_sleeping;	/* scheduler: 1: only while sleeping is set */
	u32 block_cpu;
	u32 wake_cpu;
};

/* one ring record: 32 bytes */
struct lab_upcall_event {
	u64 ktime_ns;
	u64 seq;		/* the slot's sequence number of this kind */
	u32 tid;
	u16 vp;
	u8 kind;
	u8 cpu;
	u32 state;		/* block: prev_state; unblock: 0 */
	u32 pad;
};

BPF_HASH(lab_upcall_tids, u32, u32, 256);
BPF_F_TABLE("array", u32, struct lab_upcall_vp, lab_upcall_vps, LAB_UPCALL_VPS,
	    BPF_F_MMAPABLE);
BPF_RINGBUF_OUTPUT(lab_upcall_ring, LAB_UPCALL_RING_PAGES);

static inline void lab_upcall_deliver(struct lab_upcall_vp *slot, u32 vp,
				      u32 tid, u32 kind, u64 now, u64 seq,
				      u32 state)
{
	struct lab_upcall_event ev = {};
	u64 flags = BPF_RB_FORCE_WAKEUP;

	if (!(slot->ring_kinds & (1u << kind)))
		return;
	/* after the locked add on the sequence: see the header */
	if (slot->ring_if_sleeping && !*(volatile u32 *)&slot->sleeping)
		return;
	ev.ktime_ns = now;
	ev.seq = seq;
	ev.tid = tid;
	ev.vp = vp;
	ev.kind = kind;
	ev.cpu = bpf_get_smp_processor_id();
	ev.state = state;
	if (lab_upcall_ring.ringbuf_output(&ev, sizeof(ev), flags))
		__sync_fetch_and_add(&slot->ring_lost, 1);
}

int lab_upcall_block(struct tracepoint__sched__sched_switch *args)
{
	struct lab_upcall_vp *slot;
	u32 tid = args->prev_pid, vp, *vpp;
	u64 now, seq;

	if (!(args->prev_state & 0xff))
		return 0;
	vpp = lab_upcall_tids.lookup(&tid);
	if (!vpp)
		return 0;
	vp = *vpp;
	slot = lab_upcall_vps.lookup(&vp);
	if (!slot)
		return 0;
	now = bpf_ktime_get_ns();
	slot->block_ns = now;
	slot->block_cpu = bpf_get_smp_processor_id();
	slot->blocked = 1;
	seq = __sync_fetch_and_add(&slot->block_seq, 1) + 1;
	lab_upcall_deliver(slot, vp, tid, LAB_UPCALL_BLOCK, now, seq,
			   (u32)args->prev_state);
	return 0;
}

int lab_upcall_wake(struct tracepoint__sched__sched_waking *args)
{
	struct lab_upcall_vp *slot;
	u32 tid = args->pid, vp, *vpp;
	u64 now, seq;

	vpp = lab_upcall_tids.lookup(&tid);
	if (!vpp)
		return 0;
	vp = *vpp;
	slot = lab_upcall_vps.lookup(&vp);
	/* only the waking that ends a block it saw: a thread woken on its
	 * way to sleep (before it switched out) never blocked */
	if (!slot || !slot->blocked)
		return 0;
	now = bpf_ktime_get_ns();
	slot->blocked = 0;
	slot->wake_ns = now;
	slot->wake_cpu = bpf_get_smp_processor_id();
	seq = __sync_fetch_and_add(&slot->wake_seq, 1) + 1;
	lab_upcall_deliver(slot, vp, tid, LAB_UPCALL_UNBLOCK, now, seq, 0);
	return 0;
}
