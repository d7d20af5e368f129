/*
 * Context switches of the run's threads (sched:sched_switch), per thread:
 * voluntary (the thread blocked: prev_state has a sleep bit, S D T t X Z P
 * I = 0xff, and the switch is no preemption) and involuntary (preempted,
 * or switched out while runnable), and the time each thread spent off CPU,
 * from its switch out to its next switch in, both inside the measured
 * window.  The raw tracepoint's prev_state is the task's own state word: a
 * thread preempted between setting a sleep state and calling schedule()
 * still has the sleep bit there (the perf record's prev_state says R+ for
 * it, from the preempt argument), so preempt is tested first.
 *
 * Called from the one sched_switch program (sched_switch.c) with the
 * records of prev (current: its pid needs no read) and next, 0 for a
 * thread the run does not own.
 */
static __always_inline void
lab_switches_on_switch(struct bpf_raw_tracepoint_args *ctx,
		       struct lab_thread *prev, struct lab_thread *next,
		       u64 now)
{
	if (prev) {
		if (!ctx->args[0] &&
		    (ctx->args[3] & 0xff)) /* !preempt, prev_state */
			prev->voluntary += 1;
		else
			prev->involuntary += 1;
		prev->out_ns = now;
	}
	if (next) {
		if (next->out_ns)
			next->offcpu_ns += now - next->out_ns;
		next->out_ns = 0;
	}
	if (prev || next)
		lab_hit(LAB_HIT_SWITCHES);
}
