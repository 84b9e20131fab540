/* SPDX-License-Identifier: MIT */
/* Helpers shared by the storage backends (not part of the public API). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "storage/pool.h"

#define POOL_SNAPDIR ".snapshots"
#define POOL_RECVDIR ".recv"

/* MOUNTPOINT/.snapshots/REST (where ds = "zones/REST") and
 * MOUNTPOINT/.snapshots/REST/@SNAP; malloc'ed, NULL on ENOMEM. */
char *pool_snapdir(struct vm_pool *pool, const char *ds);
char *pool_snappath(struct vm_pool *pool, const char *ds, const char *snap);

/* Split "DS@SNAP" into its parts, both checked. */
int pool_split_snapshot(const char *full, char **ret_ds, char **ret_snap, struct vm_error *err);

/* The parent dataset name of ds (malloc'ed), "zones" for "zones/X". */
char *pool_parent_name(const char *ds);

/* Does the directory at path look like a volume (VOLUME_FILE at its top)? */
bool pool_dir_is_volume(const char *path);

/* Sum st_blocks * 512 over the tree at path, not descending into
 * subdirectories for which is_child(dirfd, name, st) is true. */
int pool_tree_allocated(const char *path,
			bool (*is_child)(int dirfd, const char *name, const struct stat *st),
			uint64_t *ret, struct vm_error *err);

/* Snapshot names found as @NAME entries of snapdir, sorted by key (which the
 * backend computes: creation order). */
struct pool_snap_entry {
	char *name;
	uint64_t key1, key2;
};
int pool_list_snapdir(const char *snapdir,
		      int (*key)(int dirfd, const char *name, uint64_t *k1, uint64_t *k2),
		      char ***ret, struct vm_error *err);

/* Free bytes of the filesystem holding path (statvfs f_bavail). */
int pool_statfs_free(const char *path, uint64_t *ret, struct vm_error *err);

/* -ENOSPC with "WHAT DS: pool has X free, needs Y" when size exceeds the
 * pool's available bytes. */
int pool_check_space(struct vm_pool *pool, const char *what, const char *ds, uint64_t size,
		     struct vm_error *err);

/* How a backend tells its datasets from plain directories: the shared
 * implementations below work for any backend whose datasets are directories
 * under the mount point. */
struct pool_dataset_tests {
	bool (*exists)(const char *path); /* path is the root of a dataset */
	bool (*is_child)(int dirfd, const char *name, const struct stat *st);
};

/* May dataset ds (at path) be created? -EEXIST if it exists, -ENOENT if its
 * parent dataset does not. what names the operation in the message. */
int pool_check_new(struct vm_pool *pool, const struct pool_dataset_tests *t, const char *what,
		   const char *ds, const char *path, struct vm_error *err);

/* The rename, kind and used ops, for directory-shaped backends. */
int pool_rename_dataset(struct vm_pool *pool, const struct pool_dataset_tests *t,
			const char *from, const char *to, struct vm_error *err);
enum vm_dataset_kind pool_dataset_kind(struct vm_pool *pool, const struct pool_dataset_tests *t,
				       const char *ds);
int pool_dataset_used(struct vm_pool *pool, const struct pool_dataset_tests *t, const char *ds,
		      uint64_t *ret_used, uint64_t *ret_volsize, struct vm_error *err);

/* "1.2 GiB" style rendering into buf. */
const char *pool_fmt_size(uint64_t bytes, char buf[32]);
