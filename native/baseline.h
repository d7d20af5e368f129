/*
 * Family `baseline` (baseline.c): the reference costs.  Part of the cffi
 * cdef (see lab_native.h for the rules such a header follows).
 */
#ifndef LAB_BASELINE_H
#define LAB_BASELINE_H

#include "lab_native.h"

/*
 * Every baseline worker runs `warmup` unrecorded samples, opens the
 * handshake window, records nr_samples samples, closes it.  A sample is
 * the mean over ops_per_sample operations where one operation is too short
 * to time alone; ping-pongs time every round trip.
 */
int baseline_clock_read(struct lab_handshake *hs, uint64_t warmup,
			uint64_t nr_samples, uint32_t ops_per_sample,
			double *ns_per_op);
int baseline_null_syscall(struct lab_handshake *hs, uint64_t warmup,
			  uint64_t nr_samples, uint32_t ops_per_sample,
			  double *ns_per_op);
/* handoff_ns gets 2 * nr_samples one-way handoffs (ping->pong, pong->ping). */
int baseline_futex_pingpong(struct lab_handshake *hs, int cpu, int peer_cpu,
			    uint64_t warmup, uint64_t nr_samples,
			    double *round_trip_ns, double *handoff_ns);
/* Two threads on cpu that only sched_yield(): a sample is the mean over
 * ops_per_sample yields of the measuring one (each a switch to the other
 * and back when both are runnable). */
int baseline_yield_pingpong(struct lab_handshake *hs, int cpu, uint64_t warmup,
			    uint64_t nr_samples, uint32_t ops_per_sample,
			    double *ns_per_op);
int baseline_pipe_pingpong(struct lab_handshake *hs, int cpu, int peer_cpu,
			   uint64_t warmup, uint64_t nr_samples,
			   double *round_trip_ns);
int baseline_fiber_switch(struct lab_handshake *hs, uint64_t warmup,
			  uint64_t nr_samples, uint32_t ops_per_sample,
			  double *ns_per_switch);
int baseline_swapcontext(struct lab_handshake *hs, uint64_t warmup,
			 uint64_t nr_samples, uint32_t ops_per_sample,
			 double *ns_per_switch);
/* batch NOPs per io_uring_enter(); batch 1 is one NOP per system call.  A
 * sample is max(1, ops_per_sample / batch) enters, in ns per NOP.
 * sqe_flags: e.g. IOSQE_ASYNC to force every NOP through io-wq. */
int baseline_uring_nop(struct lab_handshake *hs, uint32_t batch,
		       uint32_t sqe_flags, uint64_t warmup, uint64_t nr_samples,
		       uint32_t ops_per_sample, double *ns_per_op);

#endif /* LAB_BASELINE_H */
