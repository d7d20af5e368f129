/*
 * Wake-to-run latency of the run's threads: from sched:sched_waking (the
 * waker starts waking the thread, on the waker's CPU) through
 * sched:sched_wakeup (the thread is on a run queue: after the IPI or the
 * wake list when the target CPU is another one) to the sched:sched_switch
 * that runs it.  Every wake-up inside the measured window is one record in
 * an mmap-able array the runner reads whole: both latencies, the thread,
 * the waker's CPU and the CPU it ran on.
 *
 * sched_waking(struct task_struct *p), sched_wakeup(struct task_struct *p);
 * the switch that runs the thread is seen by the one sched_switch program
 * (sched_switch.c).
 */
#define LAB_WAKE_MAX 262144

struct lab_wake_event {
	u64 waking_to_run_ns;
	u64 wakeup_to_run_ns;
	u32 tid;
	u16 waker_cpu;
	u16 run_cpu;
};

BPF_F_TABLE("array", u32, struct lab_wake_event, lab_wake_events, LAB_WAKE_MAX,
	    BPF_F_MMAPABLE);
BPF_ARRAY(lab_wake_count, u64, 1);

int lab_waking(struct bpf_raw_tracepoint_args *ctx)
{
	struct lab_thread *t;

	if (!lab_window_open() ||
	    !(t = lab_thread_of(lab_task_pid(ctx->args[0]))))
		return 0;
	t->waking_ns = bpf_ktime_get_ns();
	t->wakeup_ns = 0;
	t->waker_cpu = bpf_get_smp_processor_id();
	lab_hit(LAB_HIT_WAKEUPS);
	return 0;
}

int lab_wakeup(struct bpf_raw_tracepoint_args *ctx)
{
	struct lab_thread *t;

	if (!lab_window_open() ||
	    !(t = lab_thread_of(lab_task_pid(ctx->args[0]))))
		return 0;
	if (t->waking_ns)
		t->wakeup_ns = bpf_ktime_get_ns();
	lab_hit(LAB_HIT_WAKEUPS);
	return 0;
}

/* from the one sched_switch program (sched_switch.c): next is running */
static __always_inline void lab_wakeups_on_switch(struct lab_thread *next,
						  u64 now)
{
	struct lab_wake_event *ev;
	u64 *count;
	u32 idx;
	int zero = 0;

	lab_hit(LAB_HIT_WAKEUPS);
	if (!next->waking_ns)
		return; /* back from a preemption, not a wake-up */
	count = lab_wake_count.lookup(&zero);
	if (count) {
		idx = __sync_fetch_and_add(count, 1);
		ev = lab_wake_events.lookup(&idx);
		if (ev) {
			ev->waking_to_run_ns = now - next->waking_ns;
			ev->wakeup_to_run_ns =
				next->wakeup_ns ? now - next->wakeup_ns : 0;
			ev->tid = next->tid;
			ev->waker_cpu = next->waker_cpu;
			ev->run_cpu = bpf_get_smp_processor_id();
		}
	}
	next->waking_ns = 0;
}
