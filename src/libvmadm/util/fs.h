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
int fs_read_file(const char *path, size_t max, char **ret, size_t *ret_len, struct vm_error *err);

/* mkdir -p with the given mode for the directories it creates. */
int fs_mkdir_p(const char *path, mode_t mode, struct vm_error *err);

/* rm -rf that stays on one mount and does not follow symlinks (only the
 * directories above path are looked up as usual). A missing path is
 * success. Nothing a tree can hold defeats it: immutable and append-only
 * flags are cleared where they stop a removal, modes do not matter to root,
 * btrfs subvolumes in the tree go like directories (made writable first if
 * read-only), and the depth of a tree costs heap memory, neither stack nor a
 * file descriptor per level. */
int fs_rm_rf(const char *path, struct vm_error *err);
/* The same for the entry name of the directory dfd. */
int fs_rm_rf_at(int dfd, const char *name, struct vm_error *err);

/* Clear the immutable and append-only flags (FS_IOC_SETFLAGS) of the file
 * or directory open as fd: 1 if it had one, 0 if not (or the filesystem has
 * no such flags), negative errno on failure. Needs CAP_LINUX_IMMUTABLE. */
int fs_clear_nochange_flags(int fd);

/* write(2)/read(2) loops. fs_write_all fails with -EPIPE on a closed pipe.
 * fs_read_full returns the number of bytes read, short only at EOF. */
int fs_write_all(int fd, const void *buf, size_t len);
ssize_t fs_read_full(int fd, void *buf, size_t len);
/* Move len bytes from in to out without copying them (splice(2): one of
 * them a pipe): the number moved, short only at the end of in; -EINVAL
 * (nothing moved) when neither is a pipe, -EPIPE when out's reader is
 * gone, another negative errno on other failures. */
ssize_t fs_splice_full(int in, int out, size_t len);

bool fs_exists(const char *path);
bool fs_is_dir(const char *path);

/* Is path a mount point (its device differs from its parent's, or it is
 * listed as a mount point in /proc/self/mountinfo)? */
bool fs_is_mountpoint(const char *path);

/* printf into a malloc'ed string; NULL on ENOMEM. */
char *strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A volume's image is a regular file (btrfs, dir, zfs-fuse) or a block
 * device (an OpenZFS zvol). fs_image_size: its size in bytes; -EINVAL for
 * anything else. fs_image_resize: make it size bytes (a file is truncated
 * or extended; a block device's size cannot change: -EINVAL unless it is
 * size already). fs_image_clear: make it all zeros of size bytes (a file:
 * all holes; a block device of that size: its blocks discarded, or written
 * as zeros where it cannot discard). */
int fs_image_size(int fd, uint64_t *ret);
int fs_image_resize(int fd, uint64_t size);
int fs_image_clear(int fd, uint64_t size);

/* Open a volume's image at path without following a symlink (an image in a
 * dataset is the dataset's file, never a link a stream made), except for a
 * block device's stable name under /dev (/dev/zvol/POOL/X, a link udev
 * made): there the link is followed and the target must be a block device.
 * -errno on failure. */
int fs_open_image(const char *path, int flags);
