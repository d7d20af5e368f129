/*
 * io_uring helpers shared by the families.  Build: part of lab._native,
 * linked with Debian's liburing (2.3); newer opcodes and flags come from
 * compat_uring.h.
 */
#include <stdlib.h>
#include <string.h>

#include "compat_uring.h"
#include "internal.h"

int lab_uring_probe(uint8_t *supported, int nr_ops, int *last_op,
		    uint32_t *features)
{
	struct io_uring_params params;
	struct io_uring_probe *probe;
	struct io_uring ring;
	int ret, i;

	memset(supported, 0, (size_t)nr_ops);
	memset(&params, 0, sizeof(params));
	/* -ENOSYS: CONFIG_IO_URING off; -EPERM: io_uring_disabled=2, or =1
	 * without the io_uring_group; seccomp/LSM policies also give -EPERM */
	ret = io_uring_queue_init_params(2, &ring, &params);
	if (ret < 0)
		return ret;
	*features = params.features;

	probe = io_uring_get_probe_ring(&ring);
	if (!probe) {
		io_uring_queue_exit(&ring);
		return -EOPNOTSUPP; /* kernel before 5.6 has no probe */
	}
	*last_op = probe->last_op;
	for (i = 0; i < probe->ops_len && i < nr_ops; i++)
		supported[i] = (probe->ops[i].flags & IO_URING_OP_SUPPORTED) !=
			       0;
	io_uring_free_probe(probe);
	io_uring_queue_exit(&ring);
	return 0;
}
