/*
 * Family `upcall`: the upcall program's plumbing, for both families that
 * load it (upcall, activations).  The runner compiles the program once
 * per suite run (lab/upcall_program.py) and hands its fds to each worker,
 * which attaches it for its run only (upcall_attach: a link that dies with
 * the worker), finds its maps as a fresh load has them
 * (upcall_reset_maps), and reads the kernel's own accounting of it
 * (run time, recursion misses).  Also the mappings of its mmap-able
 * arrays that the C side shares, with the sizes of their values.
 *
 * Build: part of lab._native (native/build.py).
 */
#include <fcntl.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "upcall.h"
#include "bpf_ring.h"
#include "upcall_abi.h"
#include "upcall_internal.h"

size_t upcall_vp_size(void)
{
	return sizeof(struct up_vp);
}

size_t upcall_event_size(void)
{
	return sizeof(struct up_event);
}

size_t upcall_stages_size(void)
{
	return sizeof(struct up_stages);
}

int up_map_slots_n(int vps_fd, uint32_t nr, struct up_vp **vps, size_t *len)
{
	return lab_bpf_map_mmap(vps_fd, sizeof(struct up_vp), nr ? nr - 1 : 0,
				(void **)vps, len);
}

int up_map_slots(int vps_fd, struct up_vp **vps, size_t *len)
{
	return up_map_slots_n(vps_fd, UP_VP + 1, vps, len);
}

int up_map_stages(int stages_fd, struct up_stages **st, size_t *len)
{
	return lab_bpf_map_mmap(stages_fd, sizeof(struct up_stages), 0,
				(void **)st, len);
}

int upcall_program_stats(int prog_fd, uint64_t *run_time_ns, uint64_t *run_cnt)
{
	struct bpf_prog_info info;
	int err = lab_bpf_prog_info(prog_fd, &info);

	*run_time_ns = err ? 0 : info.run_time_ns;
	*run_cnt = err ? 0 : info.run_cnt;
	return err;
}

/* ---- a program loaded by another process --------------------------------- */

static long up_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

int upcall_attach(int prog_fd, const char *tracepoint)
{
	union bpf_attr attr;
	long fd;

	memset(&attr, 0, sizeof(attr));
	attr.raw_tracepoint.name = (uint64_t)(uintptr_t)tracepoint;
	attr.raw_tracepoint.prog_fd = (uint32_t)prog_fd;
	fd = up_bpf(BPF_RAW_TRACEPOINT_OPEN, &attr);
	if (fd < 0)
		return -errno;
	/* not inherited by what the worker runs (cyclictest, perf) */
	if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0) {
		int err = -errno;

		close((int)fd);
		return err;
	}
	return (int)fd;
}

int upcall_enable_stats(void)
{
	union bpf_attr attr;
	long fd;

	memset(&attr, 0, sizeof(attr));
	attr.enable_stats.type = BPF_STATS_RUN_TIME;
	fd = up_bpf(BPF_ENABLE_STATS, &attr);
	if (fd < 0)
		return -errno;
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	return (int)fd;
}

static int up_drop_record(void *ctx, const void *data, uint32_t len)
{
	return 0;
}

int upcall_reset_maps(const struct upcall_maps *maps)
{
	struct up_vp *vps = NULL;
	struct up_stages *st = NULL;
	size_t vps_len = 0, st_len = 0;
	struct bpf_ring ring;
	union bpf_attr attr;
	uint32_t key, next;
	int err, n;

	/* every registered tid: delete the first key until none is left */
	for (;;) {
		memset(&attr, 0, sizeof(attr));
		attr.map_fd = (uint32_t)maps->tids_fd;
		attr.key = 0; /* NULL: the first key */
		attr.next_key = (uint64_t)(uintptr_t)&next;
		if (up_bpf(BPF_MAP_GET_NEXT_KEY, &attr) < 0) {
			if (errno == ENOENT)
				break;
			return -errno;
		}
		key = next;
		err = lab_bpf_map_delete_elem(maps->tids_fd, &key);
		if (err && err != -ENOENT)
			return err;
	}
	err = up_map_slots(maps->vps_fd, &vps, &vps_len);
	if (err)
		return err;
	memset(vps, 0, vps_len);
	munmap(vps, vps_len);
	if (maps->stages_fd >= 0) {
		err = up_map_stages(maps->stages_fd, &st, &st_len);
		if (err)
			return err;
		memset(st, 0, st_len);
		munmap(st, st_len);
	}
	err = bpf_ring_open(&ring, maps->ring_fd);
	if (err)
		return err;
	n = bpf_ring_consume(&ring, up_drop_record, NULL);
	bpf_ring_close(&ring);
	return n < 0 ? n : 0;
}

int upcall_program_misses(int prog_fd, uint64_t *misses)
{
	struct bpf_prog_info info;
	int err = lab_bpf_prog_info(prog_fd, &info);

	*misses = err ? 0 : info.recursion_misses;
	return err;
}
