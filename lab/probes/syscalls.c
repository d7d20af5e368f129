/*
 * System calls made by the run's threads (raw_syscalls:sys_enter): counts
 * per thread and per system call number, inside the measured window.
 * Any program on sys_enter puts every system call of the machine on the
 * kernel's slow entry and exit path while it is attached: the runner
 * detaches it for runs without probes.
 *
 * sys_enter(struct pt_regs *regs, long id)
 */
#define LAB_SYSCALL_NRS 1024

BPF_PERCPU_ARRAY(lab_sys_by_nr, u64, LAB_SYSCALL_NRS);

int lab_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct lab_thread *t;
	u32 nr;
	u64 *n;

	if (!lab_window_open() || !(t = lab_thread_of(lab_current_tid())))
		return 0;
	t->syscalls += 1; /* only the thread itself writes it */
	nr = (u32)ctx->args[1];
	n = lab_sys_by_nr.lookup(&nr);
	if (n)
		*n += 1;
	lab_hit(LAB_HIT_SYSCALLS);
	return 0;
}
