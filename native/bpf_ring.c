/*
 * A BPF ring buffer consumer and bpf(2) map helpers (see bpf_ring.h for
 * the layout this follows).  The upcall family's scheduler sleeps in
 * epoll on the ring and consumes it here, in C, never in Python: a
 * consumer in the interpreter would add milliseconds to a microsecond
 * upcall.
 *
 * Build: part of lab._native (native/build.py); nothing to link.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpf_ring.h"

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

int lab_bpf_map_info(int map_fd, struct bpf_map_info *info)
{
	union bpf_attr attr;

	memset(info, 0, sizeof(*info));
	memset(&attr, 0, sizeof(attr));
	attr.info.bpf_fd = (uint32_t)map_fd;
	attr.info.info_len = sizeof(*info);
	attr.info.info = (uint64_t)(uintptr_t)info;
	return sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0 ? -errno : 0;
}

int lab_bpf_prog_info(int prog_fd, struct bpf_prog_info *info)
{
	union bpf_attr attr;

	memset(info, 0, sizeof(*info));
	memset(&attr, 0, sizeof(attr));
	attr.info.bpf_fd = (uint32_t)prog_fd;
	attr.info.info_len = sizeof(*info);
	attr.info.info = (uint64_t)(uintptr_t)info;
	return sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0 ? -errno : 0;
}

int lab_bpf_map_update_elem(int map_fd, const void *key, const void *value,
			    uint64_t flags)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_fd = (uint32_t)map_fd;
	attr.key = (uint64_t)(uintptr_t)key;
	attr.value = (uint64_t)(uintptr_t)value;
	attr.flags = flags;
	return sys_bpf(BPF_MAP_UPDATE_ELEM, &attr) < 0 ? -errno : 0;
}

int lab_bpf_map_delete_elem(int map_fd, const void *key)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_fd = (uint32_t)map_fd;
	attr.key = (uint64_t)(uintptr_t)key;
	return sys_bpf(BPF_MAP_DELETE_ELEM, &attr) < 0 ? -errno : 0;
}

static void ring_unmap(struct bpf_ring *r)
{
	if (r->consumer_pos)
		munmap(r->consumer_pos, r->page_size);
	if (r->producer_pos)
		munmap((void *)r->producer_pos,
		       r->page_size + 2 * r->data_size);
	r->consumer_pos = NULL;
	r->producer_pos = NULL;
	r->data = NULL;
}

int bpf_ring_open(struct bpf_ring *r, int map_fd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct bpf_map_info info;
	void *map;
	int err;

	memset(r, 0, sizeof(*r));
	r->map_fd = map_fd;
	r->epfd = -1;
	err = lab_bpf_map_info(map_fd, &info);
	if (err)
		return err;
	/* a power-of-2 number of pages: the kernel refuses anything else */
	if (info.type != BPF_MAP_TYPE_RINGBUF || !info.max_entries ||
	    (info.max_entries & (info.max_entries - 1)))
		return -EINVAL;
	r->page_size = (size_t)sysconf(_SC_PAGESIZE);
	r->data_size = info.max_entries;

	map = mmap(NULL, r->page_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   map_fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	r->consumer_pos = map;
	/* the producer page and the data area twice: the kernel only lets
	 * user space map this part read-only */
	map = mmap(NULL, r->page_size + 2 * r->data_size, PROT_READ, MAP_SHARED,
		   map_fd, (off_t)r->page_size);
	if (map == MAP_FAILED) {
		err = -errno;
		goto err;
	}
	r->producer_pos = map;
	r->data = (const uint8_t *)map + r->page_size;

	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epfd < 0) {
		err = -errno;
		goto err;
	}
	ev.data.fd = map_fd;
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, map_fd, &ev) < 0) {
		err = -errno;
		goto err;
	}
	return 0;
err:
	bpf_ring_close(r);
	return err;
}

void bpf_ring_close(struct bpf_ring *r)
{
	if (r->epfd >= 0)
		close(r->epfd);
	r->epfd = -1;
	ring_unmap(r);
}

int bpf_ring_pending(const struct bpf_ring *r)
{
	return __atomic_load_n(r->producer_pos, __ATOMIC_ACQUIRE) !=
	       __atomic_load_n(r->consumer_pos, __ATOMIC_ACQUIRE);
}

/* Header plus data, 8-byte aligned: how far a record moves consumer_pos. */
static inline unsigned long record_span(uint32_t len)
{
	len &= ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
	return ((unsigned long)len + BPF_RINGBUF_HDR_SZ + 7) & ~7ul;
}

int bpf_ring_consume(struct bpf_ring *r, bpf_ring_fn fn, void *ctx)
{
	unsigned long cons, prod, mask = r->data_size - 1;
	const uint32_t *hdr;
	uint32_t len;
	int n = 0, ret;
	int more;

	cons = __atomic_load_n(r->consumer_pos, __ATOMIC_ACQUIRE);
	do {
		more = 0;
		prod = __atomic_load_n(r->producer_pos, __ATOMIC_ACQUIRE);
		while (cons < prod) {
			hdr = (const uint32_t *)(r->data + (cons & mask));
			len = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);
			/* still being written: it and everything after it
			 * wait for the next call (records commit in order of
			 * reservation, not of completion) */
			if (len & BPF_RINGBUF_BUSY_BIT)
				return n;
			cons += record_span(len);
			more = 1;
			if (len & BPF_RINGBUF_DISCARD_BIT) {
				r->discarded++;
				ret = 0;
			} else {
				r->records++;
				n++;
				ret = fn(ctx, hdr + 2, len);
			}
			/* release: the producer may reuse the space only after
			 * we are done reading it */
			__atomic_store_n(r->consumer_pos, cons,
					 __ATOMIC_RELEASE);
			if (ret)
				return ret;
		}
	} while (more);
	return n;
}

int bpf_ring_wait(struct bpf_ring *r, int timeout_ms)
{
	struct epoll_event ev;
	int n;

	n = epoll_wait(r->epfd, &ev, 1, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	return n;
}

/* Map a BPF_F_MMAPABLE array whose values are value_size bytes and which
 * has more than min_index entries (the upcall program's VP slots and stage
 * stamps, the reply-port word), from a loader such as bcc. */
int lab_bpf_map_mmap(int fd, size_t value_size, uint32_t min_index, void **map,
		     size_t *len)
{
	struct bpf_map_info info;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	void *m;
	int err;

	err = lab_bpf_map_info(fd, &info);
	if (err)
		return err;
	if (info.type != BPF_MAP_TYPE_ARRAY ||
	    !(info.map_flags & BPF_F_MMAPABLE) ||
	    info.value_size != value_size || info.max_entries <= min_index)
		return -EINVAL;
	*len = ((size_t)info.value_size * info.max_entries + page - 1) &
	       ~(page - 1);
	m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	*map = m;
	return 0;
}
