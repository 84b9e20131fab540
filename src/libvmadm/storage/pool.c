/* SPDX-License-Identifier: MIT */
/*
 * The pool front: backend choice, name checks and path mapping, and the
 * vm_pool_* wrappers that validate names before calling a backend's ops.
 */
#include "storage/pool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "storage/pool-private.h"
#include "storage/sparse.h"
#include "util/format.h"
#include "util/fs.h"
#include "util/macros.h"
#include "util/spawn.h"

#define DS_NAME_MAX   255
#define SNAP_NAME_MAX 200

#define GiB (1024ULL * 1024 * 1024)

static const struct vm_storage_ops *const backends[] = {
    &btrfs_storage_ops,
    &dir_storage_ops,
    &zfs_storage_ops,
};

const struct vm_storage_ops *vm_storage_ops_by_name(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
		if (streq(backends[i]->name, name))
			return backends[i];
	return NULL;
}

void vm_pool_free(struct vm_pool *pool)
{
	if (!pool)
		return;
	if (pool->ops && pool->ops->close)
		pool->ops->close(pool);
	free(pool->name);
	free(pool->root);
	free(pool->mountpoint);
	free(pool);
}

int vm_pool_open(const char *root, json_t *conf, struct vm_pool **ret, struct vm_error *err)
{
	_cleanup_(vm_pool_freep) struct vm_pool *pool = NULL;
	const char *type = getenv("VMADM_POOL_TYPE");
	const struct vm_storage_ops *ops;
	int r;

	if (!type || !*type) {
		json_t *j = json_object_get(conf, "pool_type");
		type = json_is_string(j) ? json_string_value(j) : "btrfs";
	}
	ops = vm_storage_ops_by_name(type);
	if (!ops) {
		char valid[256] = "";
		for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
			if (i)
				strcat(valid, ", ");
			strcat(valid, backends[i]->name);
		}
		return vm_error_setx(err, EINVAL, "unknown pool type '%s' (valid: %s)", type,
				     valid);
	}
	if (!root || root[0] != '/')
		return vm_error_setx(err, EINVAL, "pool: node root '%s' is not an absolute path",
				     root ? root : "");

	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return vm_error_set(err, ENOMEM, "open pool");
	pool->name = strdup(VM_POOL_NAME);
	pool->root = strdup(root);
	pool->mountpoint = strdup_printf("%s/%s", root, VM_POOL_NAME);
	if (!pool->name || !pool->root || !pool->mountpoint)
		return vm_error_set(err, ENOMEM, "open pool");
	pool->conf = conf;
	r = ops->open(pool, err);
	if (r < 0)
		return r;
	/* Set only now, so that a failed open does not call close(). */
	pool->ops = ops;
	*ret = TAKE_PTR(pool);
	return 0;
}

static bool name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == ':' || c == '-';
}

int vm_dataset_name_check(const char *ds, struct vm_error *err)
{
	const char *p, *comp;

	if (!ds || !*ds)
		return vm_error_setx(err, EINVAL, "invalid dataset name '': empty");
	if (strlen(ds) > DS_NAME_MAX)
		return vm_error_setx(err, EINVAL,
				     "invalid dataset name '%.40s...': longer than %d characters",
				     ds, DS_NAME_MAX);
	if (strncmp(ds, VM_POOL_NAME "/", strlen(VM_POOL_NAME) + 1) != 0)
		return vm_error_setx(
		    err, EINVAL, "invalid dataset name '%s': must begin with '" VM_POOL_NAME "/'",
		    ds);
	comp = ds + strlen(VM_POOL_NAME) + 1;
	for (;;) {
		p = comp;
		while (*p && *p != '/') {
			if (!name_char_ok(*p))
				return vm_error_setx(err, EINVAL,
						     "invalid dataset name '%s': character '%c' "
						     "not allowed (use A-Z a-z 0-9 _ . : -)",
						     ds, *p);
			p++;
		}
		if (p == comp)
			return vm_error_setx(err, EINVAL,
					     "invalid dataset name '%s': empty component", ds);
		if (*comp == '.')
			return vm_error_setx(err, EINVAL,
					     "invalid dataset name '%s': a component may not "
					     "begin with '.'",
					     ds);
		if (!*p)
			break;
		comp = p + 1;
	}
	return 0;
}

int vm_snapshot_name_check(const char *snap, struct vm_error *err)
{
	if (!snap || !*snap)
		return vm_error_setx(err, EINVAL, "invalid snapshot name '': empty");
	if (strlen(snap) > SNAP_NAME_MAX)
		return vm_error_setx(err, EINVAL,
				     "invalid snapshot name '%.40s...': longer than %d characters",
				     snap, SNAP_NAME_MAX);
	if (snap[0] == '.')
		return vm_error_setx(err, EINVAL,
				     "invalid snapshot name '%s': may not begin with '.'", snap);
	for (const char *p = snap; *p; p++)
		if (!name_char_ok(*p))
			return vm_error_setx(err, EINVAL,
					     "invalid snapshot name '%s': character '%c' not "
					     "allowed (use A-Z a-z 0-9 _ . : -)",
					     snap, *p);
	return 0;
}

int pool_split_snapshot(const char *full, char **ret_ds, char **ret_snap, struct vm_error *err)
{
	_cleanup_free_ char *ds = NULL, *snap = NULL;
	const char *at = full ? strchr(full, '@') : NULL;
	int r;

	if (!at)
		return vm_error_setx(err, EINVAL, "invalid snapshot '%s': expected DATASET@NAME",
				     full ? full : "");
	ds = strndup(full, at - full);
	snap = strdup(at + 1);
	if (!ds || !snap)
		return vm_error_set(err, ENOMEM, "snapshot %s", full);
	r = vm_dataset_name_check(ds, err);
	if (r < 0)
		return r;
	r = vm_snapshot_name_check(snap, err);
	if (r < 0)
		return r;
	*ret_ds = TAKE_PTR(ds);
	*ret_snap = TAKE_PTR(snap);
	return 0;
}

char *pool_parent_name(const char *ds)
{
	const char *slash = strrchr(ds, '/');
	return slash ? strndup(ds, slash - ds) : strdup(ds);
}

static const char *ds_rest(const char *ds)
{
	size_t n = strlen(VM_POOL_NAME);
	if (strncmp(ds, VM_POOL_NAME, n) == 0 && ds[n] == '/')
		return ds + n + 1;
	return ds;
}

char *vm_pool_dataset_path(struct vm_pool *pool, const char *ds)
{
	return strdup_printf("%s/%s", pool->mountpoint, ds_rest(ds));
}

char *vm_pool_volume_path(struct vm_pool *pool, const char *ds)
{
	if (pool->ops->volume_path)
		return pool->ops->volume_path(pool, ds);
	return strdup_printf("%s/%s/%s", pool->mountpoint, ds_rest(ds), VOLUME_FILE);
}

char *pool_snapdir(struct vm_pool *pool, const char *ds)
{
	return strdup_printf("%s/%s/%s", pool->mountpoint, POOL_SNAPDIR, ds_rest(ds));
}

char *pool_snappath(struct vm_pool *pool, const char *ds, const char *snap)
{
	return strdup_printf("%s/%s/%s/@%s", pool->mountpoint, POOL_SNAPDIR, ds_rest(ds), snap);
}

bool pool_dir_is_volume(const char *path)
{
	_cleanup_free_ char *f = strdup_printf("%s/%s", path, VOLUME_FILE);
	struct stat st;

	return f && lstat(f, &st) == 0 && S_ISREG(st.st_mode);
}

int pool_restrict_mountpoint(struct vm_pool *pool, struct vm_error *err)
{
	_cleanup_close_ int fd =
	    open(pool->mountpoint, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return vm_error_set(err, errno, "open pool %s at %s", pool->name, pool->mountpoint);
	if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0)
		return vm_error_set(err, errno, "make pool %s at %s mode 0700", pool->name,
				    pool->mountpoint);
	return 0;
}

int pool_statfs_free(const char *path, uint64_t *ret, struct vm_error *err)
{
	struct statvfs sv;

	if (statvfs(path, &sv) < 0)
		return vm_error_set(err, errno, "statfs %s", path);
	*ret = (uint64_t)sv.f_bavail * sv.f_frsize;
	return 0;
}

static int tree_allocated_at(int dfd, const char *path,
			     bool (*is_child)(int, const char *, const struct stat *),
			     uint64_t *sum, struct vm_error *err)
{
	_cleanup_closedir_ DIR *d = fdopendir(dfd);
	struct dirent *de;
	int r;

	if (!d) {
		close(dfd);
		return vm_error_set(err, errno, "read %s", path);
	}
	while ((errno = 0, de = readdir(d))) {
		struct stat st;
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			return vm_error_set(err, errno, "stat %s/%s", path, de->d_name);
		}
		if (S_ISDIR(st.st_mode)) {
			int fd;
			if (is_child && is_child(dirfd(d), de->d_name, &st))
				continue;
			*sum += (uint64_t)st.st_blocks * 512;
			fd = openat(dirfd(d), de->d_name,
				    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				return vm_error_set(err, errno, "open %s/%s", path, de->d_name);
			_cleanup_free_ char *sub = strdup_printf("%s/%s", path, de->d_name);
			r = tree_allocated_at(fd, sub ? sub : path, is_child, sum, err);
			if (r < 0)
				return r;
		} else
			*sum += (uint64_t)st.st_blocks * 512;
	}
	if (errno)
		return vm_error_set(err, errno, "read %s", path);
	return 0;
}

int pool_tree_allocated(const char *path,
			bool (*is_child)(int dirfd, const char *name, const struct stat *st),
			uint64_t *ret, struct vm_error *err)
{
	struct stat st;
	uint64_t sum = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return vm_error_set(err, errno, "open %s", path);
	if (fstat(fd, &st) == 0)
		sum += (uint64_t)st.st_blocks * 512;
	r = tree_allocated_at(fd, path, is_child, &sum, err);
	if (r < 0)
		return r;
	*ret = sum;
	return 0;
}

static int snap_cmp(const void *a, const void *b)
{
	const struct pool_snap_entry *x = a, *y = b;

	if (x->key1 != y->key1)
		return x->key1 < y->key1 ? -1 : 1;
	if (x->key2 != y->key2)
		return x->key2 < y->key2 ? -1 : 1;
	return strcmp(x->name, y->name);
}

int pool_list_snapdir(const char *snapdir,
		      int (*key)(int dirfd, const char *name, uint64_t *k1, uint64_t *k2),
		      char ***ret, struct vm_error *err)
{
	_cleanup_closedir_ DIR *d = opendir(snapdir);
	struct pool_snap_entry *ents = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	char **v;
	int r = 0;

	if (!d && errno != ENOENT)
		return vm_error_set(err, errno, "list snapshots in %s", snapdir);
	while (d && (errno = 0, de = readdir(d))) {
		if (de->d_name[0] != '@' || !de->d_name[1])
			continue;
		if (n == cap) {
			struct pool_snap_entry *ne;
			cap = cap ? cap * 2 : 8;
			ne = realloc(ents, cap * sizeof(*ents));
			if (!ne) {
				r = vm_error_set(err, ENOMEM, "list snapshots");
				goto out;
			}
			ents = ne;
		}
		ents[n] = (struct pool_snap_entry){.name = strdup(de->d_name + 1)};
		if (!ents[n].name) {
			r = vm_error_set(err, ENOMEM, "list snapshots");
			goto out;
		}
		n++;
		r = key(dirfd(d), de->d_name, &ents[n - 1].key1, &ents[n - 1].key2);
		if (r < 0) {
			r = vm_error_set(err, r, "snapshot %s/%s", snapdir, de->d_name);
			goto out;
		}
	}
	if (n > 1)
		qsort(ents, n, sizeof(*ents), snap_cmp);
	v = calloc(n + 1, sizeof(char *));
	if (!v) {
		r = vm_error_set(err, ENOMEM, "list snapshots");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		v[i] = TAKE_PTR(ents[i].name);
	*ret = v;
out:
	for (size_t i = 0; i < n; i++)
		free(ents[i].name);
	free(ents);
	return r;
}

int pool_check_space(struct vm_pool *pool, const char *what, const char *ds, uint64_t size,
		     struct vm_error *err)
{
	uint64_t avail;
	char a[32], b[32];
	int r = pool->ops && pool->ops->available ? pool->ops->available(pool, &avail, err)
						  : pool_statfs_free(pool->mountpoint, &avail, err);

	if (r < 0)
		return vm_error_prefix(err, "%s %s", what, ds);
	if (size > avail)
		return vm_error_setx(err, ENOSPC, "%s %s: pool has %s free, needs %s: %s", what, ds,
				     format_size(avail, a), format_size(size, b), strerror(ENOSPC));
	return 0;
}

static int pool_image_size(struct vm_pool *pool, uint64_t min, const char *fs, uint64_t *ret,
			   struct vm_error *err)
{
	json_t *j = json_object_get(pool->conf, "pool_size");
	char a[32], b[32], c[32];
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
	if (size < min)
		return vm_error_setx(
		    err, ENOSPC, "pool size %s is too small for %s (at least %s; %s free in %s)",
		    format_size(size, a), fs, format_size(min, b), format_size(free_bytes, c),
		    pool->root);
	*ret = size;
	return 0;
}

int pool_image_create(struct vm_pool *pool, const char *img, uint64_t min, const char *fs,
		      struct vm_error *err)
{
	_cleanup_close_ int fd = -1;
	uint64_t size = 0;
	int r;

	r = pool_image_size(pool, min, fs, &size, err);
	if (r < 0)
		return r;
	fd = open(img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return vm_error_set(err, errno, "create %s", img);
	if (ftruncate(fd, (off_t)size) < 0) {
		r = vm_error_set(err, errno, "size %s", img);
		unlink(img);
		return r;
	}
	return 0;
}

int pool_volume_file_create(const char *file, uint64_t size, struct vm_error *err)
{
	_cleanup_close_ int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0)
		return vm_error_set(err, errno, "create %s", file);
	if (ftruncate(fd, (off_t)size) < 0)
		return vm_error_set(err, errno, "size %s", file);
	return 0;
}

int pool_volume_file_grow(struct vm_pool *pool, const char *ds, const char *file,
			  uint64_t size_or_0, struct vm_error *err)
{
	struct stat st;
	int r = 0;

	if (size_or_0 && lstat(file, &st) == 0 && S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_size < size_or_0) {
		r = pool_check_space(pool, "grow volume", ds, size_or_0 - st.st_size, err);
		if (r >= 0 && truncate(file, (off_t)size_or_0) < 0)
			r = vm_error_set(err, errno, "grow %s", file);
	}
	return r;
}

/* ---- wrappers ---- */

static int no_op(struct vm_pool *pool, const char *what, struct vm_error *err)
{
	return vm_error_setx(err, EOPNOTSUPP, "%s: not supported by the %s pool backend", what,
			     pool->ops->name);
}

#define CHECK_DS(ds)                                                                               \
	do {                                                                                       \
		int _r = vm_dataset_name_check((ds), err);                                         \
		if (_r < 0)                                                                        \
			return _r;                                                                 \
	} while (0)
#define CHECK_SNAP(s)                                                                              \
	do {                                                                                       \
		int _r = vm_snapshot_name_check((s), err);                                         \
		if (_r < 0)                                                                        \
			return _r;                                                                 \
	} while (0)

int vm_pool_create_filesystem(struct vm_pool *pool, const char *ds, struct vm_error *err)
{
	CHECK_DS(ds);
	if (!pool->ops->create_filesystem)
		return no_op(pool, "create filesystem", err);
	return pool->ops->create_filesystem(pool, ds, err);
}

int vm_pool_create_volume(struct vm_pool *pool, const char *ds, uint64_t size, struct vm_error *err)
{
	CHECK_DS(ds);
	if (size == 0)
		return vm_error_setx(err, EINVAL, "create volume %s: size must be > 0", ds);
	if (!pool->ops->create_volume)
		return no_op(pool, "create volume", err);
	return pool->ops->create_volume(pool, ds, size, err);
}

int vm_pool_clone(struct vm_pool *pool, const char *snap, const char *ds, uint64_t size_or_0,
		  struct vm_error *err)
{
	_cleanup_free_ char *sds = NULL, *sname = NULL;
	int r = pool_split_snapshot(snap, &sds, &sname, err);

	if (r < 0)
		return r;
	CHECK_DS(ds);
	if (!pool->ops->clone)
		return no_op(pool, "clone", err);
	return pool->ops->clone(pool, snap, ds, size_or_0, err);
}

int vm_pool_snapshot(struct vm_pool *pool, const char *ds, const char *name, struct vm_error *err)
{
	CHECK_DS(ds);
	CHECK_SNAP(name);
	if (!pool->ops->snapshot)
		return no_op(pool, "snapshot", err);
	return pool->ops->snapshot(pool, ds, name, err);
}

int vm_pool_list_snapshots(struct vm_pool *pool, const char *ds, char ***ret, struct vm_error *err)
{
	CHECK_DS(ds);
	if (!pool->ops->list_snapshots)
		return no_op(pool, "list snapshots", err);
	return pool->ops->list_snapshots(pool, ds, ret, err);
}

bool vm_pool_has_snapshot(struct vm_pool *pool, const char *ds, const char *snap)
{
	_cleanup_strv_ char **snaps = NULL;
	struct vm_error e = {0};

	if (vm_pool_list_snapshots(pool, ds, &snaps, &e) < 0)
		return false;
	for (char **s = snaps; s && *s; s++)
		if (streq(*s, snap))
			return true;
	return false;
}

int vm_pool_destroy_snapshot(struct vm_pool *pool, const char *ds, const char *name,
			     struct vm_error *err)
{
	CHECK_DS(ds);
	CHECK_SNAP(name);
	if (!pool->ops->destroy_snapshot)
		return no_op(pool, "destroy snapshot", err);
	return pool->ops->destroy_snapshot(pool, ds, name, err);
}

int vm_pool_destroy(struct vm_pool *pool, const char *ds, bool recursive, struct vm_error *err)
{
	CHECK_DS(ds);
	if (!pool->ops->destroy)
		return no_op(pool, "destroy", err);
	return pool->ops->destroy(pool, ds, recursive, err);
}

int vm_pool_rename(struct vm_pool *pool, const char *from, const char *to, struct vm_error *err)
{
	CHECK_DS(from);
	CHECK_DS(to);
	if (streq(from, to))
		return vm_error_setx(err, EINVAL, "rename %s: same name", from);
	/* Moving a dataset below itself would make it its own ancestor. */
	if (strncmp(to, from, strlen(from)) == 0 && to[strlen(from)] == '/')
		return vm_error_setx(err, EINVAL, "rename %s to %s: target is inside the source",
				     from, to);
	if (!pool->ops->rename)
		return no_op(pool, "rename", err);
	return pool->ops->rename(pool, from, to, err);
}

enum vm_dataset_kind vm_pool_kind(struct vm_pool *pool, const char *ds)
{
	struct vm_error e;

	if (vm_dataset_name_check(ds, &e) < 0 || !pool->ops->kind)
		return VM_DS_NONE;
	return pool->ops->kind(pool, ds);
}

int vm_pool_used(struct vm_pool *pool, const char *ds, uint64_t *ret_used, uint64_t *ret_volsize,
		 struct vm_error *err)
{
	CHECK_DS(ds);
	if (!pool->ops->used)
		return no_op(pool, "used", err);
	return pool->ops->used(pool, ds, ret_used, ret_volsize, err);
}

int vm_pool_snapshot_used(struct vm_pool *pool, const char *ds, const char *snap, uint64_t *ret,
			  struct vm_error *err)
{
	int r;

	CHECK_DS(ds);
	CHECK_SNAP(snap);
	if (!pool->ops->snapshot_used)
		return 0;
	r = pool->ops->snapshot_used(pool, ds, snap, ret, err);
	return r < 0 ? r : 1;
}

int vm_pool_available(struct vm_pool *pool, uint64_t *ret, struct vm_error *err)
{
	if (!pool->ops->available)
		return no_op(pool, "available", err);
	return pool->ops->available(pool, ret, err);
}

int vm_pool_sync(struct vm_pool *pool, struct vm_error *err)
{
	_cleanup_close_ int fd = open(pool->mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return vm_error_set(err, errno, "open pool %s at %s", pool->name, pool->mountpoint);
	if (syncfs(fd) < 0)
		return vm_error_set(err, errno, "write pool %s to disk", pool->name);
	return 0;
}

int vm_pool_send(struct vm_pool *pool, const char *ds, const char *snap, const char *from_snap,
		 int fd, struct vm_error *err)
{
	CHECK_DS(ds);
	CHECK_SNAP(snap);
	if (from_snap)
		CHECK_SNAP(from_snap);
	if (!pool->ops->send)
		return no_op(pool, "native send", err);
	return pool->ops->send(pool, ds, snap, from_snap, fd, err);
}

int vm_pool_receive(struct vm_pool *pool, const char *ds, const char *snap, const char *from_snap,
		    int fd, struct vm_error *err)
{
	CHECK_DS(ds);
	CHECK_SNAP(snap);
	if (from_snap)
		CHECK_SNAP(from_snap);
	if (!pool->ops->receive)
		return no_op(pool, "native receive", err);
	return pool->ops->receive(pool, ds, snap, from_snap, fd, err);
}

int vm_pool_set_quota(struct vm_pool *pool, const char *ds, uint64_t bytes, struct vm_error *err)
{
	CHECK_DS(ds);
	if (!pool->ops->set_quota)
		return 0;
	return pool->ops->set_quota(pool, ds, bytes, err);
}

int vm_pool_receive_resumable(struct vm_pool *pool, const char *ds, const char *snap,
			      const char *from_snap, const char *token, int fd, char **ret_token,
			      struct vm_error *err)
{
	*ret_token = NULL;
	if (!pool->ops->receive_resumable) {
		if (token)
			return no_op(pool, "resumed receive", err);
		return vm_pool_receive(pool, ds, snap, from_snap, fd, err);
	}
	CHECK_DS(ds);
	CHECK_SNAP(snap);
	if (from_snap)
		CHECK_SNAP(from_snap);
	return pool->ops->receive_resumable(pool, ds, snap, from_snap, token, fd, ret_token, err);
}

int vm_pool_send_resume(struct vm_pool *pool, const char *ds, const char *snap,
			const char *from_snap, const char *token, int fd, struct vm_error *err)
{
	CHECK_DS(ds);
	CHECK_SNAP(snap);
	if (from_snap)
		CHECK_SNAP(from_snap);
	if (!pool->ops->send_resume)
		return no_op(pool, "resumed send", err);
	return pool->ops->send_resume(pool, ds, snap, from_snap, token, fd, err);
}

int vm_pool_receive_cleanup(struct vm_pool *pool, const char *ds, struct vm_error *err)
{
	CHECK_DS(ds);
	if (!pool->ops->receive_cleanup)
		return 0;
	return pool->ops->receive_cleanup(pool, ds, err);
}

int vm_pool_open_snapshot(struct vm_pool *pool, const char *ds, const char *snap, int *ret_fd,
			  struct vm_error *err)
{
	CHECK_DS(ds);
	CHECK_SNAP(snap);
	if (!pool->ops->open_snapshot)
		return no_op(pool, "open snapshot", err);
	return pool->ops->open_snapshot(pool, ds, snap, ret_fd, err);
}

int vm_pool_rollback(struct vm_pool *pool, const char *ds, const char *snap, struct vm_error *err)
{
	CHECK_DS(ds);
	CHECK_SNAP(snap);
	if (!pool->ops->rollback)
		return no_op(pool, "rollback", err);
	return pool->ops->rollback(pool, ds, snap, err);
}

const char *vm_pool_native_encoding(const struct vm_pool *pool)
{
	return pool->ops->native_encoding;
}

bool vm_pool_speaks(const struct vm_pool *pool, const char *encoding)
{
	return encoding && pool->ops->native_encoding &&
	       streq(pool->ops->native_encoding, encoding);
}

int pool_check_new(struct vm_pool *pool, const struct pool_dir_ops *t, const char *what,
		   const char *ds, const char *path, struct vm_error *err)
{
	_cleanup_free_ char *parent = pool_parent_name(ds), *ppath = NULL;
	struct stat st;

	if (!parent)
		return vm_error_set(err, ENOMEM, "%s %s", what, ds);
	if (lstat(path, &st) == 0)
		return vm_error_setx(err, EEXIST, "%s %s: dataset already exists", what, ds);
	if (!streq(parent, VM_POOL_NAME)) {
		ppath = vm_pool_dataset_path(pool, parent);
		if (!ppath || !t->exists(ppath))
			return vm_error_setx(err, ENOENT, "%s %s: parent dataset %s does not exist",
					     what, ds, parent);
	}
	return 0;
}

int pool_dir_create_filesystem(struct vm_pool *pool, const char *ds, struct vm_error *err)
{
	const struct pool_dir_ops *t = pool->ops->dir;
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, ds);
	int r;

	if (!path)
		return vm_error_set(err, ENOMEM, "create filesystem %s", ds);
	r = pool_check_new(pool, t, "create filesystem", ds, path, err);
	if (r < 0)
		return r;
	r = t->make(path, err);
	if (r < 0)
		return vm_error_prefix(err, "create filesystem %s", ds);
	return 0;
}

int pool_dir_create_volume(struct vm_pool *pool, const char *ds, uint64_t size,
			   struct vm_error *err)
{
	const struct pool_dir_ops *t = pool->ops->dir;
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, ds);
	_cleanup_free_ char *file = vm_pool_volume_path(pool, ds);
	struct vm_error e2;
	int r;

	if (!path || !file)
		return vm_error_set(err, ENOMEM, "create volume %s", ds);
	r = pool_check_new(pool, t, "create volume", ds, path, err);
	if (r < 0)
		return r;
	/* Sparse: refuse only what could never fit. */
	r = pool_check_space(pool, "create volume", ds, size, err);
	if (r < 0)
		return r;
	r = t->make(path, err);
	if (r < 0)
		return vm_error_prefix(err, "create volume %s", ds);
	r = pool_volume_file_create(file, size, err);
	if (r < 0) {
		t->remove(path, &e2);
		return vm_error_prefix(err, "create volume %s", ds);
	}
	return 0;
}

int pool_dir_clone(struct vm_pool *pool, const char *snap, const char *ds, uint64_t size_or_0,
		   struct vm_error *err)
{
	const struct pool_dir_ops *t = pool->ops->dir;
	_cleanup_free_ char *sds = NULL, *sname = NULL, *spath = NULL, *path = NULL;
	_cleanup_free_ char *file = NULL;
	struct vm_error e2;
	int r;

	r = pool_split_snapshot(snap, &sds, &sname, err);
	if (r < 0)
		return r;
	spath = pool_snappath(pool, sds, sname);
	path = vm_pool_dataset_path(pool, ds);
	file = vm_pool_volume_path(pool, ds);
	if (!spath || !path || !file)
		return vm_error_set(err, ENOMEM, "clone %s", snap);
	if (!t->snap_exists(spath))
		return vm_error_setx(err, ENOENT, "clone %s to %s: snapshot does not exist", snap,
				     ds);
	r = pool_check_new(pool, t, "clone to", ds, path, err);
	if (r < 0)
		return vm_error_prefix(err, "clone %s", snap);
	r = t->clone(spath, path, err);
	if (r < 0)
		return vm_error_prefix(err, "clone %s to %s", snap, ds);
	r = pool_volume_file_grow(pool, ds, file, size_or_0, err);
	if (r < 0) {
		t->remove(path, &e2);
		return vm_error_prefix(err, "clone %s to %s", snap, ds);
	}
	return 0;
}

int pool_dir_snapshot(struct vm_pool *pool, const char *ds, const char *name, struct vm_error *err)
{
	const struct pool_dir_ops *t = pool->ops->dir;
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, ds);
	_cleanup_free_ char *sdir = pool_snapdir(pool, ds);
	_cleanup_free_ char *spath = pool_snappath(pool, ds, name);
	struct stat st;
	int r;

	if (!path || !sdir || !spath)
		return vm_error_set(err, ENOMEM, "snapshot %s@%s", ds, name);
	if (!t->exists(path))
		return vm_error_setx(err, ENOENT, "snapshot %s@%s: dataset does not exist", ds,
				     name);
	if (lstat(spath, &st) == 0)
		return vm_error_setx(err, EEXIST, "snapshot %s@%s: snapshot already exists", ds,
				     name);
	r = fs_mkdir_p(sdir, 0700, err);
	if (r >= 0)
		r = t->copy(path, spath, err);
	if (r < 0)
		return vm_error_prefix(err, "snapshot %s@%s", ds, name);
	return 0;
}

int pool_dir_list_snapshots(struct vm_pool *pool, const char *ds, char ***ret, struct vm_error *err)
{
	const struct pool_dir_ops *t = pool->ops->dir;
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, ds);
	_cleanup_free_ char *sdir = pool_snapdir(pool, ds);

	if (!path || !sdir)
		return vm_error_set(err, ENOMEM, "list snapshots of %s", ds);
	if (!t->exists(path))
		return vm_error_setx(err, ENOENT, "list snapshots of %s: dataset does not exist",
				     ds);
	return pool_list_snapdir(sdir, t->snap_key, ret, err);
}

int pool_dir_destroy_snapshot(struct vm_pool *pool, const char *ds, const char *name,
			      struct vm_error *err)
{
	const struct pool_dir_ops *t = pool->ops->dir;
	_cleanup_free_ char *spath = pool_snappath(pool, ds, name);
	int r;

	if (!spath)
		return vm_error_set(err, ENOMEM, "destroy %s@%s", ds, name);
	if (!t->snap_exists(spath))
		return vm_error_setx(err, ENOENT, "destroy %s@%s: snapshot does not exist", ds,
				     name);
	r = t->remove(spath, err);
	if (r < 0)
		return vm_error_prefix(err, "destroy %s@%s", ds, name);
	return 0;
}

int pool_dir_open_snapshot(struct vm_pool *pool, const char *ds, const char *snap, int *ret_fd,
			   struct vm_error *err)
{
	const struct pool_dir_ops *t = pool->ops->dir;
	_cleanup_free_ char *spath = pool_snappath(pool, ds, snap);
	_cleanup_close_ int fd = -1;

	if (!spath)
		return vm_error_set(err, ENOMEM, "open %s@%s", ds, snap);
	if (!t->snap_exists(spath))
		return vm_error_setx(err, ENOENT, "open %s@%s: snapshot does not exist", ds, snap);
	fd = open(spath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return vm_error_set(err, errno, "open %s@%s", ds, snap);
	if (pool_dir_is_volume(spath)) {
		int img = openat(fd, VOLUME_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (img < 0)
			return vm_error_set(err, errno, "open %s@%s: its image", ds, snap);
		close(fd);
		fd = img;
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

int pool_dir_rollback(struct vm_pool *pool, const char *ds, const char *snap, struct vm_error *err)
{
	const struct pool_dir_ops *t = pool->ops->dir;
	_cleanup_free_ char *spath = pool_snappath(pool, ds, snap);
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, ds);
	_cleanup_free_ char *src = NULL, *dst = NULL;
	_cleanup_close_ int in = -1, out = -1;

	if (!spath || !path)
		return vm_error_set(err, ENOMEM, "roll %s back to @%s", ds, snap);
	if (!t->exists(path) || !t->snap_exists(spath))
		return vm_error_setx(err, ENOENT,
				     "roll %s back to @%s: the dataset or its "
				     "snapshot does not exist",
				     ds, snap);
	if (!pool_dir_is_volume(spath))
		/* its child datasets stay: they are no part of the snapshot */
		return sparse_reset_tree(spath, path, t->is_child, err);
	src = strdup_printf("%s/%s", spath, VOLUME_FILE);
	dst = vm_pool_volume_path(pool, ds);
	if (!src || !dst)
		return vm_error_set(err, ENOMEM, "roll %s back to @%s", ds, snap);
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return vm_error_set(err, errno, "open %s", src);
	out = open(dst, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (out < 0)
		return vm_error_set(err, errno, "open %s", dst);
	return sparse_copy_fd(in, out, dst, err);
}

/* rename(2), once more after clearing the immutable and append-only flags
 * of from (a directory: a dataset or its snapshots) where they stop it
 * (EPERM): a dataset's root may carry them (a native stream's, or what a
 * guest did to its own files), and a receive must still be able to put it
 * in place. */
static int rename_forced(const char *from, const char *to)
{
	_cleanup_close_ int fd = -1;

	if (rename(from, to) == 0)
		return 0;
	if (errno != EPERM)
		return -errno;
	fd = open(from, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fs_clear_nochange_flags(fd) <= 0)
		return -EPERM;
	return rename(from, to) < 0 ? -errno : 0;
}

int pool_rename_dataset(struct vm_pool *pool, const char *from, const char *to,
			struct vm_error *err)
{
	const struct pool_dir_ops *t = pool->ops->dir;
	_cleanup_free_ char *fpath = vm_pool_dataset_path(pool, from);
	_cleanup_free_ char *tpath = vm_pool_dataset_path(pool, to);
	_cleanup_free_ char *fsdir = pool_snapdir(pool, from);
	_cleanup_free_ char *tsdir = pool_snapdir(pool, to);
	_cleanup_free_ char *tsparent = NULL;
	int r;

	if (!fpath || !tpath || !fsdir || !tsdir)
		return vm_error_set(err, ENOMEM, "rename %s", from);
	if (!t->exists(fpath))
		return vm_error_setx(err, ENOENT, "rename %s: dataset does not exist", from);
	r = pool_check_new(pool, t, "rename to", to, tpath, err);
	if (r < 0)
		return vm_error_prefix(err, "rename %s", from);
	if (fs_exists(tsdir))
		return vm_error_setx(err, EEXIST, "rename %s to %s: stale snapshots at %s", from,
				     to, tsdir);
	r = rename_forced(fpath, tpath);
	if (r < 0)
		return vm_error_set(err, -r, "rename %s to %s", from, to);
	if (fs_is_dir(fsdir)) {
		tsparent = strdup(tsdir);
		if (tsparent)
			*strrchr(tsparent, '/') = '\0';
		if (!tsparent)
			r = vm_error_set(err, ENOMEM, "rename %s", from);
		else
			r = fs_mkdir_p(tsparent, 0700, err);
		if (r >= 0 && (r = rename_forced(fsdir, tsdir)) < 0)
			r = vm_error_set(err, -r, "move snapshots %s to %s", fsdir, tsdir);
		if (r < 0) {
			(void)rename(tpath, fpath);
			return vm_error_prefix(err, "rename %s to %s", from, to);
		}
	}
	return 0;
}

enum vm_dataset_kind pool_dataset_kind(struct vm_pool *pool, const char *ds)
{
	const struct pool_dir_ops *t = pool->ops->dir;
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, ds);

	if (!path || !t->exists(path))
		return VM_DS_NONE;
	return pool_dir_is_volume(path) ? VM_DS_VOLUME : VM_DS_FILESYSTEM;
}

int pool_dataset_used(struct vm_pool *pool, const char *ds, uint64_t *ret_used,
		      uint64_t *ret_volsize, struct vm_error *err)
{
	const struct pool_dir_ops *t = pool->ops->dir;
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, ds);
	_cleanup_free_ char *file = vm_pool_volume_path(pool, ds);
	struct stat st;
	uint64_t used;
	int r;

	if (!path || !file)
		return vm_error_set(err, ENOMEM, "used %s", ds);
	if (!t->exists(path))
		return vm_error_setx(err, ENOENT, "used %s: dataset does not exist", ds);
	r = pool_tree_allocated(path, t->is_child, &used, err);
	if (r < 0)
		return vm_error_prefix(err, "used %s", ds);
	if (ret_volsize)
		*ret_volsize = (lstat(file, &st) == 0 && S_ISREG(st.st_mode)) ? st.st_size : 0;
	*ret_used = used;
	return 0;
}

/* ---- native receive tools, fed through a check ---- */

/* The tool's stderr (its last size-1 bytes) as one line, without a first
 * line beginning with noise. */
static void read_errout(int memfd, const char *noise, char *buf, size_t size)
{
	off_t end = lseek(memfd, 0, SEEK_END);
	off_t from = end > (off_t)size - 1 ? end - (off_t)size + 1 : 0;
	ssize_t n = pread(memfd, buf, size - 1, from);

	buf[n > 0 ? n : 0] = '\0';
	if (noise && strncmp(buf, noise, strlen(noise)) == 0) {
		const char *rest = strchr(buf, '\n') ? strchr(buf, '\n') + 1 : "";
		n = (ssize_t)strlen(rest);
		memmove(buf, rest, (size_t)n + 1);
	}
	for (n = n > 0 ? n : 0; n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '); n--)
		buf[n - 1] = '\0';
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

int pool_run_fed(const char *const *argv, const char *name, const char *noise, int in,
		 pool_feed_fn *feed, void *ctx, struct vm_error *err)
{
	_cleanup_close_ int memfd = -1, pr = -1, pw = -1;
	struct vm_error ferr = {0};
	sigset_t pipe_set, old_set;
	char errbuf[1024];
	int pfd[2], rf, rw;
	pid_t pid;

	memfd = memfd_create("receive-stderr", MFD_CLOEXEC);
	if (memfd < 0)
		return vm_error_set(err, errno, "%s: memfd", name);
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return vm_error_set(err, errno, "%s: pipe", name);
	pr = pfd[0];
	pw = pfd[1];
	/* 1 MiB (best effort): the tool and the feeder take turns less. */
	(void)fcntl(pw, F_SETPIPE_SZ, 1 << 20);
	pid = vm_spawn_start(argv, pr, -1, memfd, err);
	if (pid < 0)
		return (int)pid;
	close(TAKE_FD(pr));

	/* A tool that dies must give us EPIPE, not kill us. */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
	rf = feed(ctx, in, pw, &ferr);
	/* Refused (or unreadable): the tool must not finish the dataset from
	 * what it has, nor see the end of its input as the end of a stream. */
	if (rf < 0 && rf != -EPIPE)
		kill(pid, SIGKILL);
	close(TAKE_FD(pw));
	if (!sigismember(&old_set, SIGPIPE)) {
		struct timespec zero = {0, 0};
		while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old_set, NULL);

	rw = vm_spawn_wait(pid, name, err);
	read_errout(memfd, noise, errbuf, sizeof(errbuf));
	if (rf < 0 && rf != -EPIPE)
		return vm_error_setx(err, -rf, "%s", ferr.msg);
	if (rw < 0) {
		char what[256];
		snprintf(what, sizeof(what), "%s", err->msg);
		return vm_error_setx(err, EIO, "%s: %s", what, errbuf[0] ? errbuf : "no message");
	}
	if (rf == -EPIPE)
		return vm_error_setx(err, EIO, "%s stopped reading early: %s", name,
				     errbuf[0] ? errbuf : "no message");
	return 0;
}
