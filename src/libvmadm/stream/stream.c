/* SPDX-License-Identifier: MIT */
/* Native pass-through: pumps between an fd (btrfs send/receive) and records. */
#include "stream/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stream/stream-private.h"
#include "util/fs.h"
#include "util/macros.h"

void stream_pipe_grow(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) &&
	    fcntl(fd, F_GETPIPE_SZ) < (int)STREAM_CHUNK_MAX)
		(void)fcntl(fd, F_SETPIPE_SZ, (int)STREAM_CHUNK_MAX);
}

int stream_pump_fd_to_records(struct stream_writer *w, int fd, struct vm_error *err)
{
	uint64_t total = 0;
	int r;

	for (;;) {
		void *buf;
		size_t room;
		ssize_t n;

		/* straight into the writer's chunk: no copy through a buffer */
		r = stream_writer_space(w, &buf, &room, err);
		if (r < 0)
			return r;
		/* a pipe gives what it has; read() rather than fill the chunk, so
		 * records go out as the producer writes */
		n = read(fd, buf, room);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vm_error_set(err, errno, "read the dataset's data after %llu bytes",
					    (unsigned long long)total);
		}
		if (n == 0)
			return 0;
		r = stream_writer_commit(w, n, err);
		if (r < 0)
			return r;
		total += n;
	}
}

int stream_pump_records_to_fd(struct stream_reader *r, int fd, struct vm_error *err)
{
	uint64_t total = 0;

	for (;;) {
		const void *buf;
		size_t len;
		int k = stream_read_chunk(r, &buf, &len, err);

		if (k <= 0)
			return k;
		k = fs_write_all(fd, buf, len);
		if (k == -EPIPE)
			return vm_error_setx(err, EPIPE,
					     "receive %s: the receiving program closed its input "
					     "after %llu bytes",
					     stream_reader_dataset_name(r),
					     (unsigned long long)total);
		if (k < 0)
			return vm_error_set(err, k, "receive %s: write after %llu bytes",
					    stream_reader_dataset_name(r),
					    (unsigned long long)total);
		total += len;
	}
}
