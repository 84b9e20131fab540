/* SPDX-License-Identifier: MIT */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

int vm_lock_file(const char *path, int wait_secs, const char *what, struct vm_error *err)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	struct timespec start, now;

	if (fd < 0)
		return vm_error_set(err, errno, "lock %s: open %s", what, path);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return fd;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			int e = errno;
			close(fd);
			return vm_error_set(err, e, "lock %s", what);
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec >= wait_secs) {
			close(fd);
			return vm_error_setx(err, EBUSY, "%s is busy: another vmadm command holds its lock",
					     what);
		}
		usleep(50 * 1000);
	}
}
