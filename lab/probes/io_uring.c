/*
 * io_uring work of the run's threads that a ring's own counters do not
 * show, inside the measured window: requests punted to io-wq
 * (io_uring_queue_async_work), poll-armed (io_uring_poll_arm), and
 * task-work runs (io_uring_task_work_run; io_uring_local_work_run for
 * DEFER_TASKRUN rings).  Requests submitted and completed are not counted
 * here: the runner reads them from the kernel's own counters of each ring
 * (CachedSqHead, CachedCqTail in /proc/PID/fdinfo) at the window's ends,
 * since a program on io_uring_submit_req and io_uring_complete, even an
 * empty one, costs more than the NOP it would count.
 *
 * Counted in the context that does the work, when it is a watched thread:
 * the submitter, its task work, and the io-wq and SQPOLL threads, which its
 * process creates and so are watched too.
 */
#define LAB_URING_PUNTED     0
#define LAB_URING_POLL_ARMED 1
#define LAB_URING_TASK_WORK  2
#define LAB_URING_LOCAL_WORK 3
#define LAB_URING_NR	     4

BPF_PERCPU_ARRAY(lab_uring, u64, LAB_URING_NR);

static __always_inline int lab_uring_count(int what)
{
	u64 *n;

	if (!lab_window_open() || !lab_thread_of(lab_current_tid()))
		return 0;
	n = lab_uring.lookup(&what);
	if (n)
		*n += 1;
	lab_hit(LAB_HIT_IO_URING);
	return 0;
}

/* io_uring_queue_async_work(struct io_kiocb *req, int rw) */
int lab_uring_punt(struct bpf_raw_tracepoint_args *ctx)
{
	return lab_uring_count(LAB_URING_PUNTED);
}

/* io_uring_poll_arm(struct io_kiocb *req, int mask, int events) */
int lab_uring_poll(struct bpf_raw_tracepoint_args *ctx)
{
	return lab_uring_count(LAB_URING_POLL_ARMED);
}

/* io_uring_task_work_run(void *tctx, unsigned int count) */
int lab_uring_tw(struct bpf_raw_tracepoint_args *ctx)
{
	return lab_uring_count(LAB_URING_TASK_WORK);
}

/* io_uring_local_work_run(void *ctx, int count, unsigned int loops) */
int lab_uring_local(struct bpf_raw_tracepoint_args *ctx)
{
	return lab_uring_count(LAB_URING_LOCAL_WORK);
}
