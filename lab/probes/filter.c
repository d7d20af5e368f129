/*
 * What every probe shares: which threads belong to the run being
 * measured, whether its measured window is open, each watched thread's
 * record, and how many times each probe ran on the run's events.
 *
 * Every probe is a raw tracepoint program: the kernel hands it the
 * tracepoint's own arguments (ctx->args[i], the TP_PROTO order) instead of
 * filling a perf record for it, which is most of what a perf-event
 * tracepoint program costs, and it never hides an event from perf users of
 * the tracepoint (a perf-attached program returning 0 does).  Fields of the
 * kernel's structs are read at offsets from the running kernel's BTF
 * (lab/probes/btf.py: LAB_OFF_<struct>_<field>), not through the stand-in
 * headers' layouts, which are another kernel's.
 *
 * lab_tid_slot gives every pid (pid_max of them, four u16 to an array
 * word; mmap-able) its slot in lab_threads, 0 for a thread the run does not
 * own: the runner gives the worker's pid a slot when it starts the worker,
 * before the worker has read its spec, and task:task_newtask one to every
 * thread and child the watched threads create (io-wq and SQPOLL threads
 * included: they come from copy_process() too).  The runner hands out
 * slots below LAB_FIRST_KERNEL_SLOT, the program those above (lab_ctl[1]
 * counts them), so the two never share a counter; a u16 store, not a
 * read-modify-write, so they never share a word's update either.  Finding
 * a thread's record is two array loads: no hash, no helper call, which is
 * what a probe on every system call and every switch can afford.
 *
 * lab_ctl[0] is 1 only between the worker's "ready" and "done" (the
 * handshake), so counts cover exactly the measured window.  Each program
 * looks at the window first: it is the cheapest test, and outside a run it
 * ends the program at once (sys_enter fires on every system call of the
 * machine).  Nothing is recorded outside the window.
 *
 * lab_hits counts, per probe, its runs on the run's events inside the
 * window (per CPU, no atomic): with the probe's measured cost per run
 * (family probe_cost, analysis/_probe_cost.py) it says in advance what
 * attaching it costs.
 */
#ifndef LAB_PID_MAX
#error "LAB_PID_MAX: the runner passes /proc/sys/kernel/pid_max"
#endif

/* LAB_HIT_<probe>, each probe's index in lab_hits, and LAB_NR_HITS come
 * from lab/probes/__init__.py (CONCERNS, in order), as LAB_PID_MAX does */

/* LAB_SLOTS (threads a run can own; the last slot is shared by any past
 * it) and LAB_FIRST_KERNEL_SLOT come from lab/probes/__init__.py */
/* a watched thread's state and counts, one array slot per thread */
struct lab_thread {
	u64 voluntary;	 /* switches: blocked */
	u64 involuntary; /* switches: preempted */
	u64 offcpu_ns;	 /* switches: switch out to next switch in */
	u64 out_ns;	 /* switches: when it last switched out, or 0 */
	u64 syscalls;
	u64 migrations;
	u64 waking_ns; /* wakeups: sched_waking of a pending wake-up, or 0 */
	u64 wakeup_ns; /* wakeups: its sched_wakeup */
	u32 waker_cpu;
	u32 tid; /* whose slot this is */
};

BPF_F_TABLE("array", u32, u64, lab_tid_slot, LAB_PID_MAX / 4 + 1,
	    BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct lab_thread, lab_threads, LAB_SLOTS,
	    BPF_F_MMAPABLE);
BPF_ARRAY(lab_ctl, u64, 2); /* [0] window open, [1] next kernel slot */
BPF_PERCPU_ARRAY(lab_hits, u64, LAB_NR_HITS);

static __always_inline int lab_window_open(void)
{
	int zero = 0;
	u64 *open = lab_ctl.lookup(&zero);

	return open && *open;
}

/* the thread's record, or 0 when the run does not own it */
static __always_inline struct lab_thread *lab_thread_of(u32 tid)
{
	u32 word = tid / 4, slot;
	u64 *w;

	if (!tid)
		return 0; /* the idle task */
	w = lab_tid_slot.lookup(&word);
	if (!w)
		return 0;
	slot = ((u16 *)w)[tid & 3];
	return slot ? lab_threads.lookup(&slot) : 0;
}

static __always_inline u32 lab_current_tid(void)
{
	return (u32)bpf_get_current_pid_tgid();
}

/* a task_struct's pid from a raw tracepoint's argument (a read of kernel memory
 * at the running kernel's offset: the helper bcc compiles a -> into) */
static __always_inline u32 lab_task_pid(u64 task)
{
	u32 pid = 0;

	bpf_probe_read_kernel(&pid, sizeof(pid),
			      (void *)(task + LAB_OFF_task_struct_pid));
	return pid;
}

static __always_inline void lab_hit(int probe)
{
	u64 *n = lab_hits.lookup(&probe);

	if (n)
		*n += 1;
}

/* task_newtask(struct task_struct *task, unsigned long clone_flags) */
int lab_newtask(struct bpf_raw_tracepoint_args *ctx)
{
	struct lab_thread *t;
	u32 tid, word, slot, one = 1;
	u64 *w, *next;

	if (!lab_thread_of(lab_current_tid()))
		return 0;
	tid = lab_task_pid(ctx->args[0]);
	word = tid / 4;
	w = lab_tid_slot.lookup(&word);
	next = lab_ctl.lookup(&one);
	if (!w || !next || !tid)
		return 0;
	slot = __sync_fetch_and_add(next, 1);
	if (slot >= LAB_SLOTS)
		slot = LAB_SLOTS - 1; /* shared by the threads past the last */
	t = lab_threads.lookup(&slot);
	if (t)
		t->tid = tid;
	((u16 *)w)[tid & 3] = slot;
	return 0;
}
