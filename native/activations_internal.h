/*
 * What the activations runtime (activations.c) and Table IV
 * (activations_table4.c) share: the runtime's VPs, activations and
 * fibers, and the few calls Table IV builds its fiber operations on.
 * Private: not seen by cffi.
 */
#ifndef LAB_ACTIVATIONS_INTERNAL_H
#define LAB_ACTIVATIONS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "activations.h"
#include "bpf_ring.h"
#include "compat_uring.h"
#include "internal.h"
#include "upcall_abi.h"

/* one slot of the upcall program's VP array per activation: the API
 * header (for Python) cannot include the program's, so the compiler checks
 * the two agree */
_Static_assert(ACT_MAX_SLOTS == UP_NR_VPS,
	       "ACT_MAX_SLOTS is the upcall program's UP_NR_VPS");

/* Every wait is ended by a wake-up (a push, a stop); the timeout is only
 * a safety net, long enough not to add switches to the window. */
#define ACT_WAIT_SLICE_MS 1000

enum act_fiber_state {
	FS_RUN = 0,
	FS_PARK,  /* no task left in this phase */
	FS_LOST,  /* its activation lost the VP during the call */
	FS_WAIT,  /* waits for a CQE (uring) or a peer (Table IV) */
	FS_EXIT,  /* Table IV: body done, back to the pool */
	FS_YIELD, /* a task done: the VP's other fibers go first */
};

struct act_rt;
struct act_vp;
struct act_activation;

struct act_fiber {
	struct lab_fiber ctx;
	struct act_fiber *next; /* ready queue / pool link */
	struct act_rt *rt;
	struct act_vp *vp;	    /* home VP */
	struct act_activation *act; /* who runs it (set at dispatch) */
	void (*body)(struct act_fiber *);
	int state;
	int tfd;
	int32_t res;	     /* uring: the CQE's result */
	uint64_t ticks;	     /* the call's read buffer */
	uint64_t release_ns; /* its next task's release: the phase
					 * start, then its last completion */
	/* fault, uffd: the word the call reads, what it must hold */
	const volatile uint64_t *touch;
	uint64_t expect;
	bool touch_blocks; /* a fresh page: the call faults */
	bool faulted;	   /* this task's calls took a page fault */
	bool blocked;	   /* upcall: the kernel saw this call block */
	/* Table IV */
	void (*fn)(struct act_fiber *);
	struct act_fiber *joiner;
	struct act_fiber *peer;
};

struct act_activation {
	struct lab_fiber sched; /* its own context: the thread stack */
	struct act_rt *rt;
	struct act_vp *vp; /* the VP (and CPU) it belongs to */
	struct act_fiber *cur;
	struct act_fiber *thread_fiber; /* pthreads: the task's timerfd */
	pthread_t thread;
	bool have_thread;
	bool owns;   /* only its own thread reads/writes */
	bool on;     /* in fiber code (instrumented) */
	uint32_t id; /* slot index in lab_upcall_vps */
	_Atomic int32_t tid;
	_Atomic uint64_t entry_seq; /* upcall: block_seq when the call began */
	_Atomic uint32_t in_sys;    /* upcall: inside a fiber's call */
	uint64_t t_on;
	uint64_t handoff_from;	      /* a VP taken: its event time, until
					 * the first dispatch records it */
	struct activations_counts st; /* written only by its thread */
};

struct act_vp {
	_Alignas(LAB_CACHELINE) _Atomic uint64_t owner;
	_Atomic uint64_t since_ns; /* monitor: when the owner's call began */
	_Atomic uint64_t t_event;  /* event time for whoever takes it free */
	_Alignas(LAB_CACHELINE) pthread_mutex_t lock; /* ready queue, pool */
	struct act_fiber *head, *tail;
	struct act_fiber *pool;	    /* Table IV: exited fibers */
	_Atomic uint32_t work_word; /* bumped on every push */
	_Atomic uint32_t idle;	    /* owner sleeps on work_word */
	_Alignas(LAB_CACHELINE) _Atomic uint32_t spare_word;
	_Atomic uint32_t ring_waiter; /* upcall: a spare watches the ring */
	_Atomic int32_t in_call;      /* its fibers inside their call */
	uint32_t index;
	int cpu;
	int efd, epfd;	      /* upcall: poke, epoll(ring, efd) */
	struct io_uring ring; /* uring: only its thread submits */
	_Atomic uint32_t have_ring;
	int ring_err;
	uint32_t waiting; /* uring: SQEs without a CQE */
};

struct act_t4 {
	int op;
	uint64_t warmup, nr_samples;
	uint32_t ops;
	double *out;
	struct lab_handshake *hs;
	_Atomic int err;
	_Atomic uint32_t done;
};

struct act_rt {
	const struct activations_config *cfg;
	int variant;
	bool instrument; /* running count, busy time, samples */
	bool ready_by_ioctl;
	bool nowait_by_poll; /* kernel before 6.9: poll, not RWF_NOWAIT */
	uint64_t work_loops;
	uint32_t nr_vps, nr_acts, nr_fibers;
	struct act_vp *vps;
	struct act_activation *acts;
	struct act_fiber *fibers; /* nr_fibers + Table IV extras */
	uint32_t nr_fibers_alloc;

	_Alignas(LAB_CACHELINE) _Atomic uint64_t next_task;
	_Atomic uint64_t phase_end;
	_Atomic uint32_t parked;
	_Atomic uint32_t phase_word;   /* pthreads: bumped per phase */
	_Atomic uint32_t phase_active; /* monitor runs while 1 */
	_Atomic uint32_t stop;
	_Atomic uint32_t started;
	_Atomic uint32_t go;
	_Atomic int err;

	_Alignas(LAB_CACHELINE) _Atomic int32_t running;
	_Atomic int32_t max_running;
	_Alignas(LAB_CACHELINE) _Atomic uint64_t nr_handoff;
	_Atomic uint32_t counting;
	double *task_ns, *handoff_ns;
	uint64_t handoff_cap;
	uint64_t warmup_tasks;
	_Atomic uint32_t *done; /* per task: times completed */

	/* upcall */
	struct up_vp *slots;
	size_t slots_len;
	struct bpf_ring ring;
	bool have_ring;
	_Alignas(LAB_CACHELINE) _Atomic uint32_t ring_busy;
	int tids_fd;
	uint64_t base_lost;

	/* monitor */
	pthread_t monitor;
	bool have_monitor;
	struct activations_counts monitor_st;

	/* fault, uffd: page k of pages is the k-th blocking call's */
	int block_kind;
	uint8_t *pages;
	size_t pages_len;
	uint64_t nr_pages;
	uint32_t *task_page; /* per task: its first blocking call's page */
	uint64_t hot;	     /* what a call that does not block reads */
	int file_fd;	     /* fault: the scratch file */
	int uffd, uffd_efd;  /* uffd: the range's fd, the handler's stop */
	void *uffd_src;	     /* ... the page UFFDIO_COPY copies */
	pthread_t uffd_thread;
	bool have_uffd_thread;
	_Atomic uint32_t uffd_quit;
	struct activations_counts uffd_st; /* the handler's counts */

	struct act_t4 t4;
};

static inline int act_futex_wait_ms(_Atomic uint32_t *word, uint32_t expected,
				    int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	if (syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected,
		    &ts, NULL, 0) < 0)
		return -errno;
	return 0;
}

/* CPU work as a fixed number of dependent multiplies: a step does the same
 * work however often it is preempted (a spin on the clock would not). */
static inline void act_spin(uint64_t loops)
{
	uint64_t x = loops, i;

	for (i = 0; i < loops; i++)
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	lab_keep(x);
}

/* act_spin loops per us on this CPU (the fastest of a few rounds; cached) */
uint64_t act_calibrate(void);

/* Inline: Table IV's fork and signal-wait time it on every operation. */
static inline void vp_push(struct act_vp *vp, struct act_fiber *f)
{
	pthread_mutex_lock(&vp->lock);
	f->next = NULL;
	if (vp->tail)
		vp->tail->next = f;
	else
		vp->head = f;
	vp->tail = f;
	pthread_mutex_unlock(&vp->lock);
	/* after the push, then look for a sleeping owner; the owner says it
	 * sleeps, then looks at the queue: one of us sees the other */
	atomic_fetch_add(&vp->work_word, 1);
	if (atomic_load(&vp->idle))
		futex_wake((uint32_t *)&vp->work_word, 1);
}

/*
 * A zeroed runtime for cfg (NULL: no memory); act_setup() makes its VPs,
 * activations and fibers (nr_fibers workload fibers plus `extra` for
 * Table IV), act_start() their threads; act_teardown() undoes both, even
 * after a failed set-up, and free() releases it.
 */
struct act_rt *act_rt_create(const struct activations_config *cfg);
int act_setup(struct act_rt *rt, uint32_t extra);
int act_start(struct act_rt *rt);
void act_teardown(struct act_rt *rt);

#endif /* LAB_ACTIVATIONS_INTERNAL_H */
