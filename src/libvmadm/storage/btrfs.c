/* SPDX-License-Identifier: MIT */
/*
 * The btrfs pool.
 *
 *   ROOT/pool.img                   sparse loop file holding the pool, unless
 *                                   ROOT is on btrfs already
 *   MOUNTPOINT (ROOT/zones)         the pool's btrfs (mounted with -o loop,
 *                                   which sets autoclear on the loop device)
 *   MOUNTPOINT/X                    dataset zones/X: a subvolume; child
 *                                   datasets are nested subvolumes
 *   MOUNTPOINT/X/disk.raw           a volume's sparse image
 *   MOUNTPOINT/.snapshots/X/@SNAP   snapshot zones/X@SNAP: read-only snapshot
 *   MOUNTPOINT/.recv/X.RANDOM/      where `btrfs receive` of zones/X writes (a
 *                                   '/' in X as '%'), so that a stream becomes
 *                                   visible only once complete, and what a
 *                                   killed receive left can be found by name
 *
 * Subvolumes are made and removed with the ioctls of linux/btrfs.h; send and
 * receive run the btrfs tool through the spawn helper.
 *
 * used() sums st_blocks over the dataset's tree, so blocks shared with
 * snapshots or clones are counted in each (no qgroups needed; an upper bound
 * of what destroying the dataset would free).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "storage/pool-private.h"
#include "storage/pool.h"
#include "util/fs.h"
#include "util/lock.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/spawn.h"

#define GiB (1024ULL * 1024 * 1024)
#define POOL_IMAGE "pool.img"
#define POOL_MIN_SIZE (256ULL * 1024 * 1024)

/* ---- subvolume primitives ---- */

static bool is_subvol_st(const struct stat *st)
{
	return S_ISDIR(st->st_mode) && st->st_ino == BTRFS_FIRST_FREE_OBJECTID;
}

static bool is_subvol(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 && is_subvol_st(&st);
}

static bool btrfs_is_child(int dirfd, const char *name, const struct stat *st)
{
	return st && is_subvol_st(st);
}

/* Open the parent directory of path and point *ret_base at its last
 * component. */
static int open_parent(const char *path, const char **ret_base, struct vm_error *err)
{
	_cleanup_free_ char *dir = strdup(path);
	const char *slash = strrchr(path, '/');
	int fd;

	if (!dir || !slash)
		return vm_error_setx(err, EINVAL, "%s: not an absolute path", path);
	dir[slash - path] = '\0';
	fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return vm_error_set(err, errno, "open %s", dir);
	if (strlen(slash + 1) >= BTRFS_PATH_NAME_MAX) {
		close(fd);
		return vm_error_setx(err, ENAMETOOLONG, "%s: name too long", path);
	}
	*ret_base = slash + 1;
	return fd;
}

/* The ioctl BTRFS_IOC_SUBVOL_CREATE on the parent directory. */
static int subvol_create(const char *path, struct vm_error *err)
{
	struct btrfs_ioctl_vol_args args = { 0 };
	_cleanup_close_ int pfd = -1;
	const char *base;

	pfd = open_parent(path, &base, err);
	if (pfd < 0)
		return pfd;
	strncpy(args.name, base, sizeof(args.name) - 1);
	if (ioctl(pfd, BTRFS_IOC_SUBVOL_CREATE, &args) < 0)
		return vm_error_set(err, errno, "create subvolume %s", path);
	return 0;
}

/* BTRFS_IOC_SNAP_CREATE_V2: dst (not existing) becomes a snapshot of src. */
static int snap_create(const char *src, const char *dst, bool readonly, struct vm_error *err)
{
	struct btrfs_ioctl_vol_args_v2 args = { 0 };
	_cleanup_close_ int pfd = -1, sfd = -1;
	const char *base;

	sfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sfd < 0)
		return vm_error_set(err, errno, "open %s", src);
	pfd = open_parent(dst, &base, err);
	if (pfd < 0)
		return pfd;
	args.fd = sfd;
	args.flags = readonly ? BTRFS_SUBVOL_RDONLY : 0;
	strncpy(args.name, base, sizeof(args.name) - 1);
	if (ioctl(pfd, BTRFS_IOC_SNAP_CREATE_V2, &args) < 0)
		return vm_error_set(err, errno, "snapshot %s to %s", src, dst);
	return 0;
}

static int rm_tree(const char *path, struct vm_error *err);

/* Remove every nested subvolume below the subvolume or directory at path
 * (without removing path itself or plain files). */
static int rm_nested_subvols(const char *path, struct vm_error *err)
{
	_cleanup_closedir_ DIR *d = opendir(path);
	struct dirent *de;
	int r;

	if (!d)
		return vm_error_set(err, errno, "open %s", path);
	while ((errno = 0, de = readdir(d))) {
		_cleanup_free_ char *sub = NULL;
		struct stat st;

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		sub = strdup_printf("%s/%s", path, de->d_name);
		if (!sub)
			return vm_error_set(err, ENOMEM, "remove %s", path);
		r = is_subvol_st(&st) ? rm_tree(sub, err) : rm_nested_subvols(sub, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The kernel will not delete a subvolume whose root is immutable or
 * append-only, nor one in such a directory (EPERM): clear those flags, on a
 * read-only snapshot after making it writable (its flags cannot change
 * otherwise). Something the data made (a native stream, a guest's chattr)
 * must not stop a destroy. > 0 if anything was cleared. */
static int subvol_clear_nochange(int pfd, const char *base)
{
	_cleanup_close_ int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	uint64_t vflags;
	int flags, r;

	if (fd < 0)
		return -errno;
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags & (FS_IMMUTABLE_FL | FS_APPEND_FL)) &&
	    ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &vflags) == 0 && (vflags & BTRFS_SUBVOL_RDONLY)) {
		vflags &= ~BTRFS_SUBVOL_RDONLY;
		if (ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, &vflags) < 0)
			return -errno;
	}
	r = fs_clear_nochange_flags(fd);
	return r != 0 ? r : fs_clear_nochange_flags(pfd);
}

/* BTRFS_IOC_SNAP_DESTROY on the parent directory; nested subvolumes are
 * removed first when the kernel says the subvolume is not empty of them. */
static int subvol_destroy(const char *path, struct vm_error *err)
{
	struct btrfs_ioctl_vol_args args = { 0 };
	_cleanup_close_ int pfd = -1;
	const char *base;
	int r, e;

	pfd = open_parent(path, &base, err);
	if (pfd < 0)
		return pfd;
	strncpy(args.name, base, sizeof(args.name) - 1);
	if (ioctl(pfd, BTRFS_IOC_SNAP_DESTROY, &args) == 0)
		return 0;
	e = errno;
	if (e == EPERM && subvol_clear_nochange(pfd, base) > 0)
		e = ioctl(pfd, BTRFS_IOC_SNAP_DESTROY, &args) == 0 ? 0 : errno;
	if (e == 0)
		return 0;
	if (e != ENOTEMPTY)
		return vm_error_set(err, e, "destroy subvolume %s", path);
	r = rm_nested_subvols(path, err);
	if (r < 0)
		return r;
	if (ioctl(pfd, BTRFS_IOC_SNAP_DESTROY, &args) < 0)
		return vm_error_set(err, errno, "destroy subvolume %s", path);
	return 0;
}

/* rm -rf that also removes subvolumes (a plain rmdir cannot). */
static int rm_tree(const char *path, struct vm_error *err)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	struct stat st;
	int r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : vm_error_set(err, errno, "stat %s", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0 && errno != ENOENT)
			return vm_error_set(err, errno, "remove %s", path);
		return 0;
	}
	if (is_subvol_st(&st))
		return subvol_destroy(path, err);
	d = opendir(path);
	if (!d)
		return vm_error_set(err, errno, "open %s", path);
	while ((errno = 0, de = readdir(d))) {
		_cleanup_free_ char *sub = NULL;
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		sub = strdup_printf("%s/%s", path, de->d_name);
		if (!sub)
			return vm_error_set(err, ENOMEM, "remove %s", path);
		r = rm_tree(sub, err);
		if (r < 0)
			return r;
	}
	if (rmdir(path) < 0 && errno != ENOENT)
		return vm_error_set(err, errno, "remove %s", path);
	return 0;
}

/* ---- opening the pool ---- */

static int pool_image_size(struct vm_pool *pool, uint64_t *ret, struct vm_error *err)
{
	json_t *j = json_object_get(pool->conf, "pool_size");
	char a[32];
	uint64_t free_bytes, size;
	int r;

	r = pool_statfs_free(pool->root, &free_bytes, err);
	if (r < 0)
		return r;
	if (j) {
		if (!json_is_integer(j) || json_integer_value(j) <= 0)
			return vm_error_setx(err, EINVAL,
					     "vmadm.conf: pool_size must be a positive integer "
					     "(bytes)");
		size = json_integer_value(j);
	} else {
		size = free_bytes / 5;
		if (size < 5 * GiB)
			size = 5 * GiB;
		if (size > 30 * GiB)
			size = 30 * GiB;
		if (size > free_bytes)
			size = free_bytes;
	}
	if (size < POOL_MIN_SIZE)
		return vm_error_setx(err, ENOSPC,
				     "pool size %s is too small for btrfs (at least %s; %s free "
				     "in %s)",
				     pool_fmt_size(size, a), "256 MiB",
				     pool_fmt_size(free_bytes, (char[32]){ 0 }), pool->root);
	*ret = size;
	return 0;
}

/* mount -o loop IMG MOUNTPOINT */
static int mount_image(struct vm_pool *pool, const char *img, struct vm_error *err)
{
	const char *argv[] = { "mount", "-t", "btrfs", "-o", "loop", img, pool->mountpoint, NULL };
	struct vm_spawn sp = { .argv = argv, .stdin_fd = -1, .stdout_fd = -1 };
	int r = vm_spawn_run(&sp, err);

	vm_spawn_clear(&sp);
	return r;
}

/* umount MOUNTPOINT, undoing a mount made by this open (errors ignored:
 * this runs only on a path that already failed). */
static void umount_pool(struct vm_pool *pool)
{
	const char *argv[] = { "umount", pool->mountpoint, NULL };
	struct vm_spawn sp = { .argv = argv, .stdin_fd = -1, .stdout_fd = -1 };
	struct vm_error e2;

	vm_spawn_run(&sp, &e2);
	vm_spawn_clear(&sp);
}

static int create_image(struct vm_pool *pool, const char *img, bool mp_created,
			struct vm_error *err)
{
	_cleanup_close_ int fd = -1;
	struct vm_error e2;
	uint64_t size = 0;
	int r;

	r = pool_image_size(pool, &size, err);
	if (r < 0)
		return r;
	fd = open(img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return vm_error_set(err, errno, "create %s", img);
	if (ftruncate(fd, (off_t)size) < 0) {
		r = vm_error_set(err, errno, "size %s", img);
		goto fail;
	}
	close(TAKE_FD(fd));
	{
		/* mkfs.btrfs -q -L vmadm-zones IMG */
		const char *argv[] = { "mkfs.btrfs", "-q", "-L", "vmadm-zones", img, NULL };
		struct vm_spawn sp = { .argv = argv, .stdin_fd = -1, .stdout_fd = -1 };
		r = vm_spawn_run(&sp, err);
		vm_spawn_clear(&sp);
		if (r < 0)
			goto fail;
	}
	r = mount_image(pool, img, err);
	if (r < 0)
		goto fail;
	return 0;
fail:
	unlink(img);
	if (mp_created)
		rmdir(pool->mountpoint);
	(void)e2;
	return r;
}

static int btrfs_open(struct vm_pool *pool, struct vm_error *err)
{
	_cleanup_free_ char *img = strdup_printf("%s/%s", pool->root, POOL_IMAGE);
	_cleanup_free_ char *lockp = strdup_printf("%s/.pool.lock", pool->root);
	_cleanup_free_ char *snaps = strdup_printf("%s/%s", pool->mountpoint, POOL_SNAPDIR);
	_cleanup_free_ char *recv = strdup_printf("%s/%s", pool->mountpoint, POOL_RECVDIR);
	_cleanup_close_ int lock = -1;
	struct statfs sfs;
	bool mp_created = false, mounted = false;
	int r = 0;

	if (!img || !lockp || !snaps || !recv)
		return vm_error_set(err, ENOMEM, "open pool");
	r = fs_mkdir_p(pool->root, 0755, err);
	if (r < 0)
		return vm_error_prefix(err, "open btrfs pool");
	/* Two commands opening a fresh node at once must not both mkfs. */
	lock = vm_lock_file(lockp, 60, "pool", err);
	if (lock < 0)
		return lock;
	if (!fs_is_dir(pool->mountpoint)) {
		if (mkdir(pool->mountpoint, 0700) < 0 && errno != EEXIST)
			return vm_error_set(err, errno, "open btrfs pool: mkdir %s",
					    pool->mountpoint);
		mp_created = true;
	}

	if (fs_is_mountpoint(pool->mountpoint)) {
		/* mounted already: use it as it is */
	} else if (fs_exists(img)) {
		/* the node rebooted: mount the pool again */
		r = mount_image(pool, img, err);
		if (r < 0) {
			if (mp_created)
				rmdir(pool->mountpoint);
			return vm_error_prefix(err, "mount btrfs pool %s", img);
		}
		mounted = true;
	} else if (statfs(pool->root, &sfs) == 0 && sfs.f_type == BTRFS_SUPER_MAGIC) {
		/* ROOT is on btrfs: the pool is a plain directory there */
	} else {
		_cleanup_closedir_ DIR *d = opendir(pool->mountpoint);
		struct dirent *de;
		while (d && (de = readdir(d)))
			if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
				return vm_error_setx(err, EEXIST,
						     "open btrfs pool: %s is not empty and not a "
						     "btrfs mount, and %s does not exist",
						     pool->mountpoint, img);
		r = create_image(pool, img, mp_created, err);
		if (r < 0)
			return vm_error_prefix(err, "create btrfs pool %s", img);
		mounted = true;
	}
	if (statfs(pool->mountpoint, &sfs) < 0)
		r = vm_error_set(err, errno, "open btrfs pool: statfs %s", pool->mountpoint);
	else if (sfs.f_type != BTRFS_SUPER_MAGIC)
		r = vm_error_setx(err, EMEDIUMTYPE, "open btrfs pool: %s is not on btrfs",
				  pool->mountpoint);
	else if ((r = pool_restrict_mountpoint(pool, err)) < 0 ||
		 (r = fs_mkdir_p(snaps, 0700, err)) < 0 || (r = fs_mkdir_p(recv, 0700, err)) < 0)
		r = vm_error_prefix(err, "open btrfs pool");
	if (r < 0 && mounted)
		umount_pool(pool);
	return r < 0 ? r : 0;
}

/* ---- datasets ---- */

static int btrfs_snap_key(int dirfd, const char *name, uint64_t *k1, uint64_t *k2);

static int make_subvol(const char *path, struct vm_error *err)
{
	int r = subvol_create(path, err);

	if (r >= 0)
		chmod(path, 0755);
	return r;
}

static int snapshot_ro(const char *path, const char *spath, struct vm_error *err)
{
	return snap_create(path, spath, true, err);
}

static const struct pool_dir_ops btrfs_ds = {
    .exists = is_subvol,
    .is_child = btrfs_is_child,
    .make = make_subvol,
    .remove = subvol_destroy,
    .copy = snapshot_ro,
    .snap_exists = is_subvol,
    .snap_key = btrfs_snap_key,
};

static int check_new(struct vm_pool *pool, const char *what, const char *ds, const char *path,
		     struct vm_error *err)
{
	return pool_check_new(pool, &btrfs_ds, what, ds, path, err);
}

/* Creation order: subvolume ids only grow. */
static int btrfs_snap_key(int dirfd, const char *name, uint64_t *k1, uint64_t *k2)
{
	struct btrfs_ioctl_ino_lookup_args args = { .treeid = 0,
						    .objectid = BTRFS_FIRST_FREE_OBJECTID };
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, BTRFS_IOC_INO_LOOKUP, &args) < 0)
		return -errno;
	*k1 = args.treeid;
	*k2 = 0;
	return 0;
}

/* Names of the child datasets (nested subvolumes) of the dataset at path. */
static int list_children(const char *path, char ***ret, struct vm_error *err)
{
	_cleanup_closedir_ DIR *d = opendir(path);
	_cleanup_strv_ char **v = NULL;
	struct dirent *de;
	size_t n = 0;

	if (!d)
		return vm_error_set(err, errno, "open %s", path);
	v = calloc(1, sizeof(char *));
	if (!v)
		return vm_error_set(err, ENOMEM, "list %s", path);
	while ((errno = 0, de = readdir(d))) {
		struct stat st;
		char **nv;
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !is_subvol_st(&st))
			continue;
		nv = realloc(v, (n + 2) * sizeof(char *));
		if (!nv)
			return vm_error_set(err, ENOMEM, "list %s", path);
		v = nv;
		v[n] = strdup(de->d_name);
		v[++n] = NULL;
		if (!v[n - 1])
			return vm_error_set(err, ENOMEM, "list %s", path);
	}
	*ret = TAKE_PTR(v);
	return 0;
}

static int btrfs_receive_cleanup(struct vm_pool *pool, const char *ds, struct vm_error *err);

static int btrfs_destroy(struct vm_pool *pool, const char *ds, bool recursive,
			 struct vm_error *err)
{
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, ds);
	_cleanup_free_ char *sdir = pool_snapdir(pool, ds);
	_cleanup_strv_ char **children = NULL;
	int r;

	if (!path || !sdir)
		return vm_error_set(err, ENOMEM, "destroy %s", ds);
	if (!is_subvol(path))
		return vm_error_setx(err, ENOENT, "destroy %s: dataset does not exist", ds);
	r = list_children(path, &children, err);
	if (r < 0)
		return vm_error_prefix(err, "destroy %s", ds);
	if (children[0] && !recursive)
		return vm_error_setx(err, EBUSY,
				     "destroy %s: has child dataset %s/%s (destroy recursively)",
				     ds, ds, children[0]);
	for (size_t i = 0; children[i]; i++) {
		_cleanup_free_ char *child = strdup_printf("%s/%s", ds, children[i]);
		if (!child)
			return vm_error_set(err, ENOMEM, "destroy %s", ds);
		r = btrfs_destroy(pool, child, true, err);
		if (r < 0)
			return r;
	}
	r = rm_tree(sdir, err);
	if (r >= 0)
		r = subvol_destroy(path, err);
	if (r < 0)
		return vm_error_prefix(err, "destroy %s", ds);
	/* and what an interrupted receive of ds left (the dataset exists only
	 * for an incremental receive, whose staging is named after it too) */
	return btrfs_receive_cleanup(pool, ds, err);
}




static int btrfs_available(struct vm_pool *pool, uint64_t *ret, struct vm_error *err)
{
	/* Data written lately may still be in delalloc: btrfs statfs
	 * counts it only after a sync of the filesystem. */
	_cleanup_close_ int fd = open(pool->mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0)
		syncfs(fd);
	return pool_statfs_free(pool->mountpoint, ret, err);
}

static int btrfs_clone(struct vm_pool *pool, const char *snap, const char *ds,
		       uint64_t size_or_0, struct vm_error *err)
{
	_cleanup_free_ char *sds = NULL, *sname = NULL, *spath = NULL, *path = NULL;
	_cleanup_free_ char *file = NULL;
	struct vm_error e2;
	struct stat st;
	int r;

	r = pool_split_snapshot(snap, &sds, &sname, err);
	if (r < 0)
		return r;
	spath = pool_snappath(pool, sds, sname);
	path = vm_pool_dataset_path(pool, ds);
	file = vm_pool_volume_path(pool, ds);
	if (!spath || !path || !file)
		return vm_error_set(err, ENOMEM, "clone %s", snap);
	if (!is_subvol(spath))
		return vm_error_setx(err, ENOENT, "clone %s to %s: snapshot does not exist", snap,
				     ds);
	r = check_new(pool, "clone to", ds, path, err);
	if (r < 0)
		return vm_error_prefix(err, "clone %s", snap);
	r = snap_create(spath, path, false, err);
	if (r < 0)
		return vm_error_prefix(err, "clone %s to %s", snap, ds);
	if (size_or_0 && lstat(file, &st) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_size < size_or_0) {
		r = pool_check_space(pool, "grow volume", ds, size_or_0 - st.st_size, err);
		if (r >= 0 && truncate(file, (off_t)size_or_0) < 0)
			r = vm_error_set(err, errno, "grow %s", file);
		if (r < 0) {
			subvol_destroy(path, &e2);
			return vm_error_prefix(err, "clone %s to %s", snap, ds);
		}
	}
	return 0;
}

/* ---- send / receive ---- */

static int btrfs_send(struct vm_pool *pool, const char *ds, const char *snap,
		      const char *from_snap, int fd, struct vm_error *err)
{
	_cleanup_free_ char *spath = pool_snappath(pool, ds, snap);
	_cleanup_free_ char *ppath = from_snap ? pool_snappath(pool, ds, from_snap) : NULL;
	struct vm_spawn sp = { .stdin_fd = -1, .stdout_fd = fd };
	int r;

	if (!spath || (from_snap && !ppath))
		return vm_error_set(err, ENOMEM, "send %s@%s", ds, snap);
	if (!is_subvol(spath))
		return vm_error_setx(err, ENOENT, "send %s@%s: snapshot does not exist", ds, snap);
	if (ppath && !is_subvol(ppath))
		return vm_error_setx(err, ENOENT, "send %s@%s: snapshot %s@%s does not exist", ds,
				     snap, ds, from_snap);
	if (ppath) {
		/* btrfs send -q -p PARENT SNAP */
		const char *argv[] = { "btrfs", "send", "-q", "-p", ppath, spath, NULL };
		sp.argv = argv;
		r = vm_spawn_run(&sp, err);
	} else {
		/* btrfs send -q SNAP */
		const char *argv[] = { "btrfs", "send", "-q", spath, NULL };
		sp.argv = argv;
		r = vm_spawn_run(&sp, err);
	}
	vm_spawn_clear(&sp);
	if (r < 0)
		return vm_error_prefix(err, "send %s@%s", ds, snap);
	return 0;
}

/*
 * The btrfs send stream: "btrfs-stream\0", a le32 version, then commands of
 * a 10-byte header (le32 payload length, le16 command, le32 crc) and the
 * payload; the last command is END. `btrfs receive` takes a stream cut at a
 * command boundary as complete, so we forward the stream command by command
 * and accept it only when END came. Reading exactly up to END also leaves
 * whatever follows on fd to the caller.
 */
#define SEND_MAGIC "btrfs-stream"
#define SEND_C_END 21
#define SEND_CMD_MAX (64U * 1024 * 1024)

static uint32_t le32(const unsigned char *p)
{
	return p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Read exactly len bytes: 0 on success, 1 on EOF before any byte or in the
 * middle, negative errno on error. */
static int read_exact(int fd, void *buf, size_t len)
{
	ssize_t n = fs_read_full(fd, buf, len);
	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : 1;
}

/* Forward exactly len bytes of a command's payload from in to out. splice
 * moves the pipe's pages instead of copying them through a buffer (out is
 * always a pipe); where in cannot be spliced from (EINVAL), read and write.
 * Returns 0, 1 at a premature end of input, or a negative errno. */
static int forward(int in, int out, size_t len, bool *can_splice, unsigned char **buf,
		   size_t *cap)
{
	while (len > 0 && *can_splice) {
		ssize_t n = splice(in, NULL, out, NULL, len, SPLICE_F_MOVE | SPLICE_F_MORE);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EINVAL) {
			*can_splice = false;
			break;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			return 1;
		len -= n;
	}
	while (len > 0) {
		size_t chunk = len < (1U << 20) ? len : (1U << 20);
		int r;

		if (*cap < chunk) {
			unsigned char *nb = realloc(*buf, chunk);
			if (!nb)
				return -ENOMEM;
			*buf = nb;
			*cap = chunk;
		}
		r = read_exact(in, *buf, chunk);
		if (r != 0)
			return r;
		r = fs_write_all(out, *buf, chunk);
		if (r < 0)
			return r;
		len -= chunk;
	}
	return 0;
}

/* Forward the btrfs send stream on in to out command by command, up to its
 * END command: only the 10-byte command headers are read here, the
 * payloads are spliced through. */
static int pump_stream(int in, int out, uint64_t *ret_bytes, struct vm_error *err)
{
	_cleanup_free_ unsigned char *buf = NULL;
	unsigned char hdr[17];
	bool can_splice = true;
	size_t cap = 0;
	uint64_t total = 0;
	int r;

	r = read_exact(in, hdr, sizeof(hdr));
	if (r != 0)
		return r < 0 ? vm_error_set(err, r, "read stream")
			     : vm_error_setx(err, EPROTO, "stream truncated in its header");
	if (memcmp(hdr, SEND_MAGIC, sizeof(SEND_MAGIC)) != 0)
		return vm_error_setx(err, EPROTO, "not a btrfs send stream (bad magic)");
	if (le32(hdr + 13) < 1 || le32(hdr + 13) > 3)
		return vm_error_setx(err, EPROTO, "btrfs send stream version %u not supported",
				     le32(hdr + 13));
	r = fs_write_all(out, hdr, sizeof(hdr));
	if (r < 0)
		return r;
	total = sizeof(hdr);
	for (;;) {
		unsigned char ch[10];
		uint32_t len;
		unsigned cmd;

		r = read_exact(in, ch, sizeof(ch));
		if (r != 0)
			return r < 0 ? vm_error_set(err, r, "read stream")
				     : vm_error_setx(err, EPROTO,
						     "stream truncated at byte %llu (no end "
						     "command)",
						     (unsigned long long)total);
		len = le32(ch);
		cmd = ch[4] | (ch[5] << 8);
		if (len > SEND_CMD_MAX)
			return vm_error_setx(err, EPROTO,
					     "stream command at byte %llu too long (%u bytes)",
					     (unsigned long long)total, len);
		r = fs_write_all(out, ch, sizeof(ch));
		if (r < 0)
			return r;
		r = forward(in, out, len, &can_splice, &buf, &cap);
		if (r == -EPIPE)
			return r; /* btrfs receive gave up: the caller says why */
		if (r < 0)
			return vm_error_set(err, r, "forward the stream at byte %llu",
					    (unsigned long long)total);
		if (r != 0)
			return vm_error_setx(err, EPROTO, "stream truncated at byte %llu",
					     (unsigned long long)total);
		total += sizeof(ch) + len;
		if (cmd == SEND_C_END)
			break;
	}
	*ret_bytes = total;
	return 0;
}

static void read_errout(int memfd, char *buf, size_t size)
{
	off_t end = lseek(memfd, 0, SEEK_END);
	off_t from = end > (off_t)size - 1 ? end - (off_t)size + 1 : 0;
	ssize_t n = pread(memfd, buf, size - 1, from);

	buf[n > 0 ? n : 0] = '\0';
	for (n = n > 0 ? n : 0; n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '); n--)
		buf[n - 1] = '\0';
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

/* Run `btrfs receive DIR` fed from fd; 0 when the complete stream was
 * applied. */
static int run_receive(const char *dir, int fd, struct vm_error *err)
{
	/* btrfs receive DIR < stream */
	const char *argv[] = { "btrfs", "receive", dir, NULL };
	_cleanup_close_ int memfd = -1, pr = -1, pw = -1;
	struct vm_error werr = { 0 };
	sigset_t pipe_set, old_set;
	char errbuf[1024];
	uint64_t bytes = 0;
	int pfd[2], r, pr_pump, rw;
	pid_t pid;

	memfd = memfd_create("btrfs-receive-stderr", MFD_CLOEXEC);
	if (memfd < 0)
		return vm_error_set(err, errno, "receive: memfd");
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return vm_error_set(err, errno, "receive: pipe");
	pr = pfd[0];
	pw = pfd[1];
	/* 1 MiB (best effort): btrfs receive and the feeder take turns less. */
	(void)fcntl(pw, F_SETPIPE_SZ, 1 << 20);
	pid = vm_spawn_start(argv, pr, -1, memfd, err);
	if (pid < 0)
		return (int)pid;
	close(TAKE_FD(pr));

	/* A receiver that dies must give us EPIPE, not kill us. */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
	pr_pump = pump_stream(fd, pw, &bytes, &werr);
	close(TAKE_FD(pw));
	if (!sigismember(&old_set, SIGPIPE)) {
		struct timespec zero = { 0, 0 };
		while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old_set, NULL);

	rw = vm_spawn_wait(pid, "btrfs receive", err);
	read_errout(memfd, errbuf, sizeof(errbuf));
	if (rw < 0) {
		if (pr_pump < 0 && pr_pump != -EPIPE)
			return vm_error_setx(err, -pr_pump, "%s (btrfs receive: %s)", werr.msg,
					     errbuf[0] ? errbuf : "failed");
		char what[256];
		snprintf(what, sizeof(what), "%s", err->msg);
		return vm_error_setx(err, EIO, "%s: %s", what, errbuf[0] ? errbuf : "no message");
	}
	if (pr_pump < 0) {
		if (pr_pump == -EPIPE)
			return vm_error_setx(err, EIO, "btrfs receive stopped reading early: %s",
					     errbuf[0] ? errbuf : "no message");
		if (werr.msg[0])
			return vm_error_setx(err, -pr_pump, "%s", werr.msg);
		return vm_error_set(err, pr_pump, "feed btrfs receive");
	}
	r = 0;
	vm_debug("btrfs receive: %llu bytes into %s", (unsigned long long)bytes, dir);
	return r;
}

/* The one entry (the received subvolume) in dir, malloc'ed path. */
static int received_subvol(const char *dir, char **ret, struct vm_error *err)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	_cleanup_free_ char *found = NULL;
	struct dirent *de;

	if (!d)
		return vm_error_set(err, errno, "open %s", dir);
	while ((de = readdir(d))) {
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (found)
			return vm_error_setx(err, EPROTO, "stream held more than one subvolume");
		found = strdup_printf("%s/%s", dir, de->d_name);
		if (!found)
			return vm_error_set(err, ENOMEM, "receive");
	}
	if (!found || !is_subvol(found))
		return vm_error_setx(err, EPROTO, "stream held no subvolume");
	*ret = TAKE_PTR(found);
	return 0;
}

/* Move the child datasets (nested subvolumes) of old into new, which is a
 * fresh snapshot where they show as empty directories. With undo, move
 * them back from new to old. */
static int move_children(const char *from, const char *to, char **children,
			 struct vm_error *err)
{
	for (size_t i = 0; children[i]; i++) {
		_cleanup_free_ char *a = strdup_printf("%s/%s", from, children[i]);
		_cleanup_free_ char *b = strdup_printf("%s/%s", to, children[i]);
		struct stat st;
		if (!a || !b)
			return vm_error_set(err, ENOMEM, "move child datasets");
		if (lstat(b, &st) == 0 && S_ISDIR(st.st_mode) && !is_subvol_st(&st))
			(void)rmdir(b);
		if (rename(a, b) < 0)
			return vm_error_set(err, errno, "move child dataset %s to %s", a, b);
	}
	return 0;
}

/* "MOUNTPOINT/.recv/X." for dataset zones/X, '/' in X as '%' (malloc'ed):
 * the staging directories of receives of ds are this plus 6 characters. */
static char *staging_prefix(struct vm_pool *pool, const char *ds)
{
	const char *rest = strchr(ds, '/');
	char *p = strdup_printf("%s/%s/%s.", pool->mountpoint, POOL_RECVDIR, rest ? rest + 1 : ds);

	if (p)
		for (char *c = p + strlen(pool->mountpoint) + 1 + strlen(POOL_RECVDIR) + 1; *c; c++)
			if (*c == '/')
				*c = '%';
	return p;
}

/* Remove the staging directories a killed receive of ds left (their
 * received subvolumes are read-only: rm_tree deletes them as subvolumes). */
static int btrfs_receive_cleanup(struct vm_pool *pool, const char *ds, struct vm_error *err)
{
	_cleanup_free_ char *prefix = staging_prefix(pool, ds);
	_cleanup_free_ char *dir = strdup_printf("%s/%s", pool->mountpoint, POOL_RECVDIR);
	_cleanup_closedir_ DIR *d = NULL;
	const char *base;
	struct dirent *de;
	size_t blen;
	int r;

	if (!prefix || !dir)
		return vm_error_set(err, ENOMEM, "clean up receives of %s", ds);
	base = prefix + strlen(dir) + 1;
	blen = strlen(base);
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : vm_error_set(err, errno, "open %s", dir);
	while ((errno = 0, de = readdir(d))) {
		_cleanup_free_ char *sub = NULL;

		/* exactly "X." and mkdtemp's 6 characters: not "X.Y.XXXXXX" */
		if (strlen(de->d_name) != blen + 6 || strncmp(de->d_name, base, blen) != 0 ||
		    strchr(de->d_name + blen, '.') || strchr(de->d_name + blen, '%'))
			continue;
		sub = strdup_printf("%s/%s", dir, de->d_name);
		if (!sub)
			return vm_error_set(err, ENOMEM, "clean up receives of %s", ds);
		vm_debug("removing %s, left by an interrupted receive of %s", sub, ds);
		r = rm_tree(sub, err);
		if (r < 0)
			return vm_error_prefix(err, "clean up receives of %s", ds);
	}
	return 0;
}

static int btrfs_receive(struct vm_pool *pool, const char *ds, const char *snap,
			 const char *from_snap, int fd, struct vm_error *err)
{
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, ds);
	_cleanup_free_ char *sdir = pool_snapdir(pool, ds);
	_cleanup_free_ char *spath = pool_snappath(pool, ds, snap);
	_cleanup_free_ char *ppath = from_snap ? pool_snappath(pool, ds, from_snap) : NULL;
	_cleanup_free_ char *tmp = NULL, *got = NULL, *newds = NULL, *oldds = NULL, *prefix = NULL;
	_cleanup_strv_ char **children = NULL;
	bool snap_placed = false, sdir_made = false;
	struct vm_error e2;
	int r;

	if (!path || !sdir || !spath || (from_snap && !ppath))
		return vm_error_set(err, ENOMEM, "receive %s@%s", ds, snap);
	if (from_snap) {
		if (!is_subvol(path))
			return vm_error_setx(err, ENOENT,
					     "receive %s@%s: incremental stream needs dataset %s, "
					     "which does not exist",
					     ds, snap, ds);
		if (!is_subvol(ppath))
			return vm_error_setx(err, ENOENT,
					     "receive %s@%s: incremental stream needs snapshot "
					     "%s@%s, which does not exist",
					     ds, snap, ds, from_snap);
	} else {
		r = check_new(pool, "receive", ds, path, err);
		if (r < 0)
			return r;
	}
	if (fs_exists(spath))
		return vm_error_setx(err, EEXIST, "receive %s@%s: snapshot already exists", ds,
				     snap);

	prefix = staging_prefix(pool, ds);
	tmp = prefix ? strdup_printf("%sXXXXXX", prefix) : NULL;
	if (!tmp)
		return vm_error_set(err, ENOMEM, "receive %s@%s", ds, snap);
	if (!mkdtemp(tmp))
		return vm_error_set(err, errno, "receive %s@%s: mkdtemp %s", ds, snap, tmp);

	r = run_receive(tmp, fd, err);
	if (r < 0)
		goto fail;
	r = received_subvol(tmp, &got, err);
	if (r < 0)
		goto fail;
	sdir_made = !fs_exists(sdir);
	r = fs_mkdir_p(sdir, 0700, err);
	if (r < 0)
		goto fail;
	/* A read-only subvolume cannot move to another directory (EROFS); a
	 * read-only snapshot of it can be made there, and keeps its received
	 * UUID, by which the next incremental stream finds its parent. */
	r = snap_create(got, spath, true, err);
	if (r < 0)
		goto fail;
	snap_placed = true;

	if (!from_snap) {
		r = snap_create(spath, path, false, err);
		if (r < 0)
			goto fail;
	} else {
		/* Replace ds by a writable snapshot of the new @snap, keeping its
		 * children: new next to the stream in tmp, then swap. */
		newds = strdup_printf("%s/new", tmp);
		oldds = strdup_printf("%s/old", tmp);
		if (!newds || !oldds) {
			r = vm_error_set(err, ENOMEM, "receive");
			goto fail;
		}
		r = list_children(path, &children, err);
		if (r < 0)
			goto fail;
		r = snap_create(spath, newds, false, err);
		if (r < 0)
			goto fail;
		if (rename(path, oldds) < 0) {
			r = vm_error_set(err, errno, "move %s aside", path);
			goto fail;
		}
		r = move_children(oldds, newds, children, err);
		if (r >= 0 && rename(newds, path) < 0)
			r = vm_error_set(err, errno, "move %s into place", path);
		if (r < 0) {
			/* Put everything back where it was. */
			move_children(newds, oldds, children, &e2);
			(void)rename(oldds, path);
			goto fail;
		}
		r = subvol_destroy(oldds, &e2);
		if (r < 0)
			vm_warn("receive %s@%s: could not remove old %s: %s", ds, snap, oldds,
				e2.msg);
	}
	rm_tree(tmp, &e2);
	return 0;

fail:
	if (snap_placed)
		subvol_destroy(spath, &e2);
	if (sdir_made)
		rmdir(sdir);
	rm_tree(tmp, &e2);
	return vm_error_prefix(err, "receive %s@%s", ds, snap);
}

const struct vm_storage_ops btrfs_storage_ops = {
    .name = "btrfs",
    .open = btrfs_open,
    .close = NULL,
    .create_filesystem = pool_dir_create_filesystem,
    .create_volume = pool_dir_create_volume,
    .clone = btrfs_clone,
    .snapshot = pool_dir_snapshot,
    .list_snapshots = pool_dir_list_snapshots,
    .destroy_snapshot = pool_dir_destroy_snapshot,
    .destroy = btrfs_destroy,
    .rename = pool_rename_dataset,
    .kind = pool_dataset_kind,
    .used = pool_dataset_used,
    .available = btrfs_available,
    .send = btrfs_send,
    .receive = btrfs_receive,
    .receive_cleanup = btrfs_receive_cleanup,
    .dir = &btrfs_ds,
    .native_encoding = VM_ENC_BTRFS,
};
