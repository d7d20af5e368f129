/*
 * Migrations of the run's threads between CPUs (sched:sched_migrate_task)
 * inside the measured window.  Workers are pinned: a non-zero count says
 * the pinning did not hold (or the kernel moved a thread being woken).
 */
BPF_HASH(lab_migrations, u32, u64, 4096);

int lab_migrate(struct tracepoint__sched__sched_migrate_task *args)
{
	u32 tid = args->pid;

	if (lab_window_open() && lab_tid_watched(tid))
		lab_migrations.increment(tid);
	return 0;
}
