/*
 * Family `upcall`: page-fault upcalls by userfaultfd (upcall_fault.h says
 * what is measured).  Seeds 000 and 002 name the page fault beside the
 * blocking call as the event the kernel must tell the user-level
 * scheduler of; userfaultfd (Linux 4.3; minor faults on shmem 5.14,
 * UFFD_USER_MODE_ONLY 5.11) is the one path where Linux hands a fault to
 * user code and waits for it to be resolved.  The other path, a major
 * fault seen as a block upcall, is upcall.c's block_kind fault.
 *
 * One fault at a time, in lock-step: the handler prepares sample i's page
 * content, the faulting thread touches the page (fault -> message ->
 * resolve -> resumed), checks it and unmaps it again, then the next.
 * Every harness wait is a spin (yielding where the CPU is shared), so the
 * faulting thread's only sleep is in the fault.
 *
 * Build: part of lab._native (native/build.py), -lpthread.
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "upcall_fault.h"
#include "internal.h"
#include "upcall_internal.h"

/* pages reused round-robin: each is unmapped again after its sample */
#define UF_PAGES	   64u
#define UF_TIMEOUT_NS	   2000000000ull
#define UF_POLL_TIMEOUT_MS 100

struct uf {
	const struct upcall_fault_config *cfg;
	struct upcall_fault_counts *out;
	double *series;
	uint64_t total;
	size_t ps, len;
	bool shared; /* the handler on the faulting thread's CPU */
	int uffd, memfd;
	char *area;    /* registered: the faulting thread's */
	char *alias;   /* continue: the same memfd, unregistered */
	uint64_t *src; /* copy: the source page */

	/* handler -> faulting thread */
	_Alignas(LAB_CACHELINE) _Atomic uint64_t ready; /* pages prepared */
	_Atomic uint64_t done;				/* samples resolved */
	_Atomic uint32_t stop;
	uint64_t t_msg, t_resolved; /* of sample done - 1 */
	/* faulting thread -> handler */
	_Alignas(LAB_CACHELINE) _Atomic uint64_t checked;
	_Atomic int32_t tid;
	_Atomic int fault_err;
};

static inline uint64_t uf_pattern(const struct uf *u, uint64_t i)
{
	/* never 0: a zero page (an unresolved anonymous read) is bad data */
	return u->cfg->seed * 0x9e3779b97f4a7c15ull + i + 1;
}

static inline char *uf_page(const struct uf *u, char *base, uint64_t i)
{
	return base + (i % UF_PAGES) * u->ps;
}

static inline void uf_relax(const struct uf *u)
{
	if (u->shared)
		sched_yield();
	else
		up_pause();
}

static void uf_rusage(uint64_t *majflt, uint64_t *minflt)
{
	struct rusage ru;

	if (getrusage(RUSAGE_THREAD, &ru) < 0) {
		*majflt = *minflt = 0;
		return;
	}
	*majflt = (uint64_t)ru.ru_majflt;
	*minflt = (uint64_t)ru.ru_minflt;
}

/* ---- userfaultfd --------------------------------------------------------- */

static uint64_t uf_features(int variant)
{
	return variant == UPCALL_FAULT_UFFD_CONTINUE ?
		       UFFD_FEATURE_MINOR_SHMEM :
		       0;
}

/* The fd with UFFDIO_API done (*fd: it, or -1).  UFFD_USER_MODE_ONLY: only
 * user-mode faults, which is all we touch (and what an unprivileged
 * process may get); a kernel before 5.11 refuses the flag. */
static int uf_open(int variant, uint64_t extra, int *fd, uint64_t *granted,
		   uint64_t *user_mode_only)
{
	struct uffdio_api api = { .api = UFFD_API };
	int flags = O_CLOEXEC | O_NONBLOCK;

	*user_mode_only = 1;
	*fd = (int)syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
	if (*fd < 0 && errno == EINVAL) {
		*user_mode_only = 0;
		*fd = (int)syscall(SYS_userfaultfd, flags);
	}
	if (*fd < 0)
		return -errno;
	api.features = uf_features(variant) | extra;
	if (ioctl(*fd, UFFDIO_API, &api) < 0) {
		/* EINVAL: a feature asked for that this kernel lacks */
		*granted = api.features;
		return errno == EINVAL ? -EOPNOTSUPP : -errno;
	}
	*granted = api.features;
	if ((api.features & uf_features(variant)) != uf_features(variant))
		return -EOPNOTSUPP;
	return 0;
}

int upcall_fault_probe(int variant)
{
	uint64_t granted, umo;
	int fd, err;

	if (variant < 0 || variant >= UPCALL_FAULT_NR_VARIANTS)
		return -EINVAL;
	err = uf_open(variant, 0, &fd, &granted, &umo);
	if (fd >= 0)
		close(fd);
	return err;
}

static int uf_setup(struct uf *u)
{
	const struct upcall_fault_config *cfg = u->cfg;
	bool minor = cfg->variant == UPCALL_FAULT_UFFD_CONTINUE;
	struct uffdio_register reg = { 0 };
	uint64_t need;
	int err;

	err = uf_open(cfg->variant, cfg->extra_features, &u->uffd,
		      &u->out->features, &u->out->user_mode_only);
	if (err)
		return err;
	if (minor) {
		u->memfd = memfd_create("lab-upcall-fault", MFD_CLOEXEC);
		if (u->memfd < 0)
			return -errno;
		if (ftruncate(u->memfd, (off_t)u->len) < 0)
			return -errno;
		u->alias = mmap(NULL, u->len, PROT_READ | PROT_WRITE,
				MAP_SHARED, u->memfd, 0);
		if (u->alias == MAP_FAILED) {
			u->alias = NULL;
			return -errno;
		}
		u->area =
			mmap(NULL, u->len, PROT_READ, MAP_SHARED, u->memfd, 0);
	} else {
		u->area = mmap(NULL, u->len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	if (u->area == MAP_FAILED) {
		u->area = NULL;
		return -errno;
	}
	if (posix_memalign((void **)&u->src, u->ps, u->ps))
		return -ENOMEM;
	reg.range.start = (uint64_t)(uintptr_t)u->area;
	reg.range.len = u->len;
	reg.mode = minor ? UFFDIO_REGISTER_MODE_MINOR :
			   UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(u->uffd, UFFDIO_REGISTER, &reg) < 0)
		return errno == EINVAL ? -EOPNOTSUPP : -errno;
	need = 1ull << (minor ? _UFFDIO_CONTINUE : _UFFDIO_COPY);
	return (reg.ioctls & need) ? 0 : -EOPNOTSUPP;
}

static void uf_teardown(struct uf *u)
{
	/* closing the fd first wakes a thread still in a fault: its range is
	 * unregistered and the fault resolves as an ordinary one */
	if (u->uffd >= 0)
		close(u->uffd);
	u->uffd = -1;
}

static void uf_unmap(struct uf *u)
{
	if (u->area)
		munmap(u->area, u->len);
	if (u->alias)
		munmap(u->alias, u->len);
	if (u->memfd >= 0)
		close(u->memfd);
	free(u->src);
}

/* ---- the faulting thread -------------------------------------------------- */

static bool uf_stopped(const struct uf *u)
{
	return atomic_load_explicit(&u->stop, memory_order_relaxed);
}

static bool uf_page_ok(const struct uf *u, const char *page, uint64_t i)
{
	const volatile uint64_t *w = (const volatile uint64_t *)page;
	uint64_t want = uf_pattern(u, i);
	size_t j;

	for (j = 0; j < u->ps / sizeof(*w); j++)
		if (w[j] != want)
			return false;
	return true;
}

static void uf_record(struct uf *u, uint64_t i, uint64_t t_fault,
		      uint64_t t_resumed)
{
	uint64_t n = u->cfg->nr_samples, idx = i - u->cfg->warmup;
	uint64_t *clamped = &u->out->clamped;

	u->series[UPCALL_FAULT_SERIES_LATENCY * n + idx] =
		up_delta(u->t_msg, t_fault, clamped);
	u->series[UPCALL_FAULT_SERIES_RESOLVE * n + idx] =
		up_delta(u->t_resolved, u->t_msg, clamped);
	/* the resumed thread may run before the handler's own stamp, on
	 * another CPU: that is a resume of 0 (counted as clamped) */
	u->series[UPCALL_FAULT_SERIES_RESUME * n + idx] =
		up_delta(t_resumed, u->t_resolved, clamped);
	u->series[UPCALL_FAULT_SERIES_TOTAL * n + idx] =
		up_delta(t_resumed, t_fault, clamped);
}

static int uf_fault_one(struct uf *u, uint64_t i)
{
	const volatile uint64_t *word =
		(const volatile uint64_t *)uf_page(u, u->area, i);
	uint64_t maj0, min0, maj1, min1, t_fault, t_resumed, v;
	bool counting = i >= u->cfg->warmup;

	while (atomic_load_explicit(&u->ready, memory_order_acquire) <= i) {
		if (uf_stopped(u))
			return -ECANCELED;
		uf_relax(u);
	}
	uf_rusage(&maj0, &min0);
	t_fault = now_ns();
	v = *word;
	t_resumed = now_ns();
	uf_rusage(&maj1, &min1);
	lab_keep(v);
	while (atomic_load_explicit(&u->done, memory_order_acquire) <= i) {
		if (uf_stopped(u))
			return -ECANCELED;
		uf_relax(u);
	}
	if (counting) {
		u->out->majflt += maj1 - maj0;
		u->out->minflt += min1 - min0;
		if (maj1 + min1 > maj0 + min0)
			u->out->faults++;
		if (!uf_page_ok(u, (const char *)word, i))
			u->out->bad_data++;
		uf_record(u, i, t_fault, t_resumed);
	}
	/* the next touch of this page faults again (the memfd keeps its page
	 * cache: only our mapping of it goes) */
	if (madvise((void *)word, u->ps, MADV_DONTNEED) < 0)
		return -errno;
	atomic_store_explicit(&u->checked, i + 1, memory_order_release);
	return 0;
}

static void *uf_faulting_thread(void *arg)
{
	struct uf *u = arg;
	uint64_t i;
	int err = 0;

	atomic_store(&u->tid, (int32_t)gettid());
	for (i = 0; i < u->total && !err; i++)
		err = uf_fault_one(u, i);
	if (err && err != -ECANCELED)
		atomic_store(&u->fault_err, err);
	return NULL;
}

/* ---- the handler ------------------------------------------------------------ */

static void uf_prepare(struct uf *u, uint64_t i)
{
	uint64_t *dst = u->cfg->variant == UPCALL_FAULT_UFFD_CONTINUE ?
				(uint64_t *)uf_page(u, u->alias, i) :
				u->src;
	uint64_t want = uf_pattern(u, i);
	size_t j;

	for (j = 0; j < u->ps / sizeof(*dst); j++)
		dst[j] = want;
}

/* The next message, stamped on its arrival in user space. */
static int uf_read_msg(struct uf *u, struct uffd_msg *msg, uint64_t *t,
		       bool counting)
{
	bool sleep = u->cfg->handler == UPCALL_FAULT_SLEEP;
	uint64_t deadline = now_ns() + UF_TIMEOUT_NS;
	struct pollfd pfd = { .fd = u->uffd, .events = POLLIN };
	ssize_t n;

	for (;;) {
		n = read(u->uffd, msg, sizeof(*msg));
		if (n == (ssize_t)sizeof(*msg)) {
			*t = now_ns();
			return 0;
		}
		if (n >= 0)
			return -EIO;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		if (atomic_load(&u->fault_err))
			return -ECANCELED;
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		if (sleep) {
			if (poll(&pfd, 1, UF_POLL_TIMEOUT_MS) < 0 &&
			    errno != EINTR)
				return -errno;
		} else {
			if (counting)
				u->out->spun_reads++;
			uf_relax(u);
		}
	}
}

static bool uf_msg_ok(const struct uf *u, const struct uffd_msg *msg,
		      uint64_t i)
{
	uint64_t page = (uint64_t)(uintptr_t)uf_page(u, u->area, i);
	bool minor = u->cfg->variant == UPCALL_FAULT_UFFD_CONTINUE;

	return msg->event == UFFD_EVENT_PAGEFAULT &&
	       (msg->arg.pagefault.address & ~(uint64_t)(u->ps - 1)) == page &&
	       !(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) &&
	       !!(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) ==
		       minor;
}

/* UFFDIO_COPY or UFFDIO_CONTINUE of sample i's page, which wakes the
 * faulting thread.  1: EEXIST (the page was mapped already). */
static int uf_resolve(struct uf *u, uint64_t i)
{
	uint64_t page = (uint64_t)(uintptr_t)uf_page(u, u->area, i);
	int r;

	if (u->cfg->variant == UPCALL_FAULT_UFFD_CONTINUE) {
		struct uffdio_continue c = { .range = { page, u->ps } };

		r = ioctl(u->uffd, UFFDIO_CONTINUE, &c);
	} else {
		struct uffdio_copy c = { .dst = page,
					 .src = (uint64_t)(uintptr_t)u->src,
					 .len = u->ps };

		r = ioctl(u->uffd, UFFDIO_COPY, &c);
	}
	if (r == 0)
		return 0;
	return errno == EEXIST ? 1 : -errno;
}

static int uf_handle_one(struct uf *u, uint64_t i)
{
	bool counting = i >= u->cfg->warmup;
	uint64_t deadline, t_msg = 0;
	struct uffd_msg msg;
	int err;

	uf_prepare(u, i);
	atomic_store_explicit(&u->ready, i + 1, memory_order_release);
	err = uf_read_msg(u, &msg, &t_msg, counting);
	if (err)
		return err;
	if (counting)
		u->out->messages++;
	if (!uf_msg_ok(u, &msg, i)) {
		u->out->bad_msgs++;
		return -EPROTO;
	}
	err = uf_resolve(u, i);
	u->t_resolved = now_ns();
	if (err < 0)
		return err;
	if (counting) {
		if (err)
			u->out->eexist++;
		else
			u->out->resolved++;
	}
	u->t_msg = t_msg;
	atomic_store_explicit(&u->done, i + 1, memory_order_release);
	deadline = now_ns() + UF_TIMEOUT_NS;
	while (atomic_load_explicit(&u->checked, memory_order_acquire) <= i) {
		if (atomic_load(&u->fault_err))
			return -ECANCELED;
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		uf_relax(u);
	}
	return 0;
}

/* messages no sample took (a page that faulted twice): counted, so that
 * messages = faults says every fault was one message */
static void uf_drain(struct uf *u)
{
	struct uffd_msg msg;

	while (read(u->uffd, &msg, sizeof(msg)) == (ssize_t)sizeof(msg))
		u->out->messages++;
}

static int uf_check(const struct upcall_fault_config *cfg, double *series_ns,
		    struct upcall_fault_counts *out)
{
	if (!cfg || !series_ns || !out || cfg->variant < 0 ||
	    cfg->variant >= UPCALL_FAULT_NR_VARIANTS || cfg->handler < 0 ||
	    cfg->handler >= UPCALL_FAULT_NR_HANDLERS || cfg->cpu < 0 ||
	    cfg->handler_cpu < 0 || cfg->cpu >= CPU_SETSIZE ||
	    cfg->handler_cpu >= CPU_SETSIZE || !cfg->nr_samples ||
	    cfg->warmup + cfg->nr_samples >= UINT32_MAX / 2)
		return -EINVAL;
	return 0;
}

int upcall_fault_run(struct lab_handshake *hs,
		     const struct upcall_fault_config *cfg, double *series_ns,
		     struct upcall_fault_counts *out)
{
	struct lab_handshake none = { .ready_fd = -1, .go_fd = -1 };
	pthread_t thread;
	bool have_thread = false;
	cpu_set_t saved, set;
	struct uf *u;
	uint64_t i;
	int err, e2;

	err = uf_check(cfg, series_ns, out);
	if (err)
		return err;
	if (!hs)
		hs = &none;
	memset(out, 0, sizeof(*out));
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->cfg = cfg;
	u->out = out;
	u->series = series_ns;
	u->total = cfg->warmup + cfg->nr_samples;
	u->ps = (size_t)sysconf(_SC_PAGESIZE);
	u->len = UF_PAGES * u->ps;
	u->shared = cfg->cpu == cfg->handler_cpu;
	u->uffd = u->memfd = -1;
	err = lab_pin_saving(cfg->handler_cpu, &saved);
	if (err) {
		free(u);
		return err;
	}
	err = uf_setup(u);
	if (!err) {
		CPU_ZERO(&set);
		CPU_SET(cfg->cpu, &set);
		err = lab_spawn_pinned(&thread, &set, -1, 0, uf_faulting_thread,
				       u);
		have_thread = !err;
	}
	if (have_thread) {
		while (!atomic_load(&u->tid))
			sched_yield();
		out->faulting_tid = (uint64_t)atomic_load(&u->tid);
	}
	for (i = 0; !err && i < u->total; i++) {
		if (i == cfg->warmup)
			err = lab_handshake_ready(hs, NULL, 0);
		if (!err)
			err = uf_handle_one(u, i);
	}
	if (!err)
		err = lab_handshake_done(hs);
	atomic_store(&u->stop, 1);
	if (u->uffd >= 0)
		uf_drain(u);
	uf_teardown(u);
	if (have_thread)
		pthread_join(thread, NULL);
	/* the faulting thread's own error explains the stop better */
	e2 = atomic_load(&u->fault_err);
	if (e2)
		err = e2;
	uf_unmap(u);
	free(u);
	lab_unpin(&saved);
	return err;
}
