/*
 * System calls made by the run's threads (raw_syscalls:sys_enter): counts
 * per thread and per system call number, inside the measured window.  The
 * window check comes first: outside a run every system call on the
 * machine pays one array lookup here.
 */
BPF_HASH(lab_sys_by_tid, u32, u64, 4096);
BPF_HASH(lab_sys_by_nr, u32, u64, 1024);

int lab_sys_enter(struct tracepoint__raw_syscalls__sys_enter *args)
{
	u32 tid, nr;

	if (!lab_window_open() || !lab_current_watched())
		return 0;
	tid = (u32)bpf_get_current_pid_tgid();
	nr = (u32)args->id;
	lab_sys_by_tid.increment(tid);
	lab_sys_by_nr.increment(nr);
	return 0;
}
