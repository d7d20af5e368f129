/*
 * The upcall program's shared memory, as C sees it: lab/families/upcall_bpf.c
 * declares the same three structs (struct lab_upcall_vp, struct
 * lab_upcall_event, struct lab_upcall_stages); keep them in step, byte for byte (the tests compare
 * the sizes with the BPF map's).  Private: used by upcall.c and
 * activations.c, not seen by cffi.
 */
#ifndef LAB_UPCALL_ABI_H
#define LAB_UPCALL_ABI_H

#include <stdint.h>

#define UP_KIND_BLOCK	0u
#define UP_KIND_UNBLOCK 1u

struct up_vp {
	uint64_t block_seq;
	uint64_t block_ns;
	uint64_t wake_seq;
	uint64_t wake_ns;
	uint64_t ring_lost;
	uint32_t blocked;
	uint32_t sleeping;
	uint32_t ring_kinds;
	uint32_t ring_if_sleeping;
	uint32_t block_cpu;
	uint32_t wake_cpu;
};

struct up_event {
	uint64_t ktime_ns;
	uint64_t seq;
	uint32_t tid;
	uint16_t vp;
	uint8_t kind;
	uint8_t cpu;
	uint32_t state;
	uint32_t pad;
};

/* The upcall in flight, stage by stage (the anatomy: see
 * lab/families/upcall_bpf.c). */
#define UP_ARMED_BLOCK	 1u /* the block event starts it */
#define UP_ARMED_UNBLOCK 2u /* the unblock event starts it */
#define UP_ARMED_USER	 3u /* C stored the event's time */
#define UP_RING_FORCE	 0u /* BPF_RB_FORCE_WAKEUP */
#define UP_RING_ADAPTIVE 1u /* flags 0 */

struct up_stages {
	uint64_t event_ns;
	uint64_t raise_ns;
	uint64_t irq_work_ns;
	uint64_t waking_ns;
	uint64_t wake_ipi_ns;
	uint64_t switch_in_ns;
	uint32_t armed;
	uint32_t sched_tid;
	uint32_t event_cpu;
	uint32_t sched_cpu;
	uint32_t ipis;
	uint32_t self_ipis;
	uint32_t ring_wakeup;
	uint32_t pad;
};

_Static_assert(sizeof(struct up_vp) == 64, "VP slot is 64 bytes");
_Static_assert(sizeof(struct up_event) == 32, "event is 32 bytes");
_Static_assert(sizeof(struct up_stages) == 80, "stages are 80 bytes");

#endif /* LAB_UPCALL_ABI_H */
