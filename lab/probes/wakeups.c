/*
 * Wake-to-run latency of the run's threads: from sched:sched_waking (the
 * waker starts waking the thread, on the waker's CPU) through
 * sched:sched_wakeup (the thread is on a run queue: after the IPI or the
 * wake list when the target CPU is another one) to the sched:sched_switch
 * that runs it.  Every wake-up inside the measured window is one record in
 * an mmap-able array the runner reads whole: both latencies, the thread,
 * the waker's CPU and the CPU it ran on.
 */
#define LAB_WAKE_MAX 262144

struct lab_wake_start {
	u64 waking_ns;
	u64 wakeup_ns;
	u32 waker_cpu;
	u32 pad;
};

struct lab_wake_event {
	u64 waking_to_run_ns;
	u64 wakeup_to_run_ns;
	u32 tid;
	u16 waker_cpu;
	u16 run_cpu;
};

BPF_HASH(lab_wake_start, u32, struct lab_wake_start, 4096);
BPF_F_TABLE("array", u32, struct lab_wake_event, lab_wake_events, LAB_WAKE_MAX,
	    BPF_F_MMAPABLE);
BPF_ARRAY(lab_wake_count, u64, 1);

int lab_waking(struct tracepoint__sched__sched_waking *args)
{
	struct lab_wake_start start = {};
	u32 tid = args->pid;

	if (!lab_tid_watched(tid))
		return 0;
	start.waking_ns = bpf_ktime_get_ns();
	start.waker_cpu = bpf_get_smp_processor_id();
	lab_wake_start.update(&tid, &start);
	return 0;
}

int lab_wakeup(struct tracepoint__sched__sched_wakeup *args)
{
	struct lab_wake_start *start;
	u32 tid = args->pid;

	if (!lab_tid_watched(tid))
		return 0;
	start = lab_wake_start.lookup(&tid);
	if (start)
		start->wakeup_ns = bpf_ktime_get_ns();
	return 0;
}

int lab_wake_run(struct tracepoint__sched__sched_switch *args)
{
	struct lab_wake_start *start;
	struct lab_wake_event *ev;
	u32 next = args->next_pid, idx;
	u64 now, *count;
	int zero = 0;

	if (!lab_tid_watched(next))
		return 0;
	start = lab_wake_start.lookup(&next);
	if (!start)
		return 0;
	if (lab_window_open()) {
		count = lab_wake_count.lookup(&zero);
		if (count) {
			idx = __sync_fetch_and_add(count, 1);
			ev = lab_wake_events.lookup(&idx);
			if (ev) {
				now = bpf_ktime_get_ns();
				ev->waking_to_run_ns = now - start->waking_ns;
				ev->wakeup_to_run_ns = start->wakeup_ns ?
					now - start->wakeup_ns : 0;
				ev->tid = next;
				ev->waker_cpu = start->waker_cpu;
				ev->run_cpu = bpf_get_smp_processor_id();
			}
		}
	}
	lab_wake_start.delete(&next);
	return 0;
}
