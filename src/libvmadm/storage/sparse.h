/* SPDX-License-Identifier: MIT */
/*
 * Sparse-aware copying: reflink (FICLONE) where the filesystem shares
 * blocks, else a copy of the data extents only (SEEK_DATA/SEEK_HOLE), so
 * that holes stay holes. Used by the dir pool for snapshots and clones, and
 * by the stream code to iterate the data of a volume.
 */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "util/error.h"

/* Find the first data extent of fd at or after from. Returns 1 and sets
 * [*ret_start, *ret_end) when there is one, 0 when only a hole (or EOF)
 * follows, or a negative errno. A filesystem without SEEK_DATA support
 * reports the whole rest of the file as data. */
int sparse_next_data(int fd, off_t from, off_t *ret_start, off_t *ret_end);

/* Copy the contents of in_fd to out_fd (an empty regular file), sharing
 * blocks with FICLONE when possible, else copying data extents only; out_fd
 * ends with the size of in_fd. what names the file in messages. */
int sparse_copy_fd(int in_fd, int out_fd, const char *what, struct vm_error *err);

/* Copy the tree at src to dst (which must not exist): directories, regular
 * files (as sparse_copy_fd), symlinks, device nodes and fifos, with modes,
 * owners and timestamps; hard links within the tree stay hard links.
 * Subdirectories for which skip(dirfd, name) is true are left out (child
 * datasets). On failure dst is removed. */
int sparse_copy_tree(const char *src, const char *dst,
		     bool (*skip)(int dirfd, const char *name, const struct stat *st),
		     struct vm_error *err);

/* ---- incremental sends (migrate/local/incremental.c) ---- */

#include <stdint.h>

/* The grain of change detection: ranges handed out are multiples of it
 * (except where they end at the file's size). */
#define SPARSE_DIFF_GRAIN (64u << 10)

/* Call fn(start, end, ud) in ascending order for the ranges of [0, size)
 * where the file new_fd may differ from old_fd (an earlier snapshot of the
 * same volume): every range where either file has data, except the parts
 * that both files map to the same physical extents (FIEMAP), which are
 * unchanged, as between a reflinked copy or a btrfs snapshot and its
 * source. Where FIEMAP says nothing (ext4 copies, tmpfs) every data range is
 * handed out and the caller compares contents. Bytes of old_fd past its
 * size count as zeros. *ret_shared (may be NULL) gets the data bytes found
 * shared, i.e. not handed out. fn returning < 0 stops with that value. */
int sparse_changed_ranges(int old_fd, int new_fd, uint64_t size,
			  int (*fn)(uint64_t start, uint64_t end, void *ud), void *ud,
			  uint64_t *ret_shared, struct vm_error *err);

/* Make the existing directory dst hold what the directory src holds:
 * remove its entries (except subdirectories for which skip() is true and
 * mount points of other filesystems, i.e. child datasets), then copy src's
 * entries as sparse_copy_tree does (but none named as a child dataset of
 * dst is: src may hold an empty directory in its place), and src's modes
 * and times onto dst. */
int sparse_reset_tree(const char *src, const char *dst,
		      bool (*skip)(int dirfd, const char *name, const struct stat *st),
		      struct vm_error *err);
