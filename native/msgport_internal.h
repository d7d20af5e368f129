/*
 * What the msgport family's three C files share (msgport_port.c,
 * msgport_live.c, msgport_ppc.c) and Python does not see: full writes and
 * short reads that survive EINTR, a thread started on its CPU, the size
 * of a ring for a number of requests, and a signal's disposition saved and
 * put back whole.  The handshake, the clock and
 * pinning are the lab's own (lab_native.h, internal.h).
 */
#ifndef LAB_MSGPORT_INTERNAL_H
#define LAB_MSGPORT_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "msgport.h"

static inline int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read at least one byte: the count, -EPIPE at end of file, or -errno. */
static inline ssize_t read_some(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = read(fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == 0 ? -EPIPE : n;
}

/*
 * Start a thread already on its CPU (pthread_create() fails with EINVAL
 * for a CPU it may not use): it never runs anywhere else, and a bad CPU is
 * an error here, not a peer that silently never answers.
 */
static inline int start_thread_on(pthread_t *thread, int cpu,
				  void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	cpu_set_t set;
	int err;

	if (cpu < 0 || cpu >= CPU_SETSIZE)
		return -EINVAL;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	err = pthread_attr_init(&attr);
	if (err)
		return -err;
	err = pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	if (!err)
		err = pthread_create(thread, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return -err;
}

/* Ring entries for n requests in flight: a power of two, at least 8. */
static inline unsigned ring_entries(uint32_t n)
{
	unsigned entries = 8;

	while (entries < n)
		entries <<= 1;
	return entries;
}

/*
 * A signal's disposition as the kernel holds it (x86-64's struct
 * k_sigaction), for the ports and servers that take a signal for the run
 * (msgport_upcall.c: SIGUSR1, msgport_ppc.c's sigio server: SIGUSR2):
 * saved and put back whole, bit for bit -- glibc's sigaction() would add
 * its SA_RESTORER to a restored SIG_DFL.
 */
struct kernel_sigaction {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
};

static inline int msgport_rt_sigaction(int sig,
				       const struct kernel_sigaction *act,
				       struct kernel_sigaction *old)
{
	return syscall(SYS_rt_sigaction, sig, act, old, sizeof(old->mask)) ?
		       -errno :
		       0;
}

#endif /* LAB_MSGPORT_INTERNAL_H */
