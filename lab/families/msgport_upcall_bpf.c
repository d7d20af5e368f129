/*
 * The reply-port program (family `msgport`, seed 001's upcall port): on
 * io_uring:io_uring_complete, a reply of the run (its user_data carries
 * the run's tag) signals the submitting thread with
 * bpf_send_signal_thread(SIGUSR1), or, inside the thread's critical
 * section, sets `pending` for its flush.  native/msgport_upcall.c says how
 * the thread takes it; lab/families/_msgport_upcall.py compiles and
 * attaches it (a raw tracepoint: perf users of the tracepoint keep every
 * event).  The shared word's layout is native/msgport_upcall.h's struct
 * msgport_upcall_shared, put in place of the marker below.
 */
/* SHARED_STRUCT */

BPF_F_TABLE("array", u32, struct msgport_upcall_shared, lab_mp_port, 1,
	    BPF_F_MMAPABLE);

/* io_uring_complete(ctx, req, cqe): the CQE's user_data is its first word */
int lab_mp_complete(struct bpf_raw_tracepoint_args *ctx)
{
	struct msgport_upcall_shared *s;
	u64 user_data = 0;
	u32 key = 0;

	s = lab_mp_port.lookup(&key);
	if (!s || !s->tag)
		return 0;
	if (bpf_probe_read_kernel(&user_data, sizeof(user_data),
				  (void *)ctx->args[2]))
		return 0;
	if (user_data >> 48 != s->tag)
		return 0;
	__sync_fetch_and_add(&s->seen, 1);
	if ((u32)bpf_get_current_pid_tgid() != s->tid) {
		__sync_fetch_and_add(&s->foreign, 1);
		return 0;
	}
	/* from here on this runs in the thread itself: no race with it */
	if (s->passive)
		return 0;
	if (s->critical) {
		s->pending = 1;
		__sync_fetch_and_add(&s->deferred, 1);
		return 0;
	}
	if (s->raised)
		return 0;
	s->raised = 1;
	if (bpf_send_signal_thread(LAB_SIGUSR1)) {
		s->raised = 0;
		__sync_fetch_and_add(&s->send_errors, 1);
		return 0;
	}
	__sync_fetch_and_add(&s->signals_sent, 1);
	return 0;
}
