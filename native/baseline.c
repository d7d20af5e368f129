/*
 * Family `baseline`: what everything else is measured against.  The costs
 * LMbench and `perf bench sched` report, on this machine, in this run: a
 * null system call, a futex handoff and a pipe round trip (same CPU and
 * across CPUs, where waking an idle vCPU is what dominates), a user-level
 * context switch against swapcontext(3), and an io_uring NOP alone and in
 * batches.
 *
 * Build: part of lab._native (native/build.py), -luring -lpthread.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <ucontext.h>

#include "baseline.h"
#include "compat_uring.h"
#include "internal.h"

#define FIBER_STACK_SIZE (64 * 1024)

int baseline_clock_read(struct lab_handshake *hs, uint64_t warmup,
			uint64_t nr_samples, uint32_t ops_per_sample,
			double *ns_per_op)
{
	uint64_t s, i, t0, sink = 0;
	int err;

	if (ops_per_sample == 0)
		return -EINVAL;
	for (s = 0; s < warmup + nr_samples; s++) {
		if (s == warmup && (err = lab_handshake_ready(hs, NULL, 0)))
			return err;
		t0 = now_ns();
		for (i = 0; i < ops_per_sample; i++)
			sink += now_ns();
		if (s >= warmup)
			ns_per_op[s - warmup] =
				(double)(now_ns() - t0) / ops_per_sample;
	}
	lab_keep(sink);
	return lab_handshake_done(hs);
}

int baseline_null_syscall(struct lab_handshake *hs, uint64_t warmup,
			  uint64_t nr_samples, uint32_t ops_per_sample,
			  double *ns_per_op)
{
	uint64_t s, i, t0;
	int err;

	if (ops_per_sample == 0)
		return -EINVAL;
	for (s = 0; s < warmup + nr_samples; s++) {
		if (s == warmup && (err = lab_handshake_ready(hs, NULL, 0)))
			return err;
		t0 = now_ns();
		/* syscall(2), not getppid(3): no libc caching, one real
		 * kernel entry per call */
		for (i = 0; i < ops_per_sample; i++)
			lab_keep(syscall(SYS_getppid));
		if (s >= warmup)
			ns_per_op[s - warmup] =
				(double)(now_ns() - t0) / ops_per_sample;
	}
	return lab_handshake_done(hs);
}

/* ---- sched_yield ping-pong --------------------------------------------- */

/*
 * Two threads on one CPU that only call sched_yield(): each yield of one
 * hands the CPU to the other, which yields it back, so a sample's
 * operations are context switches without a wake-up (no futex, no IPI):
 * the densest stream of sched_switch events a workload can make, which is
 * what measuring a switch probe's cost per event needs.  If the other
 * thread is not runnable a yield returns at once; the probes' count of
 * switches per operation says how often that happened.
 */
struct yield_peer {
	_Atomic int stop;
	int cpu;
	int err;
};

static void *yield_thread(void *arg)
{
	struct yield_peer *peer = arg;

	peer->err = lab_pin_self(peer->cpu);
	while (!atomic_load_explicit(&peer->stop, memory_order_relaxed))
		sched_yield();
	return NULL;
}

int baseline_yield_pingpong(struct lab_handshake *hs, int cpu, uint64_t warmup,
			    uint64_t nr_samples, uint32_t ops_per_sample,
			    double *ns_per_op)
{
	struct yield_peer peer = { .cpu = cpu };
	uint64_t s, i, t0;
	cpu_set_t saved;
	pthread_t other;
	int err;

	if (ops_per_sample == 0)
		return -EINVAL;
	err = lab_pin_saving(cpu, &saved);
	if (err)
		return err;
	err = -pthread_create(&other, NULL, yield_thread, &peer);
	if (err) {
		lab_unpin(&saved);
		return err;
	}
	for (s = 0; s < warmup + nr_samples; s++) {
		if (s == warmup && (err = lab_handshake_ready(hs, NULL, 0)))
			break;
		t0 = now_ns();
		for (i = 0; i < ops_per_sample; i++)
			sched_yield();
		if (s >= warmup)
			ns_per_op[s - warmup] =
				(double)(now_ns() - t0) / ops_per_sample;
	}
	if (!err)
		err = lab_handshake_done(hs);
	atomic_store_explicit(&peer.stop, 1, memory_order_relaxed);
	pthread_join(other, NULL);
	if (!err)
		err = peer.err;
	lab_unpin(&saved);
	return err;
}

/* ---- futex ping-pong --------------------------------------------------- */

/*
 * Two threads hand a turn back and forth through one futex word.  Each
 * side stamps the time just before it wakes the other and the other reads
 * it just after its futex_wait returns: that difference is one handoff,
 * the same interval the probe's wake-to-run latency sees from the kernel.
 */
struct futex_pingpong {
	_Alignas(LAB_CACHELINE) _Atomic uint32_t turn; /* 0 ping, 1 pong */
	_Alignas(LAB_CACHELINE) uint64_t sent_ns;      /* waker's stamp */
	uint64_t rounds;
	uint64_t warmup;
	int peer_cpu;
	int err;
	double *handoff_ns;
};

static void pingpong_wait_turn(struct futex_pingpong *pp, uint32_t mine)
{
	uint32_t seen;

	while ((seen = atomic_load_explicit(&pp->turn, memory_order_acquire)) !=
	       mine)
		futex_wait((uint32_t *)&pp->turn, seen);
}

static void pingpong_pass_turn(struct futex_pingpong *pp, uint32_t to)
{
	pp->sent_ns = now_ns();
	atomic_store_explicit(&pp->turn, to, memory_order_release);
	futex_wake((uint32_t *)&pp->turn, 1);
}

static void *pong_thread(void *arg)
{
	struct futex_pingpong *pp = arg;
	uint64_t r;

	pp->err = lab_pin_self(pp->peer_cpu);
	for (r = 0; r < pp->rounds; r++) {
		pingpong_wait_turn(pp, 1);
		if (r >= pp->warmup)
			pp->handoff_ns[2 * (r - pp->warmup)] =
				(double)(now_ns() - pp->sent_ns);
		pingpong_pass_turn(pp, 0);
	}
	return NULL;
}

int baseline_futex_pingpong(struct lab_handshake *hs, int cpu, int peer_cpu,
			    uint64_t warmup, uint64_t nr_samples,
			    double *round_trip_ns, double *handoff_ns)
{
	struct futex_pingpong *pp;
	cpu_set_t saved;
	pthread_t pong;
	uint64_t r, t0;
	int err;

	err = lab_pin_saving(cpu, &saved);
	if (err)
		return err;
	pp = aligned_alloc(LAB_CACHELINE, sizeof(*pp));
	if (!pp) {
		lab_unpin(&saved);
		return -ENOMEM;
	}
	memset(pp, 0, sizeof(*pp));
	pp->rounds = warmup + nr_samples;
	pp->warmup = warmup;
	pp->peer_cpu = peer_cpu;
	pp->handoff_ns = handoff_ns;
	err = -pthread_create(&pong, NULL, pong_thread, pp);
	if (err) {
		free(pp);
		lab_unpin(&saved);
		return err;
	}

	for (r = 0; r < pp->rounds; r++) {
		if (r == warmup && (err = lab_handshake_ready(hs, NULL, 0)))
			break;
		t0 = now_ns();
		pingpong_pass_turn(pp, 1);
		pingpong_wait_turn(pp, 0);
		if (r >= warmup) {
			uint64_t back = now_ns();

			round_trip_ns[r - warmup] = (double)(back - t0);
			handoff_ns[2 * (r - warmup) + 1] =
				(double)(back - pp->sent_ns);
		}
	}
	if (err) {
		/* runner gone before the window opened: let pong finish */
		for (; r < pp->rounds; r++) {
			pingpong_pass_turn(pp, 1);
			pingpong_wait_turn(pp, 0);
		}
	} else {
		err = lab_handshake_done(hs);
	}
	pthread_join(pong, NULL);
	if (!err)
		err = pp->err;
	free(pp);
	lab_unpin(&saved);
	return err;
}

/* ---- pipe ping-pong (perf bench sched pipe) ----------------------------- */

static int read_byte(int fd, char *c)
{
	ssize_t n;

	do
		n = read(fd, c, 1);
	while (n < 0 && errno == EINTR);
	return n == 1 ? 0 : (n == 0 ? -EPIPE : -errno);
}

static int write_byte(int fd, char c)
{
	ssize_t n;

	do
		n = write(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	return n == 1 ? 0 : -errno;
}

int baseline_pipe_pingpong(struct lab_handshake *hs, int cpu, int peer_cpu,
			   uint64_t warmup, uint64_t nr_samples,
			   double *round_trip_ns)
{
	int to_child[2], to_parent[2], err, status;
	uint64_t r, rounds = warmup + nr_samples, t0;
	cpu_set_t saved;
	pid_t child;
	char c = 'x';

	err = lab_pin_saving(cpu, &saved);
	if (err)
		return err;
	if (pipe(to_child) < 0) {
		err = -errno;
		goto err_unpin;
	}
	if (pipe(to_parent) < 0) {
		err = -errno;
		goto err_to_child;
	}
	child = fork();
	if (child < 0) {
		err = -errno;
		goto err_to_parent;
	}
	if (child == 0) {
		/* The child never returns into Python: echo, then _exit. */
		close(to_child[1]);
		close(to_parent[0]);
		if (lab_pin_self(peer_cpu))
			_exit(2);
		while (read_byte(to_child[0], &c) == 0)
			if (write_byte(to_parent[1], c))
				_exit(3);
		_exit(0);
	}
	close(to_child[0]);
	close(to_parent[1]);

	for (r = 0; r < rounds; r++) {
		if (r == warmup && (err = lab_handshake_ready(hs, &child, 1)))
			break;
		t0 = now_ns();
		err = write_byte(to_child[1], c);
		if (!err)
			err = read_byte(to_parent[0], &c);
		if (err)
			break;
		if (r >= warmup)
			round_trip_ns[r - warmup] = (double)(now_ns() - t0);
	}
	if (!err)
		err = lab_handshake_done(hs);
	close(to_child[1]); /* EOF ends the child's loop */
	close(to_parent[0]);
	if (waitpid(child, &status, 0) < 0 && !err)
		err = -errno;
	else if (!err && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		err = -ECHILD;
	lab_unpin(&saved);
	return err;

err_to_parent:
	close(to_parent[0]);
	close(to_parent[1]);
err_to_child:
	close(to_child[0]);
	close(to_child[1]);
err_unpin:
	lab_unpin(&saved);
	return err;
}

/* ---- user-level context switch: our fibers vs swapcontext(3) ------------ */

struct fiber_pair {
	struct lab_fiber main, other;
};

static void fiber_bounce(void *arg)
{
	struct fiber_pair *pair = arg;

	for (;;)
		lab_fiber_switch(&pair->other, &pair->main);
}

int baseline_fiber_switch(struct lab_handshake *hs, uint64_t warmup,
			  uint64_t nr_samples, uint32_t ops_per_sample,
			  double *ns_per_switch)
{
	struct fiber_pair pair;
	uint64_t s, i, t0;
	int err;

	if (ops_per_sample == 0)
		return -EINVAL;
	memset(&pair, 0, sizeof(pair));
	err = lab_fiber_init(&pair.other, FIBER_STACK_SIZE, fiber_bounce,
			     &pair);
	if (err)
		return err;
	for (s = 0; s < warmup + nr_samples; s++) {
		if (s == warmup && (err = lab_handshake_ready(hs, NULL, 0)))
			break;
		t0 = now_ns();
		/* there and back: two switches per iteration */
		for (i = 0; i < ops_per_sample; i++)
			lab_fiber_switch(&pair.main, &pair.other);
		if (s >= warmup)
			ns_per_switch[s - warmup] = (double)(now_ns() - t0) /
						    (2.0 * ops_per_sample);
	}
	if (!err)
		err = lab_handshake_done(hs);
	/* the bouncing fiber is parked inside lab_fiber_switch: just unmap */
	lab_fiber_deinit(&pair.other);
	return err;
}

struct ucontext_pair {
	ucontext_t main, other;
};

static struct ucontext_pair *ucontext_bounce_pair;

static void ucontext_bounce(void)
{
	for (;;)
		swapcontext(&ucontext_bounce_pair->other,
			    &ucontext_bounce_pair->main);
}

int baseline_swapcontext(struct lab_handshake *hs, uint64_t warmup,
			 uint64_t nr_samples, uint32_t ops_per_sample,
			 double *ns_per_switch)
{
	struct ucontext_pair pair;
	uint64_t s, i, t0;
	void *stack;
	int err = 0;

	if (ops_per_sample == 0)
		return -EINVAL;
	stack = malloc(FIBER_STACK_SIZE);
	if (!stack)
		return -ENOMEM;
	if (getcontext(&pair.other) < 0) {
		err = -errno;
		goto out;
	}
	pair.other.uc_stack.ss_sp = stack;
	pair.other.uc_stack.ss_size = FIBER_STACK_SIZE;
	pair.other.uc_link = NULL;
	/* makecontext passes only int arguments portably: use a static */
	ucontext_bounce_pair = &pair;
	makecontext(&pair.other, ucontext_bounce, 0);

	for (s = 0; s < warmup + nr_samples; s++) {
		if (s == warmup && (err = lab_handshake_ready(hs, NULL, 0)))
			goto out;
		t0 = now_ns();
		for (i = 0; i < ops_per_sample; i++)
			swapcontext(&pair.main, &pair.other);
		if (s >= warmup)
			ns_per_switch[s - warmup] = (double)(now_ns() - t0) /
						    (2.0 * ops_per_sample);
	}
	err = lab_handshake_done(hs);
out:
	free(stack);
	return err;
}

/* ---- io_uring NOP ------------------------------------------------------ */

/* Submit `batch` NOPs with one io_uring_enter() and reap their CQEs. */
static int uring_nop_batch(struct io_uring *ring, uint32_t batch,
			   uint32_t sqe_flags)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	uint32_t i;
	int ret;

	for (i = 0; i < batch; i++) {
		sqe = io_uring_get_sqe(ring);
		io_uring_prep_nop(sqe);
		sqe->flags |= sqe_flags;
	}
	/* NOPs complete inline during submission, so the wait never sleeps;
	 * with IOSQE_ASYNC it sleeps until an io-wq worker completes them */
	ret = io_uring_submit_and_wait(ring, batch);
	if (ret < 0)
		return ret;
	io_uring_for_each_cqe(ring, head, cqe)
	{
		if (cqe->res < 0)
			ret = cqe->res;
		seen++;
	}
	io_uring_cq_advance(ring, seen);
	if (seen != batch)
		return -EIO;
	return ret < 0 ? ret : 0;
}

int baseline_uring_nop(struct lab_handshake *hs, uint32_t batch,
		       uint32_t sqe_flags, uint64_t warmup, uint64_t nr_samples,
		       uint32_t ops_per_sample, double *ns_per_op)
{
	struct io_uring ring;
	uint64_t s, i, t0;
	unsigned entries = 8;
	uint32_t enters;
	int err;

	if (batch == 0 || ops_per_sample == 0 || batch > 4096)
		return -EINVAL;
	/* a sample averages about ops_per_sample NOPs, whatever the batch */
	enters = ops_per_sample / batch ? ops_per_sample / batch : 1;
	while (entries < batch)
		entries <<= 1;
	err = io_uring_queue_init(entries, &ring, 0);
	if (err < 0)
		return err;
	for (s = 0; s < warmup + nr_samples; s++) {
		if (s == warmup && (err = lab_handshake_ready(hs, NULL, 0)))
			goto out;
		t0 = now_ns();
		for (i = 0; i < enters; i++) {
			err = uring_nop_batch(&ring, batch, sqe_flags);
			if (err)
				goto out;
		}
		if (s >= warmup)
			ns_per_op[s - warmup] = (double)(now_ns() - t0) /
						((double)enters * batch);
	}
	err = lab_handshake_done(hs);
out:
	io_uring_queue_exit(&ring);
	return err;
}
