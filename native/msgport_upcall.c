/*
 * Family `msgport`, reply ports that run code: DragonFly's upcall port
 * (seed 001), whose reply runs the port's function in the owner, on
 * io_uring and a raw tracepoint program.
 *
 * The reply-port program (lab/families/_msgport_upcall.py) runs on every
 * io_uring:io_uring_complete; for a reply of this run (its user_data
 * carries the run's tag) it signals `current` with
 * bpf_send_signal_thread(SIGUSR1).  These replies complete in the
 * submitting thread: inline during its io_uring_enter(), or (pipe_read's
 * poll-armed reads) as task work the pipe's wake-up queues for the
 * submitter, run on its way back to user space; a reply seen in another
 * task is counted (foreign_completions) and not signalled.  The signal is
 * delivered on that same way out, so the port function (the SIGUSR1
 * handler) runs before the thread's next instruction, and never between
 * two of them: what it touches needs no lock.  (The program runs with
 * preemption off, so the kernel sends the signal from an irq_work, a
 * self-interrupt, before that way out: one per signal.)  One signal per handler
 * run: the program sends only while `raised` is 0 and sets it; the
 * handler clears it before it reaps.
 *
 *   upcall          every batch's replies run the port function.
 *   critical        the thread sets `critical` in the mmap'ed word around
 *                   its submission; the program then sets `pending`
 *                   instead of signalling, and the thread, leaving, flushes
 *                   (reaps) if pending is set.  pipe_read's replies come
 *                   after it left (its write() is outside): upcalls.
 *   timeout_upcall  passive: the program never signals; at submission
 *                   the thread arms a one-shot POSIX timer (SIGEV_THREAD_ID
 *                   to itself, SIGUSR1) for timeout_us, works
 *                   flush_after_us, disarms it and flushes.  A timer that
 *                   fires first makes the handler the upcall.
 *
 * Build: part of lab._native (native/build.py), -luring.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>

#include <linux/bpf.h>

#include "bpf_ring.h"
#include "msgport_port_internal.h"
#include "msgport_upcall.h"

#define TAG_SHIFT    48
#define SEQ_MASK     ((1ull << TAG_SHIFT) - 1)
#define SPIN_TIMEOUT 2000000000ull /* no reply for 2 s: -ETIMEDOUT */

struct upport {
	struct port p;
	int mode;
	volatile struct msgport_upcall_shared *sh;
	size_t sh_len;
	uint64_t tag;
	volatile uint32_t got;	    /* replies of this batch reaped */
	volatile uint32_t upcalled; /* timeout_upcall: the timer's handler ran */
	timer_t timer;
	bool have_timer;
	struct msgport_upcall_counts c;
};

/* The handler's port: one run at a time (the lab runs one per worker). */
static struct upport *volatile the_port;

static uint32_t upport_reap(struct upport *u)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&u->p.ring, head, cqe)
	{
		uint64_t ud = cqe->user_data;

		/* a reply without our tag is no message of ours: bad */
		port_reply(&u->p,
			   ud >> TAG_SHIFT == u->tag ? ud & SEQ_MASK : ~0ull,
			   cqe->res);
		n++;
	}
	io_uring_cq_advance(&u->p.ring, n);
	u->got += n;
	return n;
}

/* The port function: SIGUSR1, from the program (SI_KERNEL) or our timer. */
static void port_function(int sig, siginfo_t *si, void *uc)
{
	struct upport *u = the_port;
	uint32_t n;

	(void)sig;
	(void)uc;
	if (!u)
		return;
	if (si->si_code == SI_TIMER && u->mode == MSGPORT_TIMEOUT_UPCALL) {
		u->c.timeouts_fired++;
		u->upcalled = 1;
	} else if (si->si_code != SI_KERNEL ||
		   u->mode == MSGPORT_TIMEOUT_UPCALL) {
		u->c.stray_signals++;
		return;
	}
	if (u->sh->critical)
		u->c.critical_violations++;
	/* before the reap: a reply after it signals again */
	u->sh->raised = 0;
	atomic_signal_fence(__ATOMIC_SEQ_CST);
	n = upport_reap(u);
	u->c.signals_handled++;
	u->c.handler_replies += n;
	if (!n)
		u->c.empty_signals++;
}

static int upport_map(struct upport *u, int map_fd)
{
	void *m;
	int err;

	err = lab_bpf_map_mmap(map_fd, sizeof(struct msgport_upcall_shared), 0,
			       &m, &u->sh_len);
	if (err)
		return err;
	u->sh = m;
	return 0;
}

static int upport_arm(struct upport *u, uint64_t us)
{
	struct itimerspec its = { 0 };

	its.it_value.tv_sec = (time_t)(us / 1000000);
	its.it_value.tv_nsec = (long)(us % 1000000) * 1000;
	return timer_settime(u->timer, 0, &its, NULL) ? -errno : 0;
}

static int upport_spin_until_reaped(struct upport *u)
{
	uint64_t deadline = 0;
	uint32_t spins = 0;

	while (u->got < u->p.batch) {
		cpu_relax();
		if (++spins % 4096)
			continue;
		if (!deadline)
			deadline = now_ns() + SPIN_TIMEOUT;
		else if (now_ns() > deadline)
			return -ETIMEDOUT;
	}
	return 0;
}

static int upport_batch(struct upport *u,
			const struct msgport_upcall_config *cfg, double *sample)
{
	struct port *p = &u->p;
	uint64_t t0, t1, until;
	int ret;

	memset(p->seen, 0, p->batch);
	u->got = 0;
	u->upcalled = 0;
	t0 = now_ns();
	ret = port_prep_batch(p, u->tag << TAG_SHIFT);
	if (ret)
		return ret;
	if (u->mode == MSGPORT_CRITICAL) {
		u->sh->critical = 1;
		atomic_signal_fence(__ATOMIC_SEQ_CST);
	}
	ret = io_uring_submit(&p->ring);
	if (u->mode == MSGPORT_CRITICAL) {
		/* leaving: flushsys() if a reply came inside */
		atomic_signal_fence(__ATOMIC_SEQ_CST);
		u->sh->critical = 0;
		atomic_signal_fence(__ATOMIC_SEQ_CST);
		if (u->sh->pending) {
			u->sh->pending = 0;
			u->c.flushed_replies += upport_reap(u);
		}
	}
	ret = port_submitted(p, ret);
	if (!ret)
		ret = port_source(p);
	if (ret)
		return ret;
	if (u->mode == MSGPORT_TIMEOUT_UPCALL) {
		until = now_ns() + cfg->flush_after_us * 1000;
		ret = upport_arm(u, cfg->timeout_us);
		if (ret)
			return ret;
		/* the thread's own work until it flushes */
		while (now_ns() < until)
			cpu_relax();
		/* a timer that fired before this is delivered on its return */
		ret = upport_arm(u, 0);
		p->c.reap_syscalls += 2;
		if (ret)
			return ret;
		if (!u->upcalled) {
			u->c.flushed_in_time++;
			upport_reap(u);
		}
	}
	ret = upport_spin_until_reaped(u);
	t1 = now_ns();
	if (ret)
		return ret;
	return port_batch_done(p, t0, t1, sample);
}

/* The program's counts as they stand (the window: end minus start). */
static void upport_program_counts(const struct upport *u,
				  struct msgport_upcall_counts *c)
{
	c->signals_sent = u->sh->signals_sent;
	c->completions_seen = u->sh->seen;
	c->foreign_completions = u->sh->foreign;
	c->send_errors = u->sh->send_errors;
	c->deferred_replies = u->sh->deferred;
}

static int upport_run(struct upport *u, struct lab_handshake *hs,
		      const struct msgport_upcall_config *cfg,
		      double *ns_per_message)
{
	struct msgport_upcall_counts start = { 0 }, end;
	uint64_t s;
	int err;

	for (s = 0; s < cfg->warmup + cfg->nr_samples; s++) {
		if (s == cfg->warmup) {
			err = lab_handshake_ready(hs, NULL, 0);
			if (err)
				return err;
			memset(&u->p.c, 0, sizeof(u->p.c));
			memset(&u->c, 0, sizeof(u->c));
			upport_program_counts(u, &start);
		}
		err = upport_batch(u, cfg,
				   s >= cfg->warmup ?
					   &ns_per_message[s - cfg->warmup] :
					   NULL);
		if (err)
			return err;
	}
	upport_program_counts(u, &end);
	u->c.signals_sent = end.signals_sent - start.signals_sent;
	u->c.completions_seen = end.completions_seen - start.completions_seen;
	u->c.foreign_completions =
		end.foreign_completions - start.foreign_completions;
	u->c.send_errors = end.send_errors - start.send_errors;
	u->c.deferred_replies = end.deferred_replies - start.deferred_replies;
	return lab_handshake_done(hs);
}

int msgport_upcall(struct lab_handshake *hs,
		   const struct msgport_upcall_config *cfg, const char *dir,
		   double *ns_per_message, struct msgport_port_counts *port,
		   struct msgport_upcall_counts *out)
{
	struct kernel_sigaction old_sa;
	struct sigaction sa;
	sigset_t usr1, old_mask, pending;
	struct sigevent sev;
	struct timespec zero = { 0 };
	struct upport *u;
	cpu_set_t saved;
	int err;

	if (!cfg || cfg->mode < MSGPORT_UPCALL ||
	    cfg->mode > MSGPORT_TIMEOUT_UPCALL || cfg->op < MSGPORT_OP_NOP ||
	    cfg->op > MSGPORT_OP_PIPE_READ || cfg->batch < 1 ||
	    cfg->batch > MSGPORT_MAX_BATCH ||
	    (cfg->op == MSGPORT_OP_READ && !dir) || cfg->nr_samples < 1 ||
	    (cfg->mode == MSGPORT_TIMEOUT_UPCALL && cfg->timeout_us < 1) ||
	    !ns_per_message || !port || !out)
		return -EINVAL;
	err = lab_pin_saving(cfg->cpu, &saved);
	if (err)
		return err;
	u = calloc(1, sizeof(*u));
	if (!u) {
		err = -ENOMEM;
		goto out_unpin;
	}
	u->mode = cfg->mode;
	/* a plain ring: the program, not the ring, tells the thread */
	err = port_init(&u->p, MSGPORT_POLL, cfg->op, cfg->batch, dir);
	if (err)
		goto out_port;
	err = upport_map(u, cfg->map_fd);
	if (err)
		goto out_port;
	if (cfg->mode == MSGPORT_TIMEOUT_UPCALL) {
		memset(&sev, 0, sizeof(sev));
		sev.sigev_notify = SIGEV_THREAD_ID;
		sev.sigev_signo = SIGUSR1;
		sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
		if (timer_create(CLOCK_MONOTONIC, &sev, &u->timer)) {
			err = -errno;
			goto out_map;
		}
		u->have_timer = true;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = port_function;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	the_port = u;
	err = msgport_rt_sigaction(SIGUSR1, NULL, &old_sa);
	if (err)
		goto out_timer;
	if (sigaction(SIGUSR1, &sa, NULL)) {
		err = -errno;
		goto out_timer;
	}
	err = -pthread_sigmask(SIG_UNBLOCK, &usr1, &old_mask);
	if (err)
		goto out_sigaction;

	/* publish last: from here the program signals this thread */
	memset((void *)u->sh, 0, sizeof(*u->sh));
	u->sh->tid = (uint32_t)syscall(SYS_gettid);
	u->sh->passive = cfg->mode == MSGPORT_TIMEOUT_UPCALL;
	u->tag = ((uint64_t)getpid() ^ (now_ns() >> 10)) & 0xffff;
	if (!u->tag)
		u->tag = 1;
	atomic_signal_fence(__ATOMIC_SEQ_CST);
	u->sh->tag = u->tag;

	err = upport_run(u, hs, cfg, ns_per_message);

	u->sh->tag = 0;
	if (u->have_timer) {
		timer_delete(u->timer);
		u->have_timer = false;
	}
	/* a signal still on its way is taken here, not by the old handler */
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	while (sigpending(&pending) == 0 && sigismember(&pending, SIGUSR1) &&
	       sigtimedwait(&usr1, NULL, &zero) == SIGUSR1)
		u->c.stray_signals++;
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
out_sigaction:
	msgport_rt_sigaction(SIGUSR1, &old_sa, NULL);
out_timer:
	the_port = NULL;
	if (u->have_timer)
		timer_delete(u->timer);
out_map:
	munmap((void *)u->sh, u->sh_len);
out_port:
	*port = u->p.c;
	*out = u->c;
	if (!err && u->p.c.bad_completions)
		err = -EIO;
	port_deinit(&u->p);
	free(u);
out_unpin:
	lab_unpin(&saved);
	return err;
}

int msgport_upcall_sigaction(uint64_t *handler, uint64_t *flags)
{
	struct kernel_sigaction sa;
	int err;

	if (!handler || !flags)
		return -EINVAL;
	err = msgport_rt_sigaction(SIGUSR1, NULL, &sa);
	if (err)
		return err;
	*handler = sa.handler;
	*flags = sa.flags;
	return 0;
}
