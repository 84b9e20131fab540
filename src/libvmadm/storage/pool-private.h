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

/* Make the pool's mount point mode 0700 (if it is not), so that no local
 * user reaches what VMs keep in their datasets: setuid-root programs,
 * device nodes and file capabilities are the guests' (a container needs
 * them), and a user who could run or open them from the host would be
 * root. Root (QEMU, LXC, vmadm) needs no mode bits. Backends call it from
 * open(), after the pool is mounted. */
int pool_restrict_mountpoint(struct vm_pool *pool, struct vm_error *err);

/* Create a new pool's sparse image file img under the node root (btrfs's
 * loop file, zfs's vdev), mode 0600, not there before: conf "pool_size"
 * bytes, else a fifth of the free space of ROOT's filesystem within
 * [5 GiB, 30 GiB] (never more than is free). -ENOSPC when below min, which
 * fs (the filesystem's name) needs. On failure no file is left. */
int pool_image_create(struct vm_pool *pool, const char *img, uint64_t min, const char *fs,
		      struct vm_error *err);

/* A volume's image: create file (not existing) as a sparse file of exactly
 * size bytes; grow file to size_or_0 when that is larger than it is (0:
 * keep), -ENOSPC when the pool cannot hold the growth. Nothing is removed
 * on failure: the caller removes the dataset. */
int pool_volume_file_create(const char *file, uint64_t size, struct vm_error *err);
int pool_volume_file_grow(struct vm_pool *pool, const char *ds, const char *file,
			  uint64_t size_or_0, struct vm_error *err);

/* The checked feed of a native receive tool: read a stream from in and
 * write to out (the tool's stdin) only what passed the backend's checks,
 * up to the stream's end. 0 at the end; -EPIPE (no message needed) when the
 * tool stopped reading; another -errno, with err saying why, when the
 * stream was refused or could not be read. */
typedef int pool_feed_fn(void *ctx, int in, int out, struct vm_error *err);

/* Run a native receive tool (argv; name names it in messages: "btrfs
 * receive") on a pipe that feed(ctx, in, PIPE) fills. A stream the feed
 * refuses kills the tool (SIGKILL) before it sees the end of its input, so
 * that it cannot finish a dataset from what it has. On failure err says
 * why: the feed's reason, or the tool's exit and its stderr (the last KiB,
 * one line, a first line beginning with noise dropped; noise may be NULL).
 * 0 when the feed reached the end and the tool exited 0. */
int pool_run_fed(const char *const *argv, const char *name, const char *noise, int in,
		 pool_feed_fn *feed, void *ctx, struct vm_error *err);

/* Free bytes of the filesystem holding path (statvfs f_bavail). */
int pool_statfs_free(const char *path, uint64_t *ret, struct vm_error *err);

/* -ENOSPC with "WHAT DS: pool has X free, needs Y" when size exceeds the
 * pool's available bytes. */
int pool_check_space(struct vm_pool *pool, const char *what, const char *ds, uint64_t size,
		     struct vm_error *err);

/* What a backend whose datasets are directories under the mount point
 * (btrfs subvolumes, dir's marked directories) does its own way: the shared
 * implementations below do the rest (names, checks, snapshot directories,
 * volume files, cleanup on failure). */
struct pool_dir_ops {
	bool (*exists)(const char *path); /* path is the root of a dataset */
	bool (*is_child)(int dirfd, const char *name, const struct stat *st);
	/* Make path the root of a new, empty dataset (mode 0755); leave
	 * nothing on failure. */
	int (*make)(const char *path, struct vm_error *err);
	/* Remove a dataset root or a snapshot made by make or copy. */
	int (*remove)(const char *path, struct vm_error *err);
	/* Make snapshot spath (not existing) a read-only copy of the dataset
	 * at path, without its child datasets; leave nothing on failure. */
	int (*copy)(const char *path, const char *spath, struct vm_error *err);
	/* Make path (not existing) a new dataset, a writable copy of the
	 * snapshot at spath; leave nothing on failure. */
	int (*clone)(const char *spath, const char *path, struct vm_error *err);
	/* Is spath a snapshot made by copy? */
	bool (*snap_exists)(const char *spath);
	/* The snapshots' creation order (see pool_list_snapdir). */
	int (*snap_key)(int dirfd, const char *name, uint64_t *k1, uint64_t *k2);
};

/* May dataset ds (at path) be created? -EEXIST if it exists, -ENOENT if its
 * parent dataset does not. what names the operation in the message. */
int pool_check_new(struct vm_pool *pool, const struct pool_dir_ops *t, const char *what,
		   const char *ds, const char *path, struct vm_error *err);

/* Storage ops for directory-shaped backends, which point their ops table
 * at them and set its dir member. */
int pool_dir_create_filesystem(struct vm_pool *pool, const char *ds, struct vm_error *err);
int pool_dir_create_volume(struct vm_pool *pool, const char *ds, uint64_t size,
			   struct vm_error *err);
int pool_dir_clone(struct vm_pool *pool, const char *snap, const char *ds, uint64_t size_or_0,
		   struct vm_error *err);
int pool_dir_snapshot(struct vm_pool *pool, const char *ds, const char *name, struct vm_error *err);
int pool_dir_list_snapshots(struct vm_pool *pool, const char *ds, char ***ret,
			    struct vm_error *err);
int pool_dir_destroy_snapshot(struct vm_pool *pool, const char *ds, const char *name,
			      struct vm_error *err);
int pool_dir_open_snapshot(struct vm_pool *pool, const char *ds, const char *snap, int *ret_fd,
			   struct vm_error *err);
int pool_dir_rollback(struct vm_pool *pool, const char *ds, const char *snap, struct vm_error *err);
int pool_rename_dataset(struct vm_pool *pool, const char *from, const char *to,
			struct vm_error *err);
enum vm_dataset_kind pool_dataset_kind(struct vm_pool *pool, const char *ds);
int pool_dataset_used(struct vm_pool *pool, const char *ds, uint64_t *ret_used,
		      uint64_t *ret_volsize, struct vm_error *err);
