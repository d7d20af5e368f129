/*
 * The filter every probe shares: which thread groups and threads belong to
 * the run being measured, and whether its measured window is open.
 *
 * The runner puts the worker's pid in lab_tgids and lab_tids when it
 * starts the worker, before the worker has read its spec, so nothing the
 * worker creates is missed: task:task_newtask adds each thread (io-wq and
 * SQPOLL threads included: they are created with copy_process() too) and
 * each child process (its own thread group).  lab_ctl[0] is 1 only between
 * the worker's "ready" and "done" (the handshake), so counts cover exactly
 * the measured window.
 *
 * Each concern is its own BPF module (bcc generates a tracepoint's argument
 * struct once per program, so two concerns on sched_switch cannot share a
 * module); this file opens every module.  The filter module owns the maps
 * (LAB_FILTER_OWNER: BPF_TABLE_SHARED), the others reach them as extern
 * tables of the same process.
 */
#define LAB_CLONE_THREAD 0x00010000

#ifdef LAB_FILTER_OWNER
#define LAB_FILTER_TABLE(type, key, leaf, name, entries) \
	BPF_TABLE_SHARED(type, key, leaf, name, entries)
#else
#define LAB_FILTER_TABLE(type, key, leaf, name, entries) \
	BPF_TABLE("extern", key, leaf, name, entries)
#endif

LAB_FILTER_TABLE("hash", u32, u8, lab_tgids, 256);
LAB_FILTER_TABLE("hash", u32, u8, lab_tids, 4096);
LAB_FILTER_TABLE("array", int, u64, lab_ctl, 1);

static inline int lab_window_open(void)
{
	int zero = 0;
	u64 *open = lab_ctl.lookup(&zero);

	return open && *open;
}

static inline int lab_current_watched(void)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;

	return lab_tgids.lookup(&tgid) != 0;
}

static inline int lab_tid_watched(u32 tid)
{
	return tid && lab_tids.lookup(&tid) != 0;
}

#ifdef LAB_FILTER_OWNER
int lab_newtask(struct tracepoint__task__task_newtask *args)
{
	u32 tid = args->pid;
	u8 one = 1;

	if (!lab_current_watched())
		return 0;
	lab_tids.update(&tid, &one);
	if (!(args->clone_flags & LAB_CLONE_THREAD))
		lab_tgids.update(&tid, &one);
	return 0;
}
#endif
