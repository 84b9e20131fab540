/* SPDX-License-Identifier: MIT */
/*
 * Storage pools: where a node keeps its datasets.
 *
 * A dataset has a ZFS-style full name, "POOL/REST": the pool is "zones" and
 * a VM owns "zones/UUID", "zones/UUID/data" (a delegated dataset) and
 * "zones/UUID-disk0" ... (volumes). A dataset of name zones/X lives at
 * MOUNTPOINT/X, where MOUNTPOINT is $VMADM_ROOT/zones. A snapshot is
 * "DATASET@SNAP".
 *
 * A filesystem dataset is a directory tree. A volume (a KVM disk) is a
 * fixed-size sparse raw image file, VOLUME_FILE, inside its dataset's
 * directory, or where a backend has real volumes (OpenZFS zvols) a block
 * device; vm_pool_volume_path() gives its path.
 *
 * A dataset is a volume when its directory holds a regular file VOLUME_FILE
 * at the top (so the kind travels with send/receive and snapshots); any
 * other dataset is a filesystem.
 *
 * In the btrfs and dir pools, snapshots of dataset zones/X are kept at
 * MOUNTPOINT/.snapshots/X/@SNAP (the zfs pool's are ZFS snapshots);
 * names beginning with '.' are reserved for such bookkeeping, so no dataset
 * component and no snapshot name may begin with '.'.
 *
 * Backends (btrfs.c, dir.c, zfs.c) fill struct vm_storage_ops. The
 * vm_pool_* wrappers below validate names and then call the ops; callers use
 * the wrappers, never the ops directly. Where a backend keeps its snapshots
 * is its own business: migration reads one through an fd (open_snapshot),
 * puts a dataset back to one (rollback) or sends it in the pool's native
 * encoding (send, receive, native_encoding).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"
#include "util/macros.h"

#define VM_POOL_NAME "zones"
#define VOLUME_FILE  "disk.raw"
/* dir backend: an empty file in the root directory of every dataset, so that
 * a tree walk knows which subdirectories are child datasets (to be skipped,
 * as ZFS and btrfs snapshots skip them). A received archive may not name it
 * (stream/tree.c), nor VOLUME_FILE at its root. */
#define VM_DATASET_MARKER ".vmadm-dataset"

enum vm_dataset_kind {
	VM_DS_NONE = 0, /* does not exist */
	VM_DS_FILESYSTEM,
	VM_DS_VOLUME,
};

struct vm_pool {
	const struct vm_storage_ops *ops;
	char *name;	  /* "zones" */
	char *root;	  /* the node root */
	char *mountpoint; /* ROOT/zones */
	json_t *conf;	  /* the node config (borrowed reference) */
	void *priv;	  /* backend state */
};

struct pool_dir_ops;

struct vm_storage_ops {
	const char *name; /* "btrfs", "dir", "zfs" */

	/* Make the pool usable: create it on first use (btrfs: a sparse loop file
	 * ROOT/pool.img of conf "pool_size" bytes, or a fraction of free space,
	 * unless ROOT is on btrfs already), mount it at pool->mountpoint, and
	 * create the backend's bookkeeping directories. Idempotent: an already
	 * mounted pool is used as it is. The mount point ends up mode 0700
	 * (pool_restrict_mountpoint), new node or old. On failure nothing it
	 * created is left mounted. */
	int (*open)(struct vm_pool *pool, struct vm_error *err);

	/* Release backend state. Never unmounts: the pool stays for the next
	 * command. May be NULL. */
	void (*close)(struct vm_pool *pool);

	/* Create an empty filesystem dataset. The parent must exist (for
	 * "zones/UUID/data", "zones/UUID"); the name must not. Leaves nothing on
	 * failure. */
	int (*create_filesystem)(struct vm_pool *pool, const char *ds, struct vm_error *err);

	/* Create a volume of exactly size bytes, sparse (reads as zeros). Leaves
	 * nothing on failure; -ENOSPC when the pool cannot hold size. */
	int (*create_volume)(struct vm_pool *pool, const char *ds, uint64_t size,
			     struct vm_error *err);

	/* Create ds as a writable copy of snapshot snap ("zones/IMG@final"),
	 * sharing blocks where the backend can (btrfs snapshot, reflink). The
	 * new dataset has the kind of the snapshot's dataset. For a volume,
	 * size_or_0 grows it to that size if larger. Leaves nothing on failure. */
	int (*clone)(struct vm_pool *pool, const char *snap, const char *ds, uint64_t size_or_0,
		     struct vm_error *err);

	/* Take a read-only snapshot ds@name of one dataset (not its children). */
	int (*snapshot)(struct vm_pool *pool, const char *ds, const char *name,
			struct vm_error *err);

	/* List the snapshot names (without "ds@") of ds, oldest first, as a
	 * NULL-terminated vector. */
	int (*list_snapshots)(struct vm_pool *pool, const char *ds, char ***ret,
			      struct vm_error *err);

	/* Destroy one snapshot. A missing snapshot is -ENOENT. */
	int (*destroy_snapshot)(struct vm_pool *pool, const char *ds, const char *name,
				struct vm_error *err);

	/* Destroy a dataset and its snapshots; with recursive, its child
	 * datasets too (else -EBUSY if it has any). A missing dataset is
	 * -ENOENT. */
	int (*destroy)(struct vm_pool *pool, const char *ds, bool recursive, struct vm_error *err);

	/* Rename a dataset (with its snapshots and children). The target must
	 * not exist. Atomic: on failure the old name still holds everything. */
	int (*rename)(struct vm_pool *pool, const char *from, const char *to, struct vm_error *err);

	/* What kind ds is, VM_DS_NONE when it does not exist. */
	enum vm_dataset_kind (*kind)(struct vm_pool *pool, const char *ds);

	/* Bytes ds uses in the pool (allocated blocks of its files, children
	 * not included; blocks shared with snapshots or clones count in each).
	 * For a volume also its logical size (ret_volsize, 0 for a
	 * filesystem; may be NULL). */
	int (*used)(struct vm_pool *pool, const char *ds, uint64_t *ret_used, uint64_t *ret_volsize,
		    struct vm_error *err);

	/* Bytes still free in the pool. */
	int (*available)(struct vm_pool *pool, uint64_t *ret, struct vm_error *err);

	/* Limit what dataset ds and its children hold together to bytes (0:
	 * no limit), enforced by the pool: a write past it fails (EDQUOT).
	 * NULL where the pool cannot enforce one: a VM's quota is then kept
	 * and shown, not enforced. */
	int (*set_quota)(struct vm_pool *pool, const char *ds, uint64_t bytes,
			 struct vm_error *err);

	/* Native send: write the backend's own stream of snapshot ds@snap to fd,
	 * incremental from ds@from_snap when from_snap is not NULL. Fails with
	 * the tool's stderr if the tool fails; never reports success on a
	 * partial stream. NULL when the backend has no native stream. */
	int (*send)(struct vm_pool *pool, const char *ds, const char *snap, const char *from_snap,
		    int fd, struct vm_error *err);

	/* Native receive from fd of a stream produced by send(): the data lands
	 * under a temporary name and becomes dataset ds, with snapshot ds@snap,
	 * only when the whole stream was taken; an incremental stream applies on
	 * top of the existing ds@from_snap, and ds then becomes a writable copy
	 * of ds@snap (changes made to ds since from_snap are dropped, as with
	 * `zfs receive -F`; its child datasets stay). For a full stream ds must
	 * not exist. On failure nothing new is left (no temporary name) and an
	 * existing ds is as it was. NULL when the backend has no native stream. */
	int (*receive)(struct vm_pool *pool, const char *ds, const char *snap,
		       const char *from_snap, int fd, struct vm_error *err);

	/* Resumable native receives, where the pool keeps the state of a cut
	 * one (OpenZFS's `zfs receive -s`; not zfs-fuse). NULL where no pool of
	 * this backend can; a pool of it that cannot behaves as receive().
	 *
	 * As receive(), except that a receive cut by the end of its input (a
	 * link or sender lost: the stream ended early, nothing refused) keeps
	 * what it took: it fails with -EAGAIN, and *ret_token (malloc'ed) is
	 * the token of that state, which stays with ds until a resumed receive
	 * finishes it or receive_cleanup() drops it. With token (the one an
	 * earlier cut receive of ds@snap gave, which the caller kept), fd
	 * carries the rest of that stream (the peer's send_resume) and the
	 * receive goes on from where it was cut; ds must still hold that
	 * state. A refused stream or any other failure leaves nothing, as
	 * receive(). */
	int (*receive_resumable)(struct vm_pool *pool, const char *ds, const char *snap,
				 const char *from_snap, const char *token, int fd, char **ret_token,
				 struct vm_error *err);

	/* The rest of the native stream of ds@snap (incremental from
	 * from_snap) whose receive was cut at token (the receiver's, so a
	 * peer's word): refused (-EINVAL) unless token is well formed and
	 * names exactly that snapshot and base here; then written to fd as
	 * send() writes. NULL where receive_resumable is. */
	int (*send_resume)(struct vm_pool *pool, const char *ds, const char *snap,
			   const char *from_snap, const char *token, int fd, struct vm_error *err);

	/* Remove what a receive into ds (a temporary name the receive made)
	 * killed in the middle (SIGKILL: no chance to clean up) or refused
	 * left behind that destroy() would not find: a btrfs receive()'s
	 * staging directory; for the dir pool, ds's directory if it is no
	 * dataset (no marker: killed between mkdir and marker) and its
	 * snapshots; the kept state of a cut resumable receive into ds
	 * (receive_resumable). A dataset ds is not touched, and ds need not exist. 0
	 * when nothing was left. Must not run while a receive of ds is in
	 * progress. NULL when a receive leaves nothing of its own. */
	int (*receive_cleanup)(struct vm_pool *pool, const char *ds, struct vm_error *err);

	/* Open what snapshot ds@snap holds, for the portable encodings, which
	 * read a snapshot only through this fd: for a filesystem a directory
	 * (O_RDONLY | O_DIRECTORY) on the root of its tree, for a volume its
	 * image read-only (a regular file or a block device). The tree holds
	 * no child dataset (where one is mounted in the dataset, the tree may
	 * show an empty directory). The caller closes the fd and does not
	 * destroy the snapshot meanwhile. -ENOENT when it does not exist.
	 * A portable delta opens its two ends so, two snapshots of one dataset:
	 * it reads less where they share inodes and extents (btrfs snapshots,
	 * reflinked copies), and is right where they do not. */
	int (*open_snapshot)(struct vm_pool *pool, const char *ds, const char *snap, int *ret_fd,
			     struct vm_error *err);

	/* What snapshot ds@snap takes, as the pool counts it, learnt without
	 * opening it: its data uncompressed and its metadata, a bound of what
	 * a full send() of it carries. For a native send, which needs no
	 * open_snapshot() but this measure. NULL where opening a snapshot is
	 * cheap (the caller measures the tree or image open_snapshot gives).
	 * -ENOENT when the snapshot does not exist. */
	int (*snapshot_used)(struct vm_pool *pool, const char *ds, const char *snap, uint64_t *ret,
			     struct vm_error *err);

	/* Put dataset ds back to what its snapshot ds@snap holds, in place:
	 * what a receive changed over a kept snapshot since (an incremental
	 * pass that failed or was killed half-way) is undone. ds keeps its
	 * name, its snapshots and its child datasets. Snapshots taken after
	 * snap are the caller's to destroy first. On failure ds may be half
	 * put back; calling it again finishes the work. */
	int (*rollback)(struct vm_pool *pool, const char *ds, const char *snap,
			struct vm_error *err);

	/* Where volume ds's image is (malloc'ed, NULL on ENOMEM), when the
	 * backend keeps some volumes elsewhere than the generic file
	 * MOUNTPOINT/X/VOLUME_FILE: an OpenZFS zvol's block device. For a ds
	 * that does not exist yet, where create_volume would put it. NULL: the
	 * generic file, always. */
	char *(*volume_path)(struct vm_pool *pool, const char *ds);

	/* The name of the encoding send() writes and receive() takes, as the
	 * migration stream and protocol call it ("btrfs"; a ZFS backend's
	 * "zfs"); NULL when the backend has no native stream (then send and
	 * receive are NULL too). Migration asks the pool by this name
	 * (vm_pool_native_encoding, vm_pool_speaks) and never assumes one. */
	const char *native_encoding;

	/* Backends whose datasets are directories under the mount point: the
	 * few steps they take their own way (storage/pool-private.h), for the
	 * shared ops they point to; NULL for others. */
	const struct pool_dir_ops *dir;
};

/* Open the pool of the node whose root and config are given: the backend is
 * VMADM_POOL_TYPE, else conf "pool_type", else "btrfs". */
int vm_pool_open(const char *root, json_t *conf, struct vm_pool **ret, struct vm_error *err);
void vm_pool_free(struct vm_pool *pool);
DEFINE_CLEANUP(struct vm_pool, vm_pool_free)

/* Backend ops by name, NULL if unknown. */
const struct vm_storage_ops *vm_storage_ops_by_name(const char *name);

/* Check a dataset name: "zones/..." components of [A-Za-z0-9_.:-], none
 * beginning with '.' (so never "." or ".."), no empty component, at most 255
 * chars. Returns 0 or -EINVAL with a message naming it. */
int vm_dataset_name_check(const char *ds, struct vm_error *err);

/* Check a snapshot name (the part after '@'): non-empty, [A-Za-z0-9_.:-],
 * not beginning with '.', at most 200 chars. 0 or -EINVAL. */
int vm_snapshot_name_check(const char *snap, struct vm_error *err);

/* Path of dataset ds in the pool (malloc'ed), and of a volume's image file. */
char *vm_pool_dataset_path(struct vm_pool *pool, const char *ds);
char *vm_pool_volume_path(struct vm_pool *pool, const char *ds);

/* Wrappers that check names and call the ops. Same contracts as the ops. */
int vm_pool_create_filesystem(struct vm_pool *pool, const char *ds, struct vm_error *err);
int vm_pool_create_volume(struct vm_pool *pool, const char *ds, uint64_t size,
			  struct vm_error *err);
int vm_pool_clone(struct vm_pool *pool, const char *snap, const char *ds, uint64_t size_or_0,
		  struct vm_error *err);
int vm_pool_snapshot(struct vm_pool *pool, const char *ds, const char *name, struct vm_error *err);
int vm_pool_list_snapshots(struct vm_pool *pool, const char *ds, char ***ret, struct vm_error *err);
/* Does ds exist and have snapshot snap? (false when it cannot be listed) */
bool vm_pool_has_snapshot(struct vm_pool *pool, const char *ds, const char *snap);
int vm_pool_destroy_snapshot(struct vm_pool *pool, const char *ds, const char *name,
			     struct vm_error *err);
int vm_pool_destroy(struct vm_pool *pool, const char *ds, bool recursive, struct vm_error *err);
int vm_pool_rename(struct vm_pool *pool, const char *from, const char *to, struct vm_error *err);
enum vm_dataset_kind vm_pool_kind(struct vm_pool *pool, const char *ds);
int vm_pool_used(struct vm_pool *pool, const char *ds, uint64_t *ret_used, uint64_t *ret_volsize,
		 struct vm_error *err);
int vm_pool_available(struct vm_pool *pool, uint64_t *ret, struct vm_error *err);
/* set_quota where the pool enforces quotas; 0 (nothing done) where not. */
int vm_pool_set_quota(struct vm_pool *pool, const char *ds, uint64_t bytes, struct vm_error *err);
/* Write everything of the pool's filesystem to disk (syncfs): a receive
 * calls it before it reports a VM complete, so that a sender told "done"
 * may delete its copy even if this host loses power a moment later. */
int vm_pool_sync(struct vm_pool *pool, struct vm_error *err);
int vm_pool_send(struct vm_pool *pool, const char *ds, const char *snap, const char *from_snap,
		 int fd, struct vm_error *err);
int vm_pool_receive(struct vm_pool *pool, const char *ds, const char *snap, const char *from_snap,
		    int fd, struct vm_error *err);
int vm_pool_receive_cleanup(struct vm_pool *pool, const char *ds, struct vm_error *err);
/* receive_resumable where the backend has it, else receive() (no token is
 * ever given). */
int vm_pool_receive_resumable(struct vm_pool *pool, const char *ds, const char *snap,
			      const char *from_snap, const char *token, int fd, char **ret_token,
			      struct vm_error *err);
int vm_pool_send_resume(struct vm_pool *pool, const char *ds, const char *snap,
			const char *from_snap, const char *token, int fd, struct vm_error *err);

int vm_pool_open_snapshot(struct vm_pool *pool, const char *ds, const char *snap, int *ret_fd,
			  struct vm_error *err);
int vm_pool_rollback(struct vm_pool *pool, const char *ds, const char *snap, struct vm_error *err);
/* snapshot_used: 1 with *ret set where the pool measures a snapshot
 * itself, 0 (nothing set) where it leaves that to its caller. */
int vm_pool_snapshot_used(struct vm_pool *pool, const char *ds, const char *snap, uint64_t *ret,
			  struct vm_error *err);

/* The pool's native encoding ("btrfs"), NULL when it has none. */
const char *vm_pool_native_encoding(const struct vm_pool *pool);

/* Can the pool send and receive the native encoding called encoding
 * (a stream's or a peer's name for it)? False for NULL and for the
 * portable encodings, which every pool takes through the stream module. */
bool vm_pool_speaks(const struct vm_pool *pool, const char *encoding);

extern const struct vm_storage_ops btrfs_storage_ops;
extern const struct vm_storage_ops dir_storage_ops;
extern const struct vm_storage_ops zfs_storage_ops;
