/*
 * Table IV of Anderson et al. (1992, seed 002): what creating a thread
 * and synchronising two threads cost, by who does it.  Null Fork: create a
 * thread with a null body, run it, join it; Signal-Wait: wake the other
 * side, then wait for it (one operation: half a round trip).  Fibers run
 * on the activations runtime (activations.c) as `none` builds it, one
 * activation and no kernel support (FastThreads on Topaz threads), or as
 * `upcall` builds it, the upcall program attached and a spare asleep on
 * its ring (FastThreads on scheduler activations); kernel threads are
 * pthreads (Topaz threads), processes fork() (Ultrix processes), both
 * on one CPU.
 *
 * Build: part of lab._native (native/build.py), -luring -lpthread.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "activations_internal.h"

/* ---- fibers: the runtime's fork, join and ready queue ----------------- */

static void t4_null(struct act_fiber *f)
{
	lab_keep(f);
}

/* A pooled fiber: a "fork" hands it a body; it runs it, wakes its joiner
 * and exits back to the pool (stacks are reused, as FastThreads did). */
static void t4_pool_body(struct act_fiber *f)
{
	struct act_fiber *j;

	for (;;) {
		f->fn(f);
		j = f->joiner;
		f->joiner = NULL;
		if (j)
			vp_push(f->vp, j);
		f->state = FS_EXIT;
		lab_fiber_switch(&f->ctx, &f->act->sched);
	}
}

/* Signal-Wait's other side: signal the measuring fiber back, then wait. */
static void t4_partner_body(struct act_fiber *f)
{
	for (;;) {
		vp_push(f->vp, f->peer);
		f->state = FS_WAIT;
		lab_fiber_switch(&f->ctx, &f->act->sched);
	}
}

static void t4_fork_join(struct act_fiber *self)
{
	struct act_vp *vp = self->vp;
	struct act_fiber *c;

	pthread_mutex_lock(&vp->lock);
	c = vp->pool;
	vp->pool = c->next;
	pthread_mutex_unlock(&vp->lock);
	c->fn = t4_null;
	c->joiner = self;
	vp_push(vp, c);
	self->state = FS_WAIT; /* join: the child's exit requeues us */
	lab_fiber_switch(&self->ctx, &self->act->sched);
}

static void t4_signal_wait(struct act_fiber *self)
{
	vp_push(self->vp, self->peer);
	self->state = FS_WAIT;
	lab_fiber_switch(&self->ctx, &self->act->sched);
}

static void t4_measure_body(struct act_fiber *f)
{
	struct act_t4 *t = &f->rt->t4;
	uint64_t s, i, t0;
	double per;
	int err = 0;

	/* signal-wait: an operation is half a round trip */
	per = (double)t->ops * (t->op == ACT_T4_SIGNAL_WAIT ? 2.0 : 1.0);
	for (s = 0; s < t->warmup + t->nr_samples; s++) {
		if (s == t->warmup &&
		    (err = lab_handshake_ready(t->hs, NULL, 0)))
			break;
		t0 = now_ns();
		for (i = 0; i < t->ops; i++) {
			if (t->op == ACT_T4_NULL_FORK)
				t4_fork_join(f);
			else
				t4_signal_wait(f);
		}
		if (s >= t->warmup)
			t->out[s - t->warmup] = (double)(now_ns() - t0) / per;
	}
	if (!err)
		err = lab_handshake_done(t->hs);
	atomic_store(&t->err, err);
	atomic_store(&t->done, 1);
	futex_wake((uint32_t *)&t->done, 1);
	f->state = FS_PARK;
	lab_fiber_switch(&f->ctx, &f->act->sched);
	abort();
}

static int t4_fibers(struct lab_handshake *hs, bool activations, int op,
		     int cpu, uint64_t warmup, uint64_t nr_samples,
		     uint32_t ops, int ring_fd, int vps_fd, int tids_fd,
		     double *out)
{
	struct activations_config cfg;
	struct act_fiber *m, *c;
	struct act_rt *rt;
	uint32_t d, i;
	int err;

	memset(&cfg, 0, sizeof(cfg));
	cfg.variant = activations ? ACT_UPCALL : ACT_NONE;
	cfg.nr_vps = 1;
	cfg.vp_cpus = &cpu;
	/* one spare asleep on the ring: the upcall armed, never fired */
	cfg.spares = activations ? 1 : 0;
	cfg.concurrency = 1; /* not run: Table IV has its own fibers */
	cfg.ring_fd = ring_fd;
	cfg.vps_fd = vps_fd;
	cfg.tids_fd = tids_fd;
	rt = act_rt_create(&cfg);
	if (!rt)
		return -ENOMEM;
	rt->t4.op = op;
	rt->t4.warmup = warmup;
	rt->t4.nr_samples = nr_samples;
	rt->t4.ops = ops;
	rt->t4.out = out;
	rt->t4.hs = hs;
	/* fiber 0 is the unused workload fiber; then the measuring fiber,
	 * its Signal-Wait partner, two pooled children */
	err = act_setup(rt, 4);
	if (!err)
		err = act_start(rt);
	if (err)
		goto out;
	rt->nr_fibers = 0;
	m = &rt->fibers[1];
	m->body = t4_measure_body;
	rt->fibers[2].body = t4_partner_body;
	rt->fibers[2].peer = m;
	m->peer = &rt->fibers[2];
	for (i = 3; i < 5; i++) {
		c = &rt->fibers[i];
		c->body = t4_pool_body;
		c->next = rt->vps[0].pool;
		rt->vps[0].pool = c;
	}
	atomic_store(&rt->go, 1);
	futex_wake((uint32_t *)&rt->go, INT32_MAX);
	vp_push(&rt->vps[0], m);
	while (!(d = atomic_load(&rt->t4.done)) && !atomic_load(&rt->err))
		act_futex_wait_ms(&rt->t4.done, 0, ACT_WAIT_SLICE_MS);
	err = atomic_load(&rt->t4.err);
	if (!err)
		err = atomic_load(&rt->err);
out:
	act_teardown(rt);
	free(rt);
	return err;
}

/* ---- kernel threads and processes -------------------------------------- */

static void *t4_null_thread(void *arg)
{
	return arg;
}

static int t4_pthreads_fork(struct lab_handshake *hs, uint64_t warmup,
			    uint64_t nr_samples, double *out)
{
	uint64_t s, t0;
	pthread_t t;
	int err;

	for (s = 0; s < warmup + nr_samples; s++) {
		if (s == warmup && (err = lab_handshake_ready(hs, NULL, 0)))
			return err;
		t0 = now_ns();
		/* born with our affinity: the same CPU */
		err = -pthread_create(&t, NULL, t4_null_thread, NULL);
		if (err)
			return err;
		pthread_join(t, NULL);
		if (s >= warmup)
			out[s - warmup] = (double)(now_ns() - t0);
	}
	return lab_handshake_done(hs);
}

static int t4_processes_fork(struct lab_handshake *hs, uint64_t warmup,
			     uint64_t nr_samples, double *out)
{
	uint64_t s, t0;
	int status, err;
	pid_t pid;

	for (s = 0; s < warmup + nr_samples; s++) {
		if (s == warmup && (err = lab_handshake_ready(hs, NULL, 0)))
			return err;
		t0 = now_ns();
		/* a copy of this (Python) process's page tables: what a
		 * process costs a program of this size */
		pid = fork();
		if (pid < 0)
			return -errno;
		if (pid == 0)
			_exit(0);
		if (waitpid(pid, &status, 0) < 0)
			return -errno;
		if (s >= warmup)
			out[s - warmup] = (double)(now_ns() - t0);
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			return -ECHILD;
	}
	return lab_handshake_done(hs);
}

/*
 * Signal-Wait between two kernel threads or processes on one CPU: a futex
 * word (private for threads, in MAP_SHARED memory for processes) whose
 * value says whose turn it is; each side wakes the other, then waits.
 */
struct t4_turn {
	_Alignas(LAB_CACHELINE) _Atomic uint32_t turn;
	_Atomic uint32_t stop;
	int shared;
};

static void t4_wait_turn(struct t4_turn *t, uint32_t mine)
{
	uint32_t seen;

	while ((seen = atomic_load(&t->turn)) != mine && !atomic_load(&t->stop))
		syscall(SYS_futex, (uint32_t *)&t->turn,
			t->shared ? FUTEX_WAIT : FUTEX_WAIT_PRIVATE, seen, NULL,
			NULL, 0);
}

static void t4_pass_turn(struct t4_turn *t, uint32_t to)
{
	atomic_store(&t->turn, to);
	syscall(SYS_futex, (uint32_t *)&t->turn,
		t->shared ? FUTEX_WAKE : FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void t4_pong(struct t4_turn *t)
{
	for (;;) {
		t4_wait_turn(t, 1);
		if (atomic_load(&t->stop))
			return;
		t4_pass_turn(t, 0);
	}
}

static void *t4_pong_thread(void *arg)
{
	t4_pong(arg);
	return NULL;
}

static int t4_kernel_signal_wait(struct lab_handshake *hs, bool processes,
				 uint64_t warmup, uint64_t nr_samples,
				 double *out)
{
	struct t4_turn *t;
	pthread_t thread;
	pid_t child = -1;
	uint64_t s, t0;
	int err = 0, status;

	t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE,
		 (processes ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED)
		return -errno;
	memset(t, 0, sizeof(*t));
	t->shared = processes;
	if (processes) {
		child = fork();
		if (child < 0) {
			err = -errno;
			goto out;
		}
		if (child == 0) {
			t4_pong(t);
			_exit(0);
		}
	} else {
		err = -pthread_create(&thread, NULL, t4_pong_thread, t);
		if (err)
			goto out;
	}
	for (s = 0; s < warmup + nr_samples; s++) {
		if (s == warmup &&
		    (err = lab_handshake_ready(hs, processes ? &child : NULL,
					       processes ? 1 : 0)))
			break;
		t0 = now_ns();
		t4_pass_turn(t, 1);
		t4_wait_turn(t, 0);
		if (s >= warmup)
			out[s - warmup] = (double)(now_ns() - t0) / 2.0;
	}
	if (!err)
		err = lab_handshake_done(hs);
	atomic_store(&t->stop, 1);
	t4_pass_turn(t, 1);
	if (processes) {
		if (waitpid(child, &status, 0) < 0 && !err)
			err = -errno;
	} else {
		pthread_join(thread, NULL);
	}
out:
	munmap(t, sizeof(*t));
	return err;
}

int activations_table4(struct lab_handshake *hs, int kind, int op, int cpu,
		       uint64_t warmup, uint64_t nr_samples,
		       uint32_t ops_per_sample, int ring_fd, int vps_fd,
		       int tids_fd, double *ns_per_op)
{
	cpu_set_t saved;
	int err;

	if (kind < 0 || kind >= ACT_T4_NR_KINDS || op < 0 ||
	    op >= ACT_T4_NR_OPS || !nr_samples || !ops_per_sample || cpu < 0 ||
	    cpu >= CPU_SETSIZE)
		return -EINVAL;
	if (kind == ACT_T4_ACTIVATIONS &&
	    (ring_fd < 0 || vps_fd < 0 || tids_fd < 0))
		return -EINVAL;
	if (kind <= ACT_T4_ACTIVATIONS && !lab_fiber_supported())
		return -ENOTSUP;
	err = lab_pin_saving(cpu, &saved);
	if (err)
		return err;
	switch (kind) {
	case ACT_T4_FIBERS:
	case ACT_T4_ACTIVATIONS:
		err = t4_fibers(hs, kind == ACT_T4_ACTIVATIONS, op, cpu, warmup,
				nr_samples, ops_per_sample, ring_fd, vps_fd,
				tids_fd, ns_per_op);
		break;
	case ACT_T4_PTHREADS:
		err = op == ACT_T4_NULL_FORK ?
			      t4_pthreads_fork(hs, warmup, nr_samples,
					       ns_per_op) :
			      t4_kernel_signal_wait(hs, false, warmup,
						    nr_samples, ns_per_op);
		break;
	default:
		err = op == ACT_T4_NULL_FORK ?
			      t4_processes_fork(hs, warmup, nr_samples,
						ns_per_op) :
			      t4_kernel_signal_wait(hs, true, warmup,
						    nr_samples, ns_per_op);
		break;
	}
	lab_unpin(&saved);
	return err;
}
