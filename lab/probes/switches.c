/*
 * Context switches of the run's threads (sched:sched_switch), per thread:
 * voluntary (the thread blocked: prev_state has a sleep bit, S D T t X Z P
 * I = 0xff) and involuntary (preempted while runnable: R, or R+ with the
 * preempt bit 0x100), and the time each thread spent off CPU, from its
 * switch out to its next switch in.  A switch counts when it happens inside
 * the measured window; an off-CPU interval counts in the window it ends.
 */
struct lab_switch_counts {
	u64 voluntary;
	u64 involuntary;
	u64 offcpu_ns;
};

BPF_HASH(lab_switches, u32, struct lab_switch_counts, 4096);
BPF_HASH(lab_switched_out, u32, u64, 4096);

int lab_switch(struct tracepoint__sched__sched_switch *args)
{
	struct lab_switch_counts zero = {}, *c;
	u32 prev = args->prev_pid, next = args->next_pid;
	u64 now = bpf_ktime_get_ns(), *out;
	int open = lab_window_open();

	if (prev && lab_current_watched()) {	/* prev is current */
		lab_switched_out.update(&prev, &now);
		if (open) {
			c = lab_switches.lookup_or_try_init(&prev, &zero);
			if (c) {
				if (args->prev_state & 0xff)
					__sync_fetch_and_add(&c->voluntary, 1);
				else
					__sync_fetch_and_add(&c->involuntary, 1);
			}
		}
	}
	if (lab_tid_watched(next)) {
		out = lab_switched_out.lookup(&next);
		if (out && open) {
			c = lab_switches.lookup_or_try_init(&next, &zero);
			if (c)
				__sync_fetch_and_add(&c->offcpu_ns, now - *out);
		}
		lab_switched_out.delete(&next);
	}
	return 0;
}
