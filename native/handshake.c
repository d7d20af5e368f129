/*
 * The worker's side of the runner handshake (see struct lab_handshake).
 *
 * Why a handshake and not a sleep: the probes must be armed on the worker's
 * pids before the first measured operation and read before teardown, so
 * per-operation counts cover exactly the measured window.  The messages are
 * short lines on two pipes; their own read/write system calls are the
 * "small constant" the probe tests allow.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static int write_line(int fd, const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, line, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		line += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read one line and check it is the expected word. */
static int expect_line(int fd, const char *word)
{
	char buf[32];
	size_t len = 0;

	while (len < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + len, 1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE; /* runner went away */
		if (buf[len] == '\n')
			break;
		len++;
	}
	buf[len] = '\0';
	return strcmp(buf, word) == 0 ? 0 : -EPROTO;
}

int lab_handshake_ready(struct lab_handshake *hs, const int *extra_tgids,
			int nr_extra)
{
	char line[512];
	int len, i, err;

	if (hs->ready_fd >= 0) {
		len = snprintf(line, sizeof(line), "ready %d", (int)getpid());
		for (i = 0; i < nr_extra && len < (int)sizeof(line) - 16; i++)
			len += snprintf(line + len, sizeof(line) - len, " %d",
					extra_tgids[i]);
		line[len++] = '\n';
		err = write_line(hs->ready_fd, line, (size_t)len);
		if (err)
			return err;
		err = expect_line(hs->go_fd, "go");
		if (err)
			return err;
	}
	hs->window_begin_ns = now_ns();
	return 0;
}

int lab_handshake_done(struct lab_handshake *hs)
{
	int err;

	hs->window_end_ns = now_ns();
	if (hs->ready_fd < 0)
		return 0;
	err = write_line(hs->ready_fd, "done\n", 5);
	if (err)
		return err;
	return expect_line(hs->go_fd, "ack");
}
