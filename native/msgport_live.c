/*
 * Family `msgport`, live messages: DragonFly's signals and timers are
 * messages that stay live and return again and again (seed 001).  Here
 * they are multishot requests (IORING_TIMEOUT_MULTISHOT, 6.4;
 * IORING_POLL_ADD_MULTI, 5.13): one SQE, a CQE with IORING_CQE_F_MORE per
 * event, against a one-shot request re-armed after every completion.
 *
 * Build: part of lab._native (native/build.py), -luring -lpthread.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "compat_uring.h"
#include "msgport_internal.h"

#define LIVE_TAG   0x6c697665ull /* "live" */
#define REMOVE_TAG 0x72656dull	 /* "rem" */

/* The event source of the poll variants: a thread that signals an eventfd
 * once per interval, and only once the receiver has consumed the previous
 * signal (two signals before one wake-up would merge into one CQE). */
struct live_source {
	_Alignas(LAB_CACHELINE) _Atomic uint64_t acked;
	_Alignas(LAB_CACHELINE) _Atomic uint64_t sent_ns;
	_Atomic uint64_t signals;
	_Atomic int stop;
	uint64_t interval;
	int efd;
	int err;
};

static void *live_source_fn(void *arg)
{
	struct live_source *src = arg;
	struct timespec ts;
	uint64_t k = 0, next, one = 1;

	next = now_ns() + src->interval;
	while (!atomic_load_explicit(&src->stop, memory_order_acquire)) {
		ts.tv_sec = (time_t)(next / 1000000000ull);
		ts.tv_nsec = (long)(next % 1000000000ull);
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		next += src->interval;
		if (next < now_ns())
			next = now_ns() + src->interval;
		if (atomic_load_explicit(&src->acked, memory_order_acquire) !=
		    k)
			continue; /* the receiver is behind: next tick */
		atomic_store_explicit(&src->sent_ns, now_ns(),
				      memory_order_release);
		atomic_store_explicit(&src->signals, k + 1,
				      memory_order_release);
		if (write(src->efd, &one, sizeof(one)) != sizeof(one)) {
			src->err = -errno;
			return NULL;
		}
		k++;
	}
	return NULL;
}

struct live {
	int kind;
	uint32_t count;
	uint64_t interval;
	struct io_uring ring;
	bool have_ring;
	int efd;
	struct live_source *src;
	pthread_t source;
	bool have_source;
	uint64_t consumed; /* completions consumed, warm-up included */
	struct msgport_live_counts c;
};

static double live_late(struct live *l, uint64_t seen, uint64_t prev)
{
	uint64_t due = prev + l->interval;

	/* a multishot timeout re-arms just before its CQE is posted, so the
	 * next one can come a little under an interval after we saw this
	 * one: lateness 0, counted */
	if (seen < due) {
		l->c.clamped++;
		return 0.0;
	}
	return (double)(seen - due);
}

static int live_wait(struct live *l, struct io_uring_cqe **cqe)
{
	int ret;

	do
		ret = io_uring_wait_cqe(&l->ring, cqe);
	while (ret == -EINTR);
	return ret;
}

/* Submit the prepared SQE and wait for the first CQE in the same enter
 * (every live variant arms this way: what differs is how often). */
static int live_arm(struct live *l)
{
	int ret;

	do
		ret = io_uring_submit_and_wait(&l->ring, 1);
	while (ret == -EINTR);
	if (ret >= 0)
		l->c.submissions++;
	return ret;
}

/* Multishot timeout: one SQE with a count, k CQEs, all but the last with
 * IORING_CQE_F_MORE.  The kernel re-arms relative to when its task work
 * posts each CQE (io_timeout_complete()), so there is no grid to measure
 * against: lateness is each gap between CQEs seen minus the interval. */
static int live_timeouts_multishot(struct live *l, uint64_t n, double *out,
				   uint64_t *last)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	uint64_t done = 0, prev, now, k, j;
	uint64_t tag;
	unsigned flags;
	int ret, res;

	ts.tv_sec = (int64_t)(l->interval / 1000000000ull);
	ts.tv_nsec = (long long)(l->interval % 1000000000ull);
	while (done < n) {
		k = n - done < l->count ? n - done : l->count;
		sqe = io_uring_get_sqe(&l->ring);
		lab_prep_timeout_multishot(sqe, &ts, (unsigned)k);
		sqe->user_data = LIVE_TAG;
		prev = now_ns();
		/* arm and wait for the first in one enter, as the one-shot
		 * variant re-arms and waits: the difference is the re-arm */
		ret = live_arm(l);
		if (ret < 0)
			return ret;
		for (j = 0; j < k; j++) {
			ret = live_wait(l, &cqe);
			now = now_ns();
			if (ret < 0)
				return ret;
			res = cqe->res;
			flags = cqe->flags;
			tag = cqe->user_data;
			io_uring_cqe_seen(&l->ring, cqe);
			if (res == -EINVAL)
				return -EOPNOTSUPP; /* before 6.4 */
			if (res != -ETIME || tag != LIVE_TAG)
				return res < 0 ? res : -EIO;
			l->c.completions++;
			if (flags & IORING_CQE_F_MORE)
				l->c.completions_more++;
			/* F_MORE on all but the count's last one */
			if (!!(flags & IORING_CQE_F_MORE) != (j + 1 < k))
				return -EIO;
			if (out)
				out[done + j] = live_late(l, now, prev);
			prev = now;
		}
		if (k > l->c.max_per_submission)
			l->c.max_per_submission = k;
		done += k;
		*last = prev;
	}
	return 0;
}

/* The one-shot timeout re-armed as soon as its CQE is seen: one SQE per
 * completion, the re-arm and the wait in one io_uring_enter(). */
static int live_timeouts_oneshot(struct live *l, uint64_t n, double *out,
				 uint64_t *last)
{
	struct __kernel_timespec ts;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	uint64_t i, prev = now_ns(), now;
	int ret, res;

	ts.tv_sec = (int64_t)(l->interval / 1000000000ull);
	ts.tv_nsec = (long long)(l->interval % 1000000000ull);
	for (i = 0; i < n; i++) {
		sqe = io_uring_get_sqe(&l->ring);
		io_uring_prep_timeout(sqe, &ts, 0, 0);
		sqe->user_data = LIVE_TAG;
		ret = live_arm(l);
		if (ret < 0)
			return ret;
		ret = live_wait(l, &cqe);
		now = now_ns();
		if (ret < 0)
			return ret;
		res = cqe->res;
		io_uring_cqe_seen(&l->ring, cqe);
		if (res != -ETIME)
			return res < 0 ? res : -EIO;
		l->c.completions++;
		if (out)
			out[i] = live_late(l, now, prev);
		prev = now;
	}
	if (n && l->c.max_per_submission < 1)
		l->c.max_per_submission = 1;
	*last = prev;
	return 0;
}

/* A poll completion: consume the event (read the eventfd, as a program
 * would read what became readable) and let the source go on. */
static int live_poll_consume(struct live *l, uint64_t seen, double *sample,
			     bool ack)
{
	uint64_t v, sent = atomic_load_explicit(&l->src->sent_ns,
						memory_order_acquire);

	if (read(l->efd, &v, sizeof(v)) != sizeof(v))
		return -errno;
	l->c.consume_syscalls++;
	l->consumed++;
	if (sample)
		*sample = seen > sent ? (double)(seen - sent) : 0.0;
	if (ack)
		atomic_store_explicit(&l->src->acked, l->consumed,
				      memory_order_release);
	return 0;
}

/* Wait for the removal of a multishot poll: its last CQE (no F_MORE) and
 * the remove request's own. */
static int live_poll_cancel(struct live *l)
{
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	bool poll_done = false, remove_done = false;
	int ret;

	sqe = io_uring_get_sqe(&l->ring);
	io_uring_prep_poll_remove(sqe, LIVE_TAG);
	sqe->user_data = REMOVE_TAG;
	ret = io_uring_submit(&l->ring);
	if (ret != 1)
		return ret < 0 ? ret : -EIO;
	l->c.cancels++;
	while (!poll_done || !remove_done) {
		ret = live_wait(l, &cqe);
		if (ret < 0)
			return ret;
		if (cqe->user_data == REMOVE_TAG) {
			remove_done = true;
			if (cqe->res < 0 && cqe->res != -ENOENT &&
			    cqe->res != -EALREADY)
				ret = cqe->res;
		} else if (!(cqe->flags & IORING_CQE_F_MORE)) {
			poll_done = true;
		} else {
			ret = -EIO; /* an event no one signalled */
		}
		io_uring_cqe_seen(&l->ring, cqe);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int live_polls(struct live *l, uint64_t n, double *out)
{
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	bool multi = l->kind == MSGPORT_LIVE_MULTISHOT_POLL;
	uint64_t done = 0, k, j, now;
	unsigned flags;
	int ret, res;

	while (done < n) {
		k = multi ? (n - done < l->count ? n - done : l->count) : 1;
		sqe = io_uring_get_sqe(&l->ring);
		if (multi)
			io_uring_prep_poll_multishot(sqe, l->efd, POLLIN);
		else
			io_uring_prep_poll_add(sqe, l->efd, POLLIN);
		sqe->user_data = LIVE_TAG;
		/* arm and wait for the (first) event in the same enter */
		ret = live_arm(l);
		if (ret < 0)
			return ret;
		for (j = 0; j < k; j++) {
			ret = live_wait(l, &cqe);
			now = now_ns();
			if (ret < 0)
				return ret;
			res = cqe->res;
			flags = cqe->flags;
			if (cqe->user_data != LIVE_TAG || res < 0 ||
			    !(res & POLLIN))
				return res < 0 ? res : -EIO;
			io_uring_cqe_seen(&l->ring, cqe);
			l->c.completions++;
			if (flags & IORING_CQE_F_MORE)
				l->c.completions_more++;
			/* a multishot poll that ended by itself (no F_MORE)
			 * before its count is an error here */
			if (multi && !(flags & IORING_CQE_F_MORE))
				return -EIO;
			/* the last event of a multishot request is acked
			 * after the cancel: no event may race it */
			ret = live_poll_consume(l, now,
						out ? &out[done + j] : NULL,
						!multi || j + 1 < k);
			if (ret)
				return ret;
		}
		if (multi) {
			ret = live_poll_cancel(l);
			if (ret)
				return ret;
			atomic_store_explicit(&l->src->acked, l->consumed,
					      memory_order_release);
		}
		if (k > l->c.max_per_submission)
			l->c.max_per_submission = k;
		done += k;
	}
	return 0;
}

static int live_phase(struct live *l, uint64_t n, double *out)
{
	uint64_t start = now_ns(), last = start;
	int err;

	switch (l->kind) {
	case MSGPORT_LIVE_MULTISHOT_TIMEOUT:
		err = live_timeouts_multishot(l, n, out, &last);
		break;
	case MSGPORT_LIVE_ONESHOT_TIMEOUT:
		err = live_timeouts_oneshot(l, n, out, &last);
		break;
	default:
		return live_polls(l, n, out);
	}
	if (!err && out)
		l->c.drift_ns = (int64_t)(last - (start + n * l->interval));
	return err;
}

static void live_stop_source(struct live *l)
{
	if (!l->have_source)
		return;
	atomic_store_explicit(&l->src->stop, 1, memory_order_release);
	pthread_join(l->source, NULL);
	l->have_source = false;
}

int msgport_live(struct lab_handshake *hs, int kind, uint32_t count,
		 uint64_t interval_ns, int cpu, int source_cpu, uint64_t warmup,
		 uint64_t nr_samples, double *out,
		 struct msgport_live_counts *counts)
{
	struct live l;
	struct io_uring_params params;
	cpu_set_t saved;
	int err;

	if (kind < MSGPORT_LIVE_MULTISHOT_TIMEOUT ||
	    kind > MSGPORT_LIVE_ONESHOT_POLL || count < 1 ||
	    interval_ns < 1000 || nr_samples < 1 || !out || !counts)
		return -EINVAL;
	memset(&l, 0, sizeof(l));
	l.kind = kind;
	l.count = count;
	l.interval = interval_ns;
	l.efd = -1;
	err = lab_pin_saving(cpu, &saved);
	if (err)
		return err;
	/* Room in the CQ ring for every completion of one multishot SQE: a
	 * multishot request that finds the CQ ring full ends early (its last
	 * CQE without F_MORE), so a reader late by a few periods would turn
	 * a stall into an error. */
	memset(&params, 0, sizeof(params));
	params.flags = IORING_SETUP_CQSIZE;
	params.cq_entries = ring_entries(2 * (count + 2));
	err = io_uring_queue_init_params(8, &l.ring, &params);
	if (err < 0)
		goto out_unpin;
	l.have_ring = true;
	if (kind == MSGPORT_LIVE_MULTISHOT_POLL ||
	    kind == MSGPORT_LIVE_ONESHOT_POLL) {
		l.efd = eventfd(0, EFD_CLOEXEC);
		if (l.efd < 0) {
			err = -errno;
			goto out;
		}
		l.src = aligned_alloc(LAB_CACHELINE, sizeof(*l.src));
		if (!l.src) {
			err = -ENOMEM;
			goto out;
		}
		memset(l.src, 0, sizeof(*l.src));
		l.src->interval = interval_ns;
		l.src->efd = l.efd;
		err = start_thread_on(&l.source, source_cpu, live_source_fn,
				      l.src);
		if (err)
			goto out;
		l.have_source = true;
	}
	err = live_phase(&l, warmup, NULL);
	if (!err)
		err = lab_handshake_ready(hs, NULL, 0);
	if (err)
		goto out;
	memset(&l.c, 0, sizeof(l.c));
	err = live_phase(&l, nr_samples, out);
	if (!err)
		err = lab_handshake_done(hs);
out:
	live_stop_source(&l);
	if (l.src) {
		l.c.signals = atomic_load(&l.src->signals);
		if (!err)
			err = l.src->err;
	}
	*counts = l.c;
	free(l.src);
	if (l.efd >= 0)
		close(l.efd);
	if (l.have_ring)
		io_uring_queue_exit(&l.ring);
out_unpin:
	lab_unpin(&saved);
	return err;
}
