/*
 * Migrations of the run's threads between CPUs (sched:sched_migrate_task)
 * inside the measured window.  Workers are pinned: a non-zero count says
 * the pinning did not hold (or the kernel moved a thread being woken).
 *
 * sched_migrate_task(struct task_struct *p, int dest_cpu)
 */
int lab_migrate(struct bpf_raw_tracepoint_args *ctx)
{
	struct lab_thread *t;

	if (!lab_window_open() ||
	    !(t = lab_thread_of(lab_task_pid(ctx->args[0]))))
		return 0;
	__sync_fetch_and_add(&t->migrations, 1); /* from any CPU */
	lab_hit(LAB_HIT_MIGRATIONS);
	return 0;
}
