/*
 * The upcall program's shared memory, declared once for both of its sides
 * (libbpf-tools' habit: foo.h included by foo.bpf.c and foo.c).  The BPF
 * program, lab/families/upcall_bpf.c, includes it: lab/upcall_program.py
 * puts this file's text in place of that #include, so the program's
 * source carries these bytes and a change here is a change of the
 * program.  The C side (upcall.c, activations.c) includes it as usual.
 * Private: not seen by cffi.
 *
 * Types both compilers know: bcc compiles against kernel headers, whose
 * linux/types.h (in every bcc program) defines uint64_t and friends, and
 * defines __BPF_TRACING__; user space takes them from stdint.h.
 */
#ifndef LAB_UPCALL_ABI_H
#define LAB_UPCALL_ABI_H

#ifndef __BPF_TRACING__
#include <stdint.h>
#endif

/* lab_upcall_vps: slots, one per virtual processor (VP) */
#define UP_NR_VPS 64

/* an event's kind, and bit k of up_vp.ring_kinds */
#define UP_KIND_BLOCK	0u
#define UP_KIND_UNBLOCK 1u
#define UP_KIND_PREEMPT 2u /* lab_upcall_preempt: the kernel took its CPU */

/* up_stages.armed: which event starts the upcall in flight */
#define UP_ARMED_BLOCK	 1u /* the block event (kind 0) */
#define UP_ARMED_UNBLOCK 2u /* the unblock event (kind 1) */
#define UP_ARMED_USER	 3u /* C stored the event's time itself */

/* up_stages.ring_wakeup */
#define UP_RING_FORCE	 0u /* BPF_RB_FORCE_WAKEUP: every record wakes */
#define UP_RING_ADAPTIVE 1u /* flags 0: wake only a consumer that caught up */

/* one VP's slot, mapped by the scheduler */
struct up_vp {
	uint64_t block_seq; /* block events published */
	uint64_t block_ns;  /* kernel time of the last one */
	uint64_t wake_seq;  /* unblock events published */
	uint64_t wake_ns;
	uint64_t ring_lost;  /* ring records that found no room */
	uint32_t blocked;    /* 1 from a block to its waking */
	uint32_t sleeping;   /* scheduler: 1 while (about to be) in epoll */
	uint32_t ring_kinds; /* scheduler: bit k: kind k to the ring */
	uint32_t ring_if_sleeping; /* scheduler: 1: only while sleeping is set */
	uint32_t block_cpu;
	uint32_t wake_cpu;
	/* preemption (lab_upcall_preempt, attached only for the runs that
	 * ask): the thread switched out still runnable, and back in */
	uint64_t preempt_seq; /* preemptions published */
	uint64_t preempt_ns;  /* kernel time of the last one */
	uint64_t resume_seq;  /* switches in that ended a preemption */
	uint64_t resume_ns;
	uint32_t preempted;    /* 1 from a preemption to its switch in */
	uint32_t preempt_cpu;  /* where the last preemption was */
	uint32_t preempted_by; /* the tid that took the CPU (next) */
	uint32_t resume_cpu;
	/* rseq:rseq_ip_fixup of the thread (lab_upcall_rseq_fixup, attached
	 * only for the runs that ask): its rseq critical sections aborted */
	uint64_t rseq_fixups;
	uint64_t spare[1];
};

/* one ring record */
struct up_event {
	uint64_t ktime_ns;
	uint64_t seq; /* the slot's sequence number of this kind */
	uint32_t tid;
	uint16_t vp;
	uint8_t kind;
	uint8_t cpu;
	uint32_t state;	    /* block, preempt: prev_state; unblock: 0 */
	uint32_t other_tid; /* preempt: the tid that took the CPU; else 0 */
};

/* The upcall in flight (VP 0, the upcall family's only one), stage by
 * stage: the anatomy, see lab/families/upcall_bpf.c. */
struct up_stages {
	uint64_t event_ns;
	uint64_t raise_ns;
	uint64_t irq_work_ns;
	uint64_t waking_ns;
	uint64_t wake_ipi_ns;
	uint64_t switch_in_ns;
	uint32_t armed;	      /* scheduler: UP_ARMED_*, 0: nothing in flight */
	uint32_t sched_tid;   /* scheduler: its own tid */
	uint32_t event_cpu;   /* the program (or C): where the event was */
	uint32_t sched_cpu;   /* scheduler: its CPU */
	uint32_t ipis;	      /* IPIs the event's CPU sent after the event */
	uint32_t self_ipis;   /* ... to itself */
	uint32_t ring_wakeup; /* scheduler: UP_RING_* for VP 0's records */
	uint32_t pad;
};

/* the sizes the mappings are checked against, on both sides */
_Static_assert(sizeof(struct up_vp) == 128, "VP slot is two cache lines");
_Static_assert(sizeof(struct up_event) == 32, "event is 32 bytes");
_Static_assert(sizeof(struct up_stages) == 80, "stages are 80 bytes");

#endif /* LAB_UPCALL_ABI_H */
