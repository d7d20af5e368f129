/*
 * Evicting a file's pages from the page cache, so the next access reads
 * the disk: shared by the blocks that must really wait for a read
 * (upcall.c's pread blocks, activations.c's major faults).  Private: not
 * seen by cffi.
 */
#ifndef LAB_EVICT_INTERNAL_H
#define LAB_EVICT_INTERNAL_H

#include <stddef.h>

/*
 * Drop every page of fd (mapped at map, len bytes, for mincore() into vec,
 * one byte per page) until mincore() shows none resident, at most tries
 * passes: POSIX_FADV_DONTNEED skips pages it cannot drop yet (on a per-CPU
 * LRU batch).  0, -EOPNOTSUPP (a file system that keeps its pages: tmpfs)
 * or -errno.
 */
int lab_evict_file(int fd, const void *map, size_t len, unsigned char *vec,
		   int tries);

#endif /* LAB_EVICT_INTERNAL_H */
