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
#include <limits.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "storage/btrfs-stream.h"
#include "storage/pool-private.h"
#include "storage/pool.h"
#include "util/format.h"
#include "util/fs.h"
#include "util/lock.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/spawn.h"

#define POOL_IMAGE    "pool.img"
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
	struct btrfs_ioctl_vol_args args = {0};
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
	struct btrfs_ioctl_vol_args_v2 args = {0};
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
	struct btrfs_ioctl_vol_args args = {0};
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

/* mount -o loop IMG MOUNTPOINT */
static int mount_image(struct vm_pool *pool, const char *img, struct vm_error *err)
{
	const char *argv[] = {"mount", "-t", "btrfs", "-o", "loop", img, pool->mountpoint, NULL};
	struct vm_spawn sp = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1};
	int r = vm_spawn_run(&sp, err);

	vm_spawn_clear(&sp);
	return r;
}

/* umount MOUNTPOINT, undoing a mount made by this open (errors ignored:
 * this runs only on a path that already failed). */
static void umount_pool(struct vm_pool *pool)
{
	const char *argv[] = {"umount", pool->mountpoint, NULL};
	struct vm_spawn sp = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1};
	struct vm_error e2;

	vm_spawn_run(&sp, &e2);
	vm_spawn_clear(&sp);
}

static int create_image(struct vm_pool *pool, const char *img, bool mp_created,
			struct vm_error *err)
{
	struct vm_error e2;
	int r;

	r = pool_image_create(pool, img, POOL_MIN_SIZE, "btrfs", err);
	if (r < 0) {
		if (mp_created)
			rmdir(pool->mountpoint);
		return r;
	}
	{
		/* mkfs.btrfs -q -L vmadm-zones IMG */
		const char *argv[] = {"mkfs.btrfs", "-q", "-L", "vmadm-zones", img, NULL};
		struct vm_spawn sp = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1};
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

static int snapshot_rw(const char *spath, const char *path, struct vm_error *err)
{
	return snap_create(spath, path, false, err);
}

static const struct pool_dir_ops btrfs_ds = {
    .exists = is_subvol,
    .is_child = btrfs_is_child,
    .make = make_subvol,
    .remove = subvol_destroy,
    .copy = snapshot_ro,
    .clone = snapshot_rw,
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
	struct btrfs_ioctl_ino_lookup_args args = {.treeid = 0,
						   .objectid = BTRFS_FIRST_FREE_OBJECTID};
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

static int btrfs_destroy(struct vm_pool *pool, const char *ds, bool recursive, struct vm_error *err)
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

/* ---- send / receive ---- */

static int btrfs_send(struct vm_pool *pool, const char *ds, const char *snap, const char *from_snap,
		      int fd, struct vm_error *err)
{
	_cleanup_free_ char *spath = pool_snappath(pool, ds, snap);
	_cleanup_free_ char *ppath = from_snap ? pool_snappath(pool, ds, from_snap) : NULL;
	struct vm_spawn sp = {.stdin_fd = -1, .stdout_fd = fd};
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
		const char *argv[] = {"btrfs", "send", "-q", "-p", ppath, spath, NULL};
		sp.argv = argv;
		r = vm_spawn_run(&sp, err);
	} else {
		/* btrfs send -q SNAP */
		const char *argv[] = {"btrfs", "send", "-q", spath, NULL};
		sp.argv = argv;
		r = vm_spawn_run(&sp, err);
	}
	vm_spawn_clear(&sp);
	if (r < 0)
		return vm_error_prefix(err, "send %s@%s", ds, snap);
	return 0;
}

/*
 * Receiving a btrfs send stream. `btrfs receive` runs as root and does what
 * the stream's commands say, so nothing reaches it unchecked:
 *
 * - pump_stream() reads the stream into a buffer and passes `btrfs receive`
 *   only whole commands that storage/btrfs-stream.c accepted: paths inside
 *   the received subvolume, one subvolume, SNAPSHOT only of the receiver's
 *   own base, CLONE only from that subvolume or the base, every command
 *   well-formed with its CRC right, and nothing after END (a stream cut at a
 *   command boundary would look complete to the tool, so END decides);
 * - the tool runs with -C (chroot) in a staging directory of its own, so that
 *   a symlink the stream made, which the checker cannot see through, leads
 *   nowhere outside it;
 * - the base of an incremental stream is the subvolume the tool will find by
 *   the uuid the check accepts (receive_base()), and a CLONE from the base,
 *   which the tool opens from the pool's mount point (outside its chroot),
 *   must name a regular file inside the base reached without a symlink
 *   (check_base_clone()).
 *
 * On a refusal the tool is killed before it sees the refused command.
 */

/* The pump's buffer: reads of up to 1 MiB, plus room for one command. */
#define PUMP_READ (1u << 20)

struct recv_check {
	struct btrfs_stream_check check;
	int base_fd;	  /* the base's directory; -1 for a full stream */
	const char *ds;	  /* for messages: the dataset and */
	const char *base; /* the base snapshot's name */
};

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* The first subvolume id stored in the uuid tree under uuid as key type
 * (BTRFS_UUID_KEY_RECEIVED_SUBVOL or BTRFS_UUID_KEY_SUBVOL), 0 when none:
 * how `btrfs receive` looks parents and clone sources up. */
static int uuid_tree_first(int fd, const uint8_t uuid[16], uint8_t type, uint64_t *ret_id)
{
	struct btrfs_ioctl_search_args args = {0};
	struct btrfs_ioctl_search_key *sk = &args.key;
	struct btrfs_ioctl_search_header sh;

	sk->tree_id = BTRFS_UUID_TREE_OBJECTID;
	sk->min_objectid = sk->max_objectid = le64(uuid);
	sk->min_type = sk->max_type = type;
	sk->min_offset = sk->max_offset = le64(uuid + 8);
	sk->max_transid = UINT64_MAX;
	sk->nr_items = 1;
	if (ioctl(fd, BTRFS_IOC_TREE_SEARCH, &args) < 0)
		return -errno;
	*ret_id = 0;
	if (sk->nr_items == 0)
		return 0;
	memcpy(&sh, args.buf, sizeof(sh));
	if (sh.len >= sizeof(uint64_t))
		*ret_id = le64((const uint8_t *)args.buf + sizeof(sh));
	return 0;
}

/*
 * The base of an incremental receive of ds from ds@from, as its stream
 * names it: the uuid by which `btrfs receive` will look the parent up (the
 * base's received uuid when it was received, else its own uuid) and the
 * ctransid that goes with it. The tool takes the first subvolume with that
 * received uuid, else the first with that uuid: it must be this one, or a
 * stream naming "its base" would get another subvolume's data. Returns the
 * base's open directory in *ret_fd.
 */
static int receive_base(const char *ds, const char *from, const char *ppath,
			struct btrfs_stream_subvol *ret, int *ret_fd, struct vm_error *err)
{
	static const uint8_t zero[BTRFS_UUID_SIZE];
	struct btrfs_ioctl_get_subvol_info_args info = {0};
	_cleanup_close_ int fd = open(ppath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	uint64_t found = 0;
	bool received;
	int r;

	if (fd < 0)
		return vm_error_set(err, errno, "open %s@%s (%s)", ds, from, ppath);
	if (ioctl(fd, BTRFS_IOC_GET_SUBVOL_INFO, &info) < 0)
		return vm_error_set(err, errno, "subvolume information of %s@%s", ds, from);
	received = memcmp(info.received_uuid, zero, sizeof(zero)) != 0;
	memcpy(ret->uuid, received ? info.received_uuid : info.uuid, BTRFS_UUID_SIZE);
	ret->ctransid = received ? info.stransid : info.ctransid;
	r = uuid_tree_first(fd, ret->uuid, BTRFS_UUID_KEY_RECEIVED_SUBVOL, &found);
	if (r >= 0 && found == 0)
		r = uuid_tree_first(fd, ret->uuid, BTRFS_UUID_KEY_SUBVOL, &found);
	if (r < 0)
		return vm_error_set(err, r, "look up the uuid of %s@%s", ds, from);
	if (found != info.treeid)
		return vm_error_setx(
		    err, EEXIST,
		    "the base %s@%s (subvolume %llu) shares its uuid with subvolume "
		    "%llu, which btrfs receive would take as the parent instead",
		    ds, from, (unsigned long long)info.treeid, (unsigned long long)found);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

/* A CLONE from the base names its source by a path in the base, which
 * `btrfs receive` opens from the pool's mount point, outside its chroot:
 * the path must lead to a regular file inside the base without going
 * through a symlink (the base is a read-only snapshot: what is checked here
 * is what the tool will open). */
static int check_base_clone(struct recv_check *rc, const char *where, const char *path, size_t len,
			    struct vm_error *err)
{
	struct open_how how = {
	    .flags = O_PATH | O_CLOEXEC,
	    .resolve =
		RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	_cleanup_close_ int fd = -1;
	char p[PATH_MAX];
	struct stat st;

	if (len >= sizeof(p))
		return vm_error_setx(err, EPROTO, "%s: clone source path too long", where);
	memcpy(p, path, len);
	p[len] = '\0';
	/* openat2(base, path, {O_PATH, RESOLVE_BENEATH|NO_SYMLINKS|...}) */
	fd = (int)syscall(SYS_openat2, rc->base_fd, p, &how, sizeof(how));
	if (fd < 0 && errno == ELOOP)
		return vm_error_setx(
		    err, EPROTO, "%s: clone_path \"%s\" goes through a symlink in the base %s@%s",
		    where, p, rc->ds, rc->base);
	if (fd < 0 && errno == EXDEV)
		return vm_error_setx(err, EPROTO, "%s: clone_path \"%s\" leaves the base %s@%s",
				     where, p, rc->ds, rc->base);
	if (fd < 0)
		return vm_error_set(err, errno, "%s: clone_path \"%s\" in the base %s@%s", where, p,
				    rc->ds, rc->base);
	if (fstat(fd, &st) < 0)
		return vm_error_set(err, errno, "%s: clone_path \"%s\"", where, p);
	if (!S_ISREG(st.st_mode))
		return vm_error_setx(
		    err, EPROTO, "%s: clone_path \"%s\" in the base %s@%s is not a regular file",
		    where, p, rc->ds, rc->base);
	return 0;
}

/* Check the whole commands at the start of buf (len bytes), up to END: *ret_ok
 * is how many bytes may go to the tool. A command not yet whole waits. */
static int check_commands(struct recv_check *rc, const uint8_t *buf, size_t len, size_t *ret_ok,
			  struct vm_error *err)
{
	size_t pos = 0;
	int r;

	while (!rc->check.ended && len - pos >= BTRFS_STREAM_CMD_HEADER_SIZE) {
		struct btrfs_stream_cmd cmd;
		uint64_t n = rc->check.ncmds + 1, at = rc->check.offset;
		size_t size;

		r = btrfs_stream_cmd_size(&rc->check, buf + pos, &size, err);
		if (r < 0)
			return r;
		if (len - pos < size)
			break;
		r = btrfs_stream_check_cmd(&rc->check, buf + pos, size, &cmd, err);
		if (r < 0)
			return r;
		if (cmd.base_clone_path) {
			char where[96];
			snprintf(where, sizeof(where),
				 "btrfs stream command %llu (clone) at byte %llu",
				 (unsigned long long)n, (unsigned long long)at);
			r = check_base_clone(rc, where, cmd.base_clone_path,
					     cmd.base_clone_path_len, err);
			if (r < 0)
				return r;
		}
		pos += size;
	}
	*ret_ok = pos;
	return 0;
}

/* Feed the btrfs send stream on in to out (the tool's stdin), checked, up
 * to its END command; anything after END is refused. -EPIPE without a
 * message when the tool stopped reading (the caller has its stderr). */
static int pump_stream(int in, int out, struct recv_check *rc, uint64_t *ret_bytes,
		       struct vm_error *err)
{
	size_t cap = PUMP_READ + BTRFS_STREAM_CMD_MAX;
	_cleanup_free_ uint8_t *buf = malloc(cap);
	size_t start = 0, end = 0; /* read, not yet passed on: buf[start, end) */
	uint64_t total = 0;
	ssize_t n;
	int r;

	if (!buf)
		return vm_error_set(err, ENOMEM, "receive");
	n = fs_read_full(in, buf, BTRFS_STREAM_HEADER_SIZE);
	if (n < 0)
		return vm_error_set(err, (int)n, "read stream");
	if (n < BTRFS_STREAM_HEADER_SIZE)
		return vm_error_setx(err, EPROTO, "stream truncated in its header");
	r = btrfs_stream_check_header(&rc->check, buf, BTRFS_STREAM_HEADER_SIZE, err);
	if (r < 0)
		return r;
	r = fs_write_all(out, buf, BTRFS_STREAM_HEADER_SIZE);
	if (r < 0)
		return r == -EPIPE ? r : vm_error_set(err, r, "feed btrfs receive");
	total = BTRFS_STREAM_HEADER_SIZE;
	for (;;) {
		size_t ok = 0;

		r = check_commands(rc, buf + start, end - start, &ok, err);
		if (r < 0)
			return r;
		if (ok > 0) {
			r = fs_write_all(out, buf + start, ok);
			if (r < 0)
				return r == -EPIPE ? r : vm_error_set(err, r, "feed btrfs receive");
			start += ok;
			total += ok;
		}
		if (rc->check.ended && end > start)
			break;
		/* What is left is less than one command: keep room after it
		 * for a whole one. */
		if (start == end) {
			start = end = 0;
		} else if (cap - end < BTRFS_STREAM_CMD_MAX) {
			memmove(buf, buf + start, end - start);
			end -= start;
			start = 0;
		}
		/* Up to END: whatever is there; after it: only the end of
		 * input may come. */
		n = read(in, buf + end, rc->check.ended ? 1 : cap - end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vm_error_set(err, errno, "read stream at byte %llu",
					    (unsigned long long)(total + end - start));
		if (n == 0 && rc->check.ended)
			break;
		if (n == 0)
			return vm_error_setx(err, EPROTO,
					     "stream truncated at byte %llu (no end command)",
					     (unsigned long long)(total + end - start));
		end += (size_t)n;
	}
	if (end > start)
		return vm_error_setx(err, EPROTO,
				     "trailing data after the btrfs stream's END at byte %llu",
				     (unsigned long long)total);
	*ret_bytes = total;
	return 0;
}

static int feed_btrfs(void *ctx, int in, int out, struct vm_error *err)
{
	uint64_t bytes = 0;
	int r = pump_stream(in, out, ctx, &bytes, err);

	if (r >= 0)
		vm_debug("btrfs receive: %llu bytes checked", (unsigned long long)bytes);
	return r;
}

/* Run `btrfs receive` confined to dir, fed from fd through the checks; 0
 * when the complete stream was checked and applied. */
static int run_receive(const char *dir, int fd, struct recv_check *rc, struct vm_error *err)
{
	/* btrfs receive -q -C DIR < stream */
	const char *argv[] = {"btrfs", "receive", "-q", "-C", dir, NULL};

	/* -C announces itself even with -q: not news to our user */
	return pool_run_fed(argv, "btrfs receive", "Chroot to ", fd, feed_btrfs, rc, err);
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
static int move_children(const char *from, const char *to, char **children, struct vm_error *err)
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
	_cleanup_close_ int base_fd = -1;
	struct recv_check rc = {.base_fd = -1, .ds = ds, .base = from_snap};
	struct btrfs_stream_subvol base;
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
		r = receive_base(ds, from_snap, ppath, &base, &base_fd, err);
		if (r < 0)
			return vm_error_prefix(err, "receive %s@%s", ds, snap);
		rc.base_fd = base_fd;
		btrfs_stream_check_init(&rc.check, &base);
	} else {
		btrfs_stream_check_init(&rc.check, NULL);
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

	r = run_receive(tmp, fd, &rc, err);
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
    .clone = pool_dir_clone,
    .snapshot = pool_dir_snapshot,
    .list_snapshots = pool_dir_list_snapshots,
    .destroy_snapshot = pool_dir_destroy_snapshot,
    .destroy = btrfs_destroy,
    .rename = pool_rename_dataset,
    .open_snapshot = pool_dir_open_snapshot,
    .rollback = pool_dir_rollback,
    .kind = pool_dataset_kind,
    .used = pool_dataset_used,
    .available = btrfs_available,
    .send = btrfs_send,
    .receive = btrfs_receive,
    .receive_cleanup = btrfs_receive_cleanup,
    .dir = &btrfs_ds,
    .native_encoding = "btrfs",
};
