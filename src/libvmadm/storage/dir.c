/* SPDX-License-Identifier: MIT */
/*
 * The dir pool: plain directories on any filesystem, no loop devices.
 *
 *   MOUNTPOINT/X/                   dataset zones/X, with an empty marker file
 *                                   VM_DATASET_MARKER at its top
 *   MOUNTPOINT/X/disk.raw           the image of a volume
 *   MOUNTPOINT/.snapshots/X/@SNAP/  snapshot zones/X@SNAP: a copy of the
 *                                   dataset's tree without its child datasets
 *
 * Snapshots and clones share blocks through FICLONE where the filesystem can
 * (btrfs, xfs), and otherwise are sparse copies; they are read-only by
 * convention only. There is no native send stream: the portable encoding
 * of the stream module covers this backend.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/pool-private.h"
#include "storage/pool.h"
#include "storage/sparse.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"

static bool dir_is_child(int dirfd, const char *name, const struct stat *st)
{
	_cleanup_free_ char *m = strdup_printf("%s/%s", name, VM_DATASET_MARKER);
	return m && faccessat(dirfd, m, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/* A directory (not a symlink to one) with the marker, a regular file. */
static bool dir_ds_exists(const char *path)
{
	_cleanup_free_ char *m = strdup_printf("%s/%s", path, VM_DATASET_MARKER);
	struct stat st;

	return m && lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && lstat(m, &st) == 0 &&
	       S_ISREG(st.st_mode);
}

static int dir_open(struct vm_pool *pool, struct vm_error *err)
{
	_cleanup_free_ char *snaps = strdup_printf("%s/%s", pool->mountpoint, POOL_SNAPDIR);
	int r;

	if (!snaps)
		return vm_error_set(err, ENOMEM, "open pool");
	r = fs_mkdir_p(pool->mountpoint, 0700, err);
	if (r >= 0)
		r = pool_restrict_mountpoint(pool, err);
	if (r >= 0)
		r = fs_mkdir_p(snaps, 0700, err);
	if (r < 0)
		return vm_error_prefix(err, "open dir pool");
	return 0;
}

static int write_marker(const char *path, struct vm_error *err)
{
	_cleanup_free_ char *m = strdup_printf("%s/%s", path, VM_DATASET_MARKER);
	_cleanup_close_ int fd = -1;

	if (!m)
		return vm_error_set(err, ENOMEM, "create %s", path);
	fd = open(m, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return vm_error_set(err, errno, "create %s", m);
	return 0;
}

static int make_marked_dir(const char *path, struct vm_error *err)
{
	struct vm_error e2;
	int r;

	if (mkdir(path, 0755) < 0)
		return vm_error_set(err, errno, "mkdir %s", path);
	r = write_marker(path, err);
	if (r < 0)
		fs_rm_rf(path, &e2);
	return r;
}

/* Remove a dataset (or a snapshot: a copy with the marker) with its marker
 * last, so that a removal stopped half-way leaves a dataset that is still
 * one, for the next destroy to finish, not an unmarked directory nothing
 * would look at again. */
static int remove_marked(const char *path, struct vm_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r;

	if (fd < 0)
		return fs_rm_rf(path, err); /* gone, or not a directory */
	d = fdopendir(fd);
	if (!d)
		return vm_error_set(err, errno, "remove %s", path);
	TAKE_FD(fd);
	while ((errno = 0, de = readdir(d))) {
		_cleanup_free_ char *sub = NULL;

		if (streq(de->d_name, ".") || streq(de->d_name, "..") ||
		    streq(de->d_name, VM_DATASET_MARKER))
			continue;
		sub = strdup_printf("%s/%s", path, de->d_name);
		if (!sub)
			return vm_error_set(err, ENOMEM, "remove %s", path);
		r = fs_rm_rf(sub, err);
		if (r < 0)
			return r;
	}
	if (errno)
		return vm_error_set(err, errno, "read %s", path);
	return fs_rm_rf(path, err);
}

static int copy_dataset(const char *path, const char *spath, struct vm_error *err)
{
	return sparse_copy_tree(path, spath, dir_is_child, err);
}

/* A clone is a copy of the snapshot (blocks shared where the filesystem
 * can), with the marker a snapshot of a dataset has already. */
static int clone_dataset(const char *spath, const char *path, struct vm_error *err)
{
	struct vm_error e2;
	int r;

	r = sparse_copy_tree(spath, path, NULL, err);
	if (r < 0)
		return r;
	if (!dir_ds_exists(path)) {
		r = write_marker(path, err);
		if (r < 0)
			fs_rm_rf(path, &e2);
	}
	return r;
}

static int dir_snap_key(int dirfd, const char *name, uint64_t *k1, uint64_t *k2);

static const struct pool_dir_ops dir_ds = {
    .exists = dir_ds_exists,
    .is_child = dir_is_child,
    .make = make_marked_dir,
    .remove = remove_marked,
    .copy = copy_dataset,
    .clone = clone_dataset,
    .snap_exists = fs_is_dir,
    .snap_key = dir_snap_key,
};

/* Creation order: birth time where the filesystem keeps one, else ctime. */
static int dir_snap_key(int dirfd, const char *name, uint64_t *k1, uint64_t *k2)
{
	struct statx stx;

	if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW, STATX_BTIME | STATX_CTIME, &stx) < 0)
		return -errno;
	if (stx.stx_mask & STATX_BTIME) {
		*k1 = stx.stx_btime.tv_sec;
		*k2 = stx.stx_btime.tv_nsec;
	} else {
		*k1 = stx.stx_ctime.tv_sec;
		*k2 = stx.stx_ctime.tv_nsec;
	}
	return 0;
}

/* First child dataset name of the dataset at path, or NULL. */
static char *first_child(const char *path)
{
	_cleanup_closedir_ DIR *d = opendir(path);
	struct dirent *de;

	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.' || de->d_type != DT_DIR)
			continue;
		if (dir_is_child(dirfd(d), de->d_name, NULL))
			return strdup(de->d_name);
	}
	return NULL;
}

static int dir_destroy(struct vm_pool *pool, const char *ds, bool recursive,
		       struct vm_error *err)
{
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, ds);
	_cleanup_free_ char *sdir = pool_snapdir(pool, ds);
	_cleanup_free_ char *child = NULL;
	int r;

	if (!path || !sdir)
		return vm_error_set(err, ENOMEM, "destroy %s", ds);
	if (!dir_ds_exists(path))
		return vm_error_setx(err, ENOENT, "destroy %s: dataset does not exist", ds);
	if (!recursive && (child = first_child(path)))
		return vm_error_setx(err, EBUSY,
				     "destroy %s: has child dataset %s/%s (destroy recursively)",
				     ds, ds, child);
	r = fs_rm_rf(sdir, err);
	if (r >= 0)
		r = remove_marked(path, err);
	if (r < 0)
		return vm_error_prefix(err, "destroy %s", ds);
	return 0;
}

/* A receive of ds (a temporary name) that stopped between its mkdir and
 * its marker, or whose data took the marker away, left a directory that is
 * no dataset: nothing else would ever remove it, and it would block the
 * name for good. The dir pool has no receive() of its own; this is what is
 * left of a portable receive. */
static int dir_receive_cleanup(struct vm_pool *pool, const char *ds, struct vm_error *err)
{
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, ds);
	_cleanup_free_ char *sdir = pool_snapdir(pool, ds);
	struct stat st;
	int r;

	if (!path || !sdir)
		return vm_error_set(err, ENOMEM, "clean up the receive of %s", ds);
	if (dir_ds_exists(path))
		return 0;
	if (lstat(path, &st) == 0) {
		vm_debug("removing %s, left by a receive of %s without its dataset marker", path,
			 ds);
		r = fs_rm_rf(path, err);
		if (r < 0)
			return vm_error_prefix(err, "clean up the receive of %s", ds);
	}
	if (lstat(sdir, &st) == 0) {
		r = fs_rm_rf(sdir, err);
		if (r < 0)
			return vm_error_prefix(err, "clean up the receive of %s", ds);
	}
	return 0;
}

static int dir_available(struct vm_pool *pool, uint64_t *ret, struct vm_error *err)
{
	return pool_statfs_free(pool->mountpoint, ret, err);
}

const struct vm_storage_ops dir_storage_ops = {
    .name = "dir",
    .open = dir_open,
    .close = NULL,
    .create_filesystem = pool_dir_create_filesystem,
    .create_volume = pool_dir_create_volume,
    .clone = pool_dir_clone,
    .snapshot = pool_dir_snapshot,
    .list_snapshots = pool_dir_list_snapshots,
    .destroy_snapshot = pool_dir_destroy_snapshot,
    .destroy = dir_destroy,
    .rename = pool_rename_dataset,
    .open_snapshot = pool_dir_open_snapshot,
    .rollback = pool_dir_rollback,
    .kind = pool_dataset_kind,
    .used = pool_dataset_used,
    .available = dir_available,
    .send = NULL,
    .receive = NULL,
    .receive_cleanup = dir_receive_cleanup,
    .dir = &dir_ds,
    .native_encoding = NULL,
};
