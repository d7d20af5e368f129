/*
 * lab_evict_file(): see evict_internal.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "evict_internal.h"

int lab_evict_file(int fd, const void *map, size_t len, unsigned char *vec,
		   int tries)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), i, resident;
	int err;

	for (; tries > 0; tries--) {
		err = -posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		if (err)
			return err;
		if (mincore((void *)map, len, vec) < 0)
			return -errno;
		for (i = 0, resident = 0; i < (len + page - 1) / page; i++)
			resident += vec[i] & 1;
		if (!resident)
			return 0;
	}
	return -EOPNOTSUPP;
}
