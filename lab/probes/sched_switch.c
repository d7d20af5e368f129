/*
 * The one program on sched_switch for the concerns that watch it
 * (switches, wakeups): a second program on the tracepoint would pay the
 * dispatch, the reading of next's pid and the clock again for every switch
 * of the machine, and on a CPU whose every kernel return goes through a
 * return thunk (AMD's SRSO mitigation) each helper call is tens of ns.
 * lab/probes/__init__.py defines the programs, one per combination of the
 * concerns a run attaches, each a call of lab_on_switch() with constants.
 *
 * sched_switch(bool preempt, struct task_struct *prev,
 *              struct task_struct *next, unsigned int prev_state)
 */
static __always_inline int lab_on_switch(struct bpf_raw_tracepoint_args *ctx,
					 int switches, int wakeups)
{
	struct lab_thread *prev = 0, *next;
	u64 now = 0;

	if (!lab_window_open())
		return 0;
	if (switches)
		prev = lab_thread_of(lab_current_tid());
	next = lab_thread_of(lab_task_pid(ctx->args[2]));
	/* one test per pointer: clang would fold !prev && !next into an OR
	 * of the two, which the verifier refuses on pointers */
	if (next) {
		if (switches || next->waking_ns)
			now = bpf_ktime_get_ns();
	} else if (prev) {
		now = bpf_ktime_get_ns();
	} else {
		return 0;
	}
#ifdef LAB_WITH_SWITCHES
	if (switches)
		lab_switches_on_switch(ctx, prev, next, now);
#endif
#ifdef LAB_WITH_WAKEUPS
	if (wakeups && next)
		lab_wakeups_on_switch(next, now);
#endif
	return 0;
}
