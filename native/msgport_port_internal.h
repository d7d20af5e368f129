/*
 * The reply port's set-up, messages and checking (msgport_port.c), shared
 * with the reply ports that run code (msgport_upcall.c): one ring, one
 * batch of prepared SQEs, each reply checked against its message.  Not
 * part of the cdef.
 */
#ifndef LAB_MSGPORT_PORT_INTERNAL_H
#define LAB_MSGPORT_PORT_INTERNAL_H

#include <stdbool.h>

#include "compat_uring.h"
#include "msgport_internal.h"

#define BLOCK	  MSGPORT_BLOCK_SIZE
#define PIPE_MSG  sizeof(uint64_t) /* op pipe_write: one word */
#define PIPE_WANT (1 << 20)	   /* F_SETPIPE_SZ: room for 128 Ki words */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* The content of op read's file: one word per block, repeated. */
static inline uint64_t block_word(uint64_t block)
{
	return (block + 1) * 0x9e3779b97f4a7c15ull;
}

struct port {
	int mode;
	int op;
	uint32_t batch;
	struct io_uring ring;
	bool have_ring;
	int efd;	    /* eventfd mode: registered with the ring */
	int fd;		    /* op read: the cached file */
	int pipe_r, pipe_w; /* pipe ops */
	size_t pipe_size;
	uint64_t pipe_pending; /* pipe_write: bytes not drained yet */
	char *bufs;	       /* read: batch blocks; pipe_read: batch bytes */
	uint64_t *words;       /* pipe_write: the batch's message words */
	char *drain;	       /* pipe_write: DRAIN_CHUNK */
	uint8_t seen[MSGPORT_MAX_BATCH];
	uint64_t seq; /* first message of the current batch */
	struct msgport_port_counts c;
};

/* A port for mode (a plain ring unless deferred or eventfd; none for
 * sync), op and batch; op read's file in dir.  0 or -errno; port_deinit()
 * after either. */
int port_init(struct port *p, int mode, int op, uint32_t batch,
	      const char *dir);
void port_deinit(struct port *p);
/* Message i of the current batch into sqe (user_data: its sequence). */
void port_prep(struct port *p, struct io_uring_sqe *sqe, uint32_t i);
/* One reply: counted, and bad unless it answers a message of this batch
 * once with the right result. */
void port_reply(struct port *p, uint64_t seq, int64_t res);
/* The batch's SQEs, each user_data its message's sequence | tag. */
int port_prep_batch(struct port *p, uint64_t tag);
/* The submitting enter returned ret: checked (the whole batch) and
 * counted; 0 or -errno. */
int port_submitted(struct port *p, int ret);
/* pipe_read: the write() that makes the batch's replies ready. */
int port_source(struct port *p);
/* The batch is reaped: the next one's sequence, the sample ((t1 - t0) /
 * batch, if sample), and (pipe_write) the untimed drain. */
int port_batch_done(struct port *p, uint64_t t0, uint64_t t1, double *sample);

#endif /* LAB_MSGPORT_PORT_INTERNAL_H */
