/*
 * Family `upcall`, its timers (seed 000: "more precise timing for user
 * space"): how late user code runs on a periodic timer's expiry, through
 * clock_nanosleep, a timerfd, a POSIX timer's signal handler (the thread
 * asleep or busy) and io_uring timeouts (re-armed, or one multishot SQE).
 *
 * The seed wants user code run "by the timer interrupt", not whenever the
 * woken process next gets to run.  The closest Linux has is a POSIX
 * timer's signal handler: with the thread busy in user space, the handler
 * runs on the way back from the timer interrupt, no wake-up, no switch;
 * with the thread asleep, it runs after the wake-up like everything else.
 * Every variant here measures the same thing: when user code runs on an
 * expiry minus the expiry it asked for, on a grid t0 + k * interval that
 * each phase (warm-up, measured) starts afresh.
 *
 * Build: part of lab._native (native/build.py), -luring.
 */

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>

#include "upcall_timer.h"
#include "compat_uring.h"
#include "internal.h"
#include "upcall_internal.h"

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

struct up_timer {
	int kind;
	uint64_t interval;
	struct upcall_timer_counts *counts;
	int tfd;
	int signo;
	timer_t timer;
	bool have_timer;
	sigset_t old_mask, wait_mask;
	struct sigaction old_action;
	bool have_action, have_mask;
	struct io_uring ring;
	bool have_ring;
};

/* A signal handler's world: one timer test at a time per process. */
static struct {
	uint64_t t0;
	uint64_t interval;
	uint64_t n;
	double *out;
	_Atomic uint64_t k;	/* expiries so far, overruns included */
	_Atomic uint64_t taken; /* samples recorded */
	_Atomic uint64_t overruns;
	_Atomic uint64_t clamped;
} up_sig;

static void up_sig_handler(int sig, siginfo_t *si, void *uc)
{
	uint64_t t = now_ns(), k, s, deadline;
	int ov = si->si_overrun > 0 ? si->si_overrun : 0;

	/* the upcall itself: stamp first, everything else after */
	k = atomic_load_explicit(&up_sig.k, memory_order_relaxed) + 1 +
	    (uint64_t)ov;
	atomic_store_explicit(&up_sig.k, k, memory_order_relaxed);
	atomic_fetch_add_explicit(&up_sig.overruns, (uint64_t)ov,
				  memory_order_relaxed);
	s = atomic_load_explicit(&up_sig.taken, memory_order_relaxed);
	if (s >= up_sig.n)
		return;
	deadline = up_sig.t0 + k * up_sig.interval;
	if (up_sig.out) {
		if (t < deadline) {
			atomic_fetch_add_explicit(&up_sig.clamped, 1,
						  memory_order_relaxed);
			up_sig.out[s] = 0.0;
		} else {
			up_sig.out[s] = (double)(t - deadline);
		}
	}
	atomic_store_explicit(&up_sig.taken, s + 1, memory_order_release);
}

static int up_timer_setup(struct up_timer *t)
{
	struct sigevent sev;
	struct sigaction sa;
	sigset_t set;
	int err;

	switch (t->kind) {
	case UPCALL_TIMER_TIMERFD:
		t->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
		return t->tfd < 0 ? -errno : 0;
	case UPCALL_TIMER_SIGNAL:
	case UPCALL_TIMER_SIGNAL_BUSY:
		t->signo = SIGRTMIN;
		sigemptyset(&set);
		sigaddset(&set, t->signo);
		/* blocked except while a phase waits for it */
		err = -pthread_sigmask(SIG_BLOCK, &set, &t->old_mask);
		if (err)
			return err;
		t->have_mask = true;
		t->wait_mask = t->old_mask;
		sigdelset(&t->wait_mask, t->signo);
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = up_sig_handler;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		if (sigaction(t->signo, &sa, &t->old_action) < 0)
			return -errno;
		t->have_action = true;
		memset(&sev, 0, sizeof(sev));
		sev.sigev_notify = SIGEV_THREAD_ID;
		sev.sigev_signo = t->signo;
		sev.sigev_notify_thread_id = gettid();
		if (timer_create(CLOCK_MONOTONIC, &sev, &t->timer) < 0)
			return -errno;
		t->have_timer = true;
		return 0;
	case UPCALL_TIMER_URING:
	case UPCALL_TIMER_URING_MULTISHOT:
		err = io_uring_queue_init(8, &t->ring, 0);
		if (err < 0)
			return err;
		t->have_ring = true;
		return 0;
	}
	return 0;
}

/* Throw away a timer signal still queued after the timer stopped. */
static void up_signal_drain(struct up_timer *t)
{
	struct timespec zero = { 0, 0 };
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, t->signo);
	while (sigtimedwait(&set, NULL, &zero) > 0)
		;
}

static void up_timer_teardown(struct up_timer *t)
{
	if (t->tfd >= 0)
		close(t->tfd);
	if (t->have_timer) {
		timer_delete(t->timer);
		up_signal_drain(t);
	}
	/* the default action of a real-time signal is to end the process:
	 * restore the handler only once nothing can be pending */
	if (t->have_action)
		sigaction(t->signo, &t->old_action, NULL);
	if (t->have_mask)
		pthread_sigmask(SIG_SETMASK, &t->old_mask, NULL);
	if (t->have_ring)
		io_uring_queue_exit(&t->ring);
}

static int up_phase_nanosleep(struct up_timer *t, uint64_t n, double *out)
{
	uint64_t t0 = now_ns(), k, deadline, now, clamped = 0;
	int err;

	for (k = 0; k < n; k++) {
		deadline = t0 + (k + 1) * t->interval;
		err = up_sleep_until(deadline);
		if (err)
			return err;
		now = now_ns();
		if (out)
			out[k] = up_delta(now, deadline, &clamped);
	}
	if (out) {
		t->counts->expiries += n;
		t->counts->clamped += clamped;
	}
	return 0;
}

static int up_phase_timerfd(struct up_timer *t, uint64_t n, double *out)
{
	struct itimerspec its;
	uint64_t t0, k = 0, s, exp, now, clamped = 0;
	ssize_t r;
	int err = 0;

	memset(&its, 0, sizeof(its));
	t0 = now_ns();
	its.it_value = up_ts(t0 + t->interval);
	its.it_interval = up_ts(t->interval);
	if (timerfd_settime(t->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		return -errno;
	for (s = 0; s < n; s++) {
		do
			r = read(t->tfd, &exp, sizeof(exp));
		while (r < 0 && errno == EINTR);
		now = now_ns();
		if (r != sizeof(exp)) {
			err = r < 0 ? -errno : -EIO;
			break;
		}
		/* the timer kept its grid: exp > 1 means expiries passed
		 * unseen; this read serves the newest */
		k += exp;
		if (out) {
			t->counts->overruns += exp - 1;
			out[s] = up_delta(now, t0 + k * t->interval, &clamped);
		}
	}
	memset(&its, 0, sizeof(its));
	timerfd_settime(t->tfd, 0, &its, NULL);
	if (out) {
		t->counts->expiries += k;
		t->counts->clamped += clamped;
	}
	return err;
}

static int up_phase_signal(struct up_timer *t, uint64_t n, double *out)
{
	uint64_t deadline =
		now_ns() + 1000000000ull + (n + 1) * t->interval * 20;
	struct itimerspec its;
	bool busy = t->kind == UPCALL_TIMER_SIGNAL_BUSY;
	sigset_t set;
	int err = 0;

	up_sig.interval = t->interval;
	up_sig.n = n;
	up_sig.out = out;
	atomic_store(&up_sig.k, 0);
	atomic_store(&up_sig.taken, 0);
	atomic_store(&up_sig.overruns, 0);
	atomic_store(&up_sig.clamped, 0);
	up_sig.t0 = now_ns();
	memset(&its, 0, sizeof(its));
	its.it_value = up_ts(up_sig.t0 + t->interval);
	its.it_interval = up_ts(t->interval);
	if (timer_settime(t->timer, TIMER_ABSTIME, &its, NULL) < 0)
		return -errno;
	sigemptyset(&set);
	sigaddset(&set, t->signo);
	if (busy) {
		/* the thread computes; the handler interrupts it */
		pthread_sigmask(SIG_UNBLOCK, &set, NULL);
		while (atomic_load_explicit(&up_sig.taken,
					    memory_order_acquire) < n) {
			up_pause();
			if (now_ns() > deadline) {
				err = -ETIMEDOUT;
				break;
			}
		}
		pthread_sigmask(SIG_BLOCK, &set, NULL);
	} else {
		/* asleep with the signal blocked but for the sleep itself */
		while (atomic_load_explicit(&up_sig.taken,
					    memory_order_acquire) < n)
			sigsuspend(&t->wait_mask);
	}
	memset(&its, 0, sizeof(its));
	timer_settime(t->timer, 0, &its, NULL);
	up_signal_drain(t);
	if (out) {
		t->counts->expiries += atomic_load(&up_sig.k);
		t->counts->overruns += atomic_load(&up_sig.overruns);
		t->counts->clamped += atomic_load(&up_sig.clamped);
	}
	up_sig.out = NULL;
	return err;
}

static int up_uring_wait_one(struct io_uring *ring, struct io_uring_cqe **cqe)
{
	int ret;

	do
		ret = io_uring_wait_cqe(ring, cqe);
	while (ret == -EINTR);
	return ret;
}

static int up_phase_uring(struct up_timer *t, uint64_t n, double *out)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	uint64_t t0 = now_ns(), k, deadline, now, clamped = 0;
	int ret, res;

	for (k = 0; k < n; k++) {
		deadline = t0 + (k + 1) * t->interval;
		ts.tv_sec = (int64_t)(deadline / 1000000000ull);
		ts.tv_nsec = (long long)(deadline % 1000000000ull);
		sqe = io_uring_get_sqe(&t->ring);
		if (!sqe)
			return -EBUSY;
		/* absolute, re-armed every period: the grid is kept */
		io_uring_prep_timeout(sqe, &ts, 0, IORING_TIMEOUT_ABS);
		sqe->user_data = k;
		do
			ret = io_uring_submit_and_wait(&t->ring, 1);
		while (ret == -EINTR);
		now = now_ns();
		if (ret < 0)
			return ret;
		ret = up_uring_wait_one(&t->ring, &cqe);
		if (ret < 0)
			return ret;
		res = cqe->res;
		io_uring_cqe_seen(&t->ring, cqe);
		if (res != -ETIME)
			return res < 0 ? res : -EIO;
		if (out) {
			out[k] = up_delta(now, deadline, &clamped);
			t->counts->sqes++;
			t->counts->cqes++;
		}
	}
	if (out) {
		t->counts->expiries += n;
		t->counts->clamped += clamped;
	}
	return 0;
}

/*
 * One SQE, n CQEs (IORING_TIMEOUT_MULTISHOT, Linux 6.4).  The kernel
 * re-arms the timer relative to when the owner's task work posts a CQE
 * (io_timeout_complete(): hrtimer_start(ts, HRTIMER_MODE_REL)), so there is
 * no fixed grid: each period's lateness is its gap since the previous CQE
 * was seen minus the interval (the re-arm happens just before that CQE
 * becomes visible), and the schedule drifts by their sum (drift_ns).
 */
static int up_phase_multishot(struct up_timer *t, uint64_t n, double *out)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	uint64_t k, t_sub, prev, now = 0, clamped = 0, more = 0;
	unsigned flags;
	int ret, res;

	ts.tv_sec = (int64_t)(t->interval / 1000000000ull);
	ts.tv_nsec = (long long)(t->interval % 1000000000ull);
	sqe = io_uring_get_sqe(&t->ring);
	if (!sqe || n > UINT32_MAX)
		return -EINVAL;
	lab_prep_timeout_multishot(sqe, &ts, (unsigned)n);
	sqe->user_data = 0x6d756c7469ull; /* "multi" */
	t_sub = now_ns();
	do
		ret = io_uring_submit(&t->ring);
	while (ret == -EINTR);
	if (ret < 0)
		return ret;
	prev = t_sub;
	for (k = 0; k < n; k++) {
		ret = up_uring_wait_one(&t->ring, &cqe);
		now = now_ns();
		if (ret < 0)
			return ret;
		res = cqe->res;
		flags = cqe->flags;
		io_uring_cqe_seen(&t->ring, cqe);
		if (res == -EINVAL)
			return -EOPNOTSUPP; /* before 6.4 */
		if (res != -ETIME)
			return res < 0 ? res : -EIO;
		if (flags & IORING_CQE_F_MORE)
			more++;
		if (out)
			out[k] = up_delta(now, prev + t->interval, &clamped);
		prev = now;
		/* the last CQE of the count comes without F_MORE */
		if (!(flags & IORING_CQE_F_MORE) && k + 1 < n)
			return -EIO;
	}
	if (out) {
		t->counts->sqes += 1;
		t->counts->cqes += n;
		t->counts->cqes_more += more;
		t->counts->expiries += n;
		t->counts->clamped += clamped;
		t->counts->drift_ns =
			(int64_t)(now - (t_sub + n * t->interval));
	}
	/* a timeout that would go on (F_MORE on the last one) is a kernel
	 * that ignored the count */
	return more == n ? -EIO : 0;
}

static int up_timer_phase(struct up_timer *t, uint64_t n, double *out)
{
	switch (t->kind) {
	case UPCALL_TIMER_NANOSLEEP:
		return up_phase_nanosleep(t, n, out);
	case UPCALL_TIMER_TIMERFD:
		return up_phase_timerfd(t, n, out);
	case UPCALL_TIMER_SIGNAL:
	case UPCALL_TIMER_SIGNAL_BUSY:
		return up_phase_signal(t, n, out);
	case UPCALL_TIMER_URING:
		return up_phase_uring(t, n, out);
	case UPCALL_TIMER_URING_MULTISHOT:
		return up_phase_multishot(t, n, out);
	}
	return -EINVAL;
}

int upcall_timer(struct lab_handshake *hs, int kind, int cpu, int rt_priority,
		 uint64_t interval_ns, uint64_t warmup, uint64_t nr_samples,
		 double *lateness_ns, struct upcall_timer_counts *out)
{
	struct up_timer t;
	struct sched_param old_sp, sp;
	bool changed_policy = false;
	int old_policy, err, e2;
	cpu_set_t saved;

	memset(out, 0, sizeof(*out));
	if (kind < 0 || kind >= UPCALL_NR_TIMER_KINDS || interval_ns < 1000 ||
	    !nr_samples || rt_priority < 0 || rt_priority > 99)
		return -EINVAL;
	err = lab_pin_saving(cpu, &saved);
	if (err)
		return err;
	memset(&t, 0, sizeof(t));
	t.kind = kind;
	t.interval = interval_ns;
	t.counts = out;
	t.tfd = -1;
	err = -pthread_getschedparam(pthread_self(), &old_policy, &old_sp);
	if (!err && rt_priority > 0) {
		memset(&sp, 0, sizeof(sp));
		sp.sched_priority = rt_priority;
		err = -pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
		changed_policy = !err;
	}
	if (err)
		goto out;
	out->policy = rt_priority > 0 ? SCHED_FIFO : SCHED_OTHER;
	out->priority = rt_priority;
	/* SCHED_OTHER sleeps may end up to timer_slack late (coalescing);
	 * real-time threads get none (6.8+ sets it to 0 on the switch) */
	out->timer_slack_ns = (uint64_t)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);

	err = up_timer_setup(&t);
	if (!err && warmup)
		err = up_timer_phase(&t, warmup, NULL);
	if (!err)
		err = lab_handshake_ready(hs, NULL, 0);
	if (!err)
		err = up_timer_phase(&t, nr_samples, lateness_ns);
	if (!err)
		err = lab_handshake_done(hs);
out:
	up_timer_teardown(&t);
	if (changed_policy) {
		e2 = -pthread_setschedparam(pthread_self(), old_policy,
					    &old_sp);
		if (!err)
			err = e2;
	}
	lab_unpin(&saved);
	return err;
}
