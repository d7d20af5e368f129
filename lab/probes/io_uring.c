/*
 * io_uring requests of the run, counted on the rings its thread groups
 * create (io_uring:io_uring_create while the worker is tracked, so rings
 * set up before the window count too): requests submitted
 * (io_uring_submit_req), punted to io-wq (io_uring_queue_async_work),
 * poll-armed (io_uring_poll_arm), completed (io_uring_complete, whichever
 * context posts it), and task-work runs of the run's threads
 * (io_uring_task_work_run; io_uring_local_work_run for DEFER_TASKRUN
 * rings), all inside the measured window.
 */
#define LAB_URING_SUBMITTED	0
#define LAB_URING_PUNTED	1
#define LAB_URING_POLL_ARMED	2
#define LAB_URING_COMPLETED	3
#define LAB_URING_TASK_WORK	4
#define LAB_URING_LOCAL_WORK	5
#define LAB_URING_NR		6

BPF_HASH(lab_rings, u64, u8, 256);
BPF_ARRAY(lab_uring, u64, LAB_URING_NR);

static inline void lab_uring_count(void *ctx, int what)
{
	u64 ring = (u64)ctx, *v;

	if (!lab_window_open() || !lab_rings.lookup(&ring))
		return;
	v = lab_uring.lookup(&what);
	if (v)
		__sync_fetch_and_add(v, 1);
}

int lab_uring_create(struct tracepoint__io_uring__io_uring_create *args)
{
	u64 ring = (u64)args->ctx;
	u8 one = 1;

	if (lab_current_watched())
		lab_rings.update(&ring, &one);
	return 0;
}

int lab_uring_submit(struct tracepoint__io_uring__io_uring_submit_req *args)
{
	lab_uring_count(args->ctx, LAB_URING_SUBMITTED);
	return 0;
}

int lab_uring_punt(struct tracepoint__io_uring__io_uring_queue_async_work *args)
{
	lab_uring_count(args->ctx, LAB_URING_PUNTED);
	return 0;
}

int lab_uring_poll(struct tracepoint__io_uring__io_uring_poll_arm *args)
{
	lab_uring_count(args->ctx, LAB_URING_POLL_ARMED);
	return 0;
}

int lab_uring_done(struct tracepoint__io_uring__io_uring_complete *args)
{
	lab_uring_count(args->ctx, LAB_URING_COMPLETED);
	return 0;
}

int lab_uring_local(struct tracepoint__io_uring__io_uring_local_work_run *args)
{
	lab_uring_count(args->ctx, LAB_URING_LOCAL_WORK);
	return 0;
}

/* task work belongs to a task, not a ring: filter on the thread group */
int lab_uring_tw(struct tracepoint__io_uring__io_uring_task_work_run *args)
{
	int what = LAB_URING_TASK_WORK;
	u64 *v;

	if (!lab_window_open() || !lab_current_watched())
		return 0;
	v = lab_uring.lookup(&what);
	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}
