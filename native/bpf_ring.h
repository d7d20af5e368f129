/*
 * A BPF ring buffer consumer and the few bpf(2) map operations the upcall
 * runtime needs, in C, without libbpf.  Private to native/ (not part of the
 * cffi cdef: native/build.py lists it in PRIVATE_HEADERS).
 *
 * The ring (BPF_MAP_TYPE_RINGBUF, Linux 5.8) is read exactly as the kernel
 * lays it out (kernel/bpf/ringbuf.c):
 *   mmap offset 0, one page, read-write: consumer_pos, which only we write;
 *   mmap offset PAGE_SIZE, read-only: the producer page (producer_pos)
 *   followed by the data area mapped twice in a row, so a record that wraps
 *   around the end is contiguous in our mapping.
 * A record is an 8-byte header (struct bpf_ringbuf_hdr: u32 len, u32
 * pg_off) and its data; len carries BPF_RINGBUF_BUSY_BIT while the producer
 * still writes it and BPF_RINGBUF_DISCARD_BIT if it was discarded.  The
 * consumer reads producer_pos and each header with acquire loads, skips
 * roundup(len + 8, 8) bytes per record and publishes its progress with a
 * release store of consumer_pos (what frees the space for the producer).
 * The map fd is pollable: EPOLLIN while data is available; a producer's
 * BPF_RB_FORCE_WAKEUP (or its adaptive default) wakes the waiters.
 *
 * Build: part of lab._native (native/build.py); nothing to link.
 */
#ifndef LAB_BPF_RING_H
#define LAB_BPF_RING_H

#include <stddef.h>
#include <stdint.h>

struct bpf_map_info;
struct bpf_prog_info;

struct bpf_ring {
	int map_fd;
	int epfd; /* epoll on map_fd (EPOLLIN) */
	size_t page_size;
	size_t data_size;	     /* max_entries of the map: a power of 2 */
	unsigned long *consumer_pos; /* mapped read-write */
	const unsigned long *producer_pos; /* mapped read-only */
	const uint8_t *data;		   /* data area, mapped twice */
	uint64_t records;		   /* handed to the callback */
	uint64_t discarded; /* records with BPF_RINGBUF_DISCARD_BIT */
};

/*
 * Called once per record, in ring order; returns 0, or a negative errno
 * that stops the consumer (the record counts as consumed) and is returned
 * by bpf_ring_consume().
 */
typedef int (*bpf_ring_fn)(void *ctx, const void *data, uint32_t len);

/* Map the ring of map_fd (checked to be a BPF ring buffer) and set up the
 * epoll.  0 or -errno; on error nothing is left mapped or open. */
int bpf_ring_open(struct bpf_ring *r, int map_fd);
void bpf_ring_close(struct bpf_ring *r);

/* Consume every complete record now in the ring: the count (>= 0), or
 * the callback's negative return. */
int bpf_ring_consume(struct bpf_ring *r, bpf_ring_fn fn, void *ctx);

/* Is any record (complete or not) waiting? */
int bpf_ring_pending(const struct bpf_ring *r);

/* Sleep in epoll_wait until the ring has data: 1, 0 on timeout, -errno.
 * timeout_ms < 0 waits for ever. */
int bpf_ring_wait(struct bpf_ring *r, int timeout_ms);

/* bpf(2) operations on map and program fds another loader made (bcc). */
int lab_bpf_map_info(int map_fd, struct bpf_map_info *info);
int lab_bpf_prog_info(int prog_fd, struct bpf_prog_info *info);
int lab_bpf_map_update_elem(int map_fd, const void *key, const void *value,
			    uint64_t flags);
int lab_bpf_map_delete_elem(int map_fd, const void *key);
/* mmap a BPF_F_MMAPABLE array of value_size-byte values with more than
 * min_index entries: *map, *len (for munmap); -EINVAL for another map. */
int lab_bpf_map_mmap(int fd, size_t value_size, uint32_t min_index, void **map,
		     size_t *len);

#endif /* LAB_BPF_RING_H */
