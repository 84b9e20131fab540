/* SPDX-License-Identifier: MIT */
/* File helpers: atomic writes, whole-file reads, recursive mkdir/remove. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

/* Write data to path atomically: a temp file beside it, fsync, rename, fsync
 * of the directory. On failure path is unchanged and no temp file is left. */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    struct vm_error *err);

/* Read a whole file (at most max bytes) into a NUL-terminated buffer. */
int fs_read_file(const char *path, size_t max, char **ret, size_t *ret_len,
		 struct vm_error *err);

/* mkdir -p with the given mode for the directories it creates. */
int fs_mkdir_p(const char *path, mode_t mode, struct vm_error *err);

/* rm -rf that stays on one filesystem and does not follow symlinks.
 * A missing path is success. */
int fs_rm_rf(const char *path, struct vm_error *err);

/* write(2)/read(2) loops. fs_write_all fails with -EPIPE on a closed pipe.
 * fs_read_full returns the number of bytes read, short only at EOF. */
int fs_write_all(int fd, const void *buf, size_t len);
ssize_t fs_read_full(int fd, void *buf, size_t len);

bool fs_exists(const char *path);
bool fs_is_dir(const char *path);

/* Is path a mount point (its device differs from its parent's, or it is
 * listed as a mount point in /proc/self/mountinfo)? */
bool fs_is_mountpoint(const char *path);

/* printf into a malloc'ed string; NULL on ENOMEM. */
char *strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
