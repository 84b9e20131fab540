/* SPDX-License-Identifier: MIT */
/*
 * The zfs pool: datasets are ZFS datasets, through the zfs and zpool tools.
 *
 *   ZPOOL                           the zpool, conf "zfs_pool" (default
 *                                   "zones"), mounted at MOUNTPOINT
 *                                   (ROOT/zones); made on first use on
 *                                   ROOT/zfs.img, a sparse file, when it
 *                                   does not exist
 *   ZPOOL/X at MOUNTPOINT/X         dataset zones/X: a ZFS filesystem whose
 *                                   mountpoint is inherited from the pool
 *   MOUNTPOINT/X/disk.raw           a volume's sparse image: zfs-fuse has no
 *                                   volumes (`zfs create -V` is not
 *                                   implemented), so a volume is a
 *                                   filesystem holding VOLUME_FILE, as in the
 *                                   dir and btrfs pools
 *   ZPOOL/X@SNAP                    snapshot zones/X@SNAP: a ZFS snapshot
 *   ZPOOL/.vmadm-open-PID-N at      a temporary read-only clone of a snapshot
 *   ROOT/.zfs-open/PID-N            that open_snapshot() hands out an fd on
 *
 * Only the syntax that zfs-fuse (0.7, pool version 23) and OpenZFS share is
 * used: no `zfs list -p` (sizes come from `zfs get -Hp`), no `receive
 * -o/-x`. Where the tool is OpenZFS's (`zfs version` works) two things
 * zfs-fuse lacks are used: zvols for volumes and resumable receives
 * (`receive -s`, `send -t`, `receive -A`); their commands come from
 * storage/zfs-cmd.c, unit-tested word for word, as they cannot run here.
 *
 * An existing zpool is used as it is and never destroyed: open() refuses
 * one mounted elsewhere than MOUNTPOINT rather than change its mountpoint.
 *
 * The native encoding is "zfs": send() writes `zfs send -p` (with -i for
 * an incremental), receive() takes it through the checks of
 * storage/zfs-stream.h into `zfs receive -u`: one substream of one dataset,
 * from the expected base, its properties never applied.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/pool-private.h"
#include "storage/pool.h"
#include "storage/zfs-cmd.h"
#include "storage/zfs-stream.h"
#include "util/fs.h"
#include "util/lock.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/spawn.h"

#define ZFS_IMAGE	 "zfs.img"
#define ZFS_OPEN_DIR	 ".zfs-open"
#define ZFS_OPEN_PREFIX	 ".vmadm-open-"
#define ZFS_DEFAULT_POOL "zones"
/* payloads pass through a buffer of this size */
#define ZFS_FEED_BUF (1u << 20)
/* zfs refuses vdevs below 64 MiB */
#define ZFS_MIN_SIZE (128ULL * 1024 * 1024)

struct zfs_priv {
	char *zpool;   /* the zpool's name */
	char *opendir; /* ROOT/.zfs-open */
	char **clones; /* temporary clones open_snapshot made (NULL-terminated) */
	size_t n_clones;
	bool volumes; /* new volumes are zvols (OpenZFS), not image files */
	bool openzfs; /* the tool is OpenZFS's: zvols may exist, receives keep a
		       * cut one's state (receive -s); zfs-fuse has neither */
};

static struct zfs_priv *priv(struct vm_pool *pool)
{
	return pool->priv;
}

/* The ZFS name of dataset (or snapshot) ds = "zones/REST[@SNAP]":
 * "ZPOOL/REST[@SNAP]". */
static char *zname(struct vm_pool *pool, const char *ds)
{
	size_t n = strlen(VM_POOL_NAME);

	if (strncmp(ds, VM_POOL_NAME, n) == 0 && ds[n] == '/')
		ds += n + 1;
	return strdup_printf("%s/%s", priv(pool)->zpool, ds);
}

static char *zsnapname(struct vm_pool *pool, const char *ds, const char *snap)
{
	_cleanup_free_ char *z = zname(pool, ds);
	return z ? strdup_printf("%s@%s", z, snap) : NULL;
}

/* Run argv; with ret_out, its stdout (malloc'ed). err gets the tool's
 * stderr on failure. */
static int run(const char *const *argv, char **ret_out, struct vm_error *err)
{
	struct vm_spawn sp = {
	    .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .capture_stdout = !!ret_out};
	int r = vm_spawn_run(&sp, err);

	if (r >= 0 && ret_out) {
		*ret_out = sp.out ? TAKE_PTR(sp.out) : strdup("");
		if (!*ret_out)
			r = vm_error_set(err, ENOMEM, "%s", argv[0]);
	}
	vm_spawn_clear(&sp);
	return r;
}

/* One property value of a dataset, snapshot or pool, NULL when it does not
 * exist (or the tool fails). */
static char *zget(const char *zds, const char *prop)
{
	/* zfs get -Hp -o value PROP ZDS */
	const char *argv[] = {"zfs", "get", "-Hp", "-o", "value", prop, zds, NULL};
	struct vm_error e2;
	char *out = NULL;

	if (run(argv, &out, &e2) < 0)
		return NULL;
	out[strcspn(out, "\n")] = '\0';
	return out;
}

static int zget_u64(const char *zds, const char *prop, const char *what, uint64_t *ret,
		    struct vm_error *err)
{
	_cleanup_free_ char *v = zget(zds, prop);
	char *end;

	if (!v)
		return vm_error_setx(err, ENOENT, "%s: cannot read %s of %s", what, prop, zds);
	errno = 0;
	*ret = strtoull(v, &end, 10);
	if (errno || end == v || *end)
		return vm_error_setx(err, EIO, "%s: %s of %s is '%s', not a number", what, prop,
				     zds, v);
	return 0;
}

/* "filesystem", "volume", "snapshot", or NULL when zds does not exist. */
static char *ztype(const char *zds)
{
	return zget(zds, "type");
}

static bool zexists(const char *zds)
{
	_cleanup_free_ char *t = ztype(zds);
	return t != NULL;
}

/* Is zds a ZFS volume (a zvol)? Never on zfs-fuse, which has none: no
 * command asked there. */
static bool is_zvol(struct vm_pool *pool, const char *zds)
{
	_cleanup_free_ char *t = NULL;

	if (!priv(pool)->openzfs)
		return false;
	t = ztype(zds);
	return t && streq(t, "volume");
}

/* Run a zfs command that unmounts a dataset (destroy, rename), again while
 * it fails with "busy" for up to 5 seconds: zfs-fuse learns only a moment
 * after a close (FUSE's release is asynchronous) that a file is no longer
 * open. */
static int run_unbusy(const char *const *argv, struct vm_error *err)
{
	int r = 0;

	for (int i = 0; i < 20; i++) {
		r = run(argv, NULL, err);
		if (r >= 0 || !strstr(err->msg, "busy"))
			break;
		usleep(250 * 1000);
	}
	return r;
}

/* The filesystems of zds and its children, parents first, that are
 * mounted (mounted true) or not (false): a NULL-terminated vector, NULL
 * when zds does not exist or is a volume. One command for the whole tree. */
static char **ztree(const char *zds, bool mounted)
{
	/* zfs list -H -o name,mounted -t filesystem -r ZDS */
	const char *argv[] = {"zfs", "list",	   "-H", "-o", "name,mounted",
			      "-t",  "filesystem", "-r", zds,  NULL};
	_cleanup_free_ char *out = NULL;
	_cleanup_strv_ char **v = NULL;
	struct vm_error e2;
	char *line, *save = NULL;
	size_t n = 0;

	if (run(argv, &out, &e2) < 0)
		return NULL;
	v = calloc(1, sizeof(char *));
	for (line = strtok_r(out, "\n", &save); v && line; line = strtok_r(NULL, "\n", &save)) {
		char *tab = strchr(line, '\t'), **nv;

		if (!tab || streq(tab + 1, "yes") != mounted)
			continue;
		*tab = '\0';
		nv = realloc(v, (n + 2) * sizeof(char *));
		if (!nv)
			return NULL;
		v = nv;
		v[n + 1] = NULL;
		v[n] = strdup(line);
		if (!v[n++])
			return NULL;
	}
	return TAKE_PTR(v);
}

/* Unmount zds and its children, deepest first, with `zfs umount`: zfs-fuse
 * reports "dataset is busy" when destroy or rename unmount a mounted
 * dataset themselves, but not when it was unmounted before. Errors are left
 * to the command that follows (a dataset in use stays mounted, and that
 * command says so). */
static void zunmount_tree(const char *zds)
{
	_cleanup_strv_ char **v = ztree(zds, true);
	size_t n = 0;

	while (v && v[n])
		n++;
	while (n-- > 0) {
		/* zfs umount NAME */
		const char *argv[] = {"zfs", "umount", v[n], NULL};
		struct vm_error e2;

		(void)run_unbusy(argv, &e2);
	}
}

/* Mount zds and its children, parents first (after a rename). */
static int zmount_tree(const char *zds, struct vm_error *err)
{
	_cleanup_strv_ char **v = ztree(zds, false);

	for (size_t i = 0; v && v[i]; i++) {
		/* zfs mount NAME */
		const char *argv[] = {"zfs", "mount", v[i], NULL};
		int r;

		r = run(argv, NULL, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Destroy zds (a snapshot, or a dataset: unmounted first), with -r its
 * snapshots and children; errors in err. */
static int zdestroy(const char *zds, bool recursive, struct vm_error *err)
{
	/* zfs destroy [-r] ZDS */
	const char *argv[] = {"zfs", "destroy", recursive ? "-r" : zds, recursive ? zds : NULL,
			      NULL};

	if (!strchr(zds, '@'))
		zunmount_tree(zds);
	return run_unbusy(argv, err);
}

/* ---- temporary clones for open_snapshot ---- */

/* Destroy temporary clone clone (mounted at ROOT/.zfs-open/ID). */
static int destroy_open_clone(struct vm_pool *pool, const char *clone, struct vm_error *err)
{
	const char *id = strrchr(clone, '/') + 1 + strlen(ZFS_OPEN_PREFIX);
	_cleanup_free_ char *mnt = strdup_printf("%s/%s", priv(pool)->opendir, id);
	int r = zdestroy(clone, false, err);

	if (r >= 0 && mnt)
		(void)rmdir(mnt);
	return r;
}

/* Destroy the temporary clones this pool's open_snapshot() made that no fd
 * holds any more (one still held is busy: it stays, for the next sweep or
 * the next process's). */
static void sweep_own_clones(struct vm_pool *pool)
{
	struct zfs_priv *p = priv(pool);
	size_t k = 0;

	for (size_t i = 0; i < p->n_clones; i++) {
		struct vm_error e2;

		if (destroy_open_clone(pool, p->clones[i], &e2) >= 0) {
			free(p->clones[i]);
			continue;
		}
		vm_debug("temporary clone %s stays: %s", p->clones[i], e2.msg);
		p->clones[k++] = p->clones[i];
	}
	p->n_clones = k;
	if (p->clones)
		p->clones[k] = NULL;
}

/* Destroy the temporary clones of processes that are gone (killed before
 * their pool's close). Those of running processes are theirs. */
static void sweep_dead_clones(struct vm_pool *pool)
{
	struct zfs_priv *p = priv(pool);
	/* zfs list -H -o name -r ZPOOL */
	const char *argv[] = {"zfs", "list", "-H", "-o", "name", "-r", p->zpool, NULL};
	_cleanup_free_ char *out = NULL,
			    *prefix = strdup_printf("%s/%s", p->zpool, ZFS_OPEN_PREFIX);
	struct vm_error e2;
	char *line, *save = NULL;

	if (!prefix || run(argv, &out, &e2) < 0)
		return;
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		long pid;

		if (strncmp(line, prefix, strlen(prefix)) != 0 || strchr(line, '@'))
			continue;
		pid = strtol(line + strlen(prefix), NULL, 10);
		if (pid <= 0 || pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		if (destroy_open_clone(pool, line, &e2) < 0)
			vm_debug("temporary clone %s stays: %s", line, e2.msg);
	}
}

/* ---- opening the pool ---- */

static bool zpool_name_ok(const char *n)
{
	if (!n || !((n[0] >= 'a' && n[0] <= 'z') || (n[0] >= 'A' && n[0] <= 'Z')) ||
	    strlen(n) > 200)
		return false;
	for (; *n; n++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-",
			    *n))
			return false;
	return true;
}

static bool zpool_exists(const char *zpool)
{
	/* zpool list -H -o name ZPOOL */
	const char *argv[] = {"zpool", "list", "-H", "-o", "name", zpool, NULL};
	struct vm_error e2;

	return run(argv, NULL, &e2) >= 0;
}

/* Make the zpool on a new sparse file img, mounted at the mount point,
 * which must be missing or empty. On failure the file is removed. */
static int zpool_make(struct vm_pool *pool, const char *img, struct vm_error *err)
{
	struct zfs_priv *p = priv(pool);
	int r;

	if (fs_is_dir(pool->mountpoint) && rmdir(pool->mountpoint) < 0)
		return vm_error_set(err, errno,
				    "%s exists and is not an empty directory, and zpool %s "
				    "does not exist",
				    pool->mountpoint, p->zpool);
	r = pool_image_create(pool, img, ZFS_MIN_SIZE, "zfs", err);
	if (r < 0)
		return r;
	{
		/* zpool create -m MOUNTPOINT ZPOOL IMG */
		const char *argv[] = {"zpool",	"create", "-m", pool->mountpoint,
				      p->zpool, img,	  NULL};
		r = run(argv, NULL, err);
	}
	if (r < 0)
		unlink(img);
	return r;
}

/* Undo zpool_make() after a later step of the same open failed: only a
 * zpool this very call made, so nothing of it can be anyone's yet. */
static void zpool_unmake(struct vm_pool *pool, const char *img)
{
	/* zpool destroy ZPOOL */
	const char *argv[] = {"zpool", "destroy", priv(pool)->zpool, NULL};
	struct vm_error e2;

	zunmount_tree(priv(pool)->zpool);
	if (run_unbusy(argv, &e2) >= 0)
		unlink(img);
}

/* Is the zfs tool OpenZFS's (`zfs version` works)? zfs-fuse has no such
 * command, and neither volumes nor resumable receives. */
static bool is_openzfs(void)
{
	struct zfs_argv a;
	struct vm_error e2;

	zfs_cmd_version(&a);
	return run(a.argv, NULL, &e2) >= 0;
}

static int zfs_open(struct vm_pool *pool, struct vm_error *err)
{
	json_t *j = json_object_get(pool->conf, "zfs_pool");
	const char *zp = j ? json_string_value(j) : ZFS_DEFAULT_POOL;
	_cleanup_free_ char *img = strdup_printf("%s/%s", pool->root, ZFS_IMAGE);
	_cleanup_free_ char *lockp = strdup_printf("%s/.pool.lock", pool->root);
	_cleanup_free_ char *mp = NULL, *mounted = NULL;
	_cleanup_close_ int lock = -1;
	struct zfs_priv *p;
	bool made = false;
	int r;

	if (!zpool_name_ok(zp))
		return vm_error_setx(err, EINVAL,
				     "vmadm.conf: zfs_pool must be a zpool name (a letter, then "
				     "[A-Za-z0-9_.:-])");
	if (!img || !lockp)
		return vm_error_set(err, ENOMEM, "open zfs pool");
	p = calloc(1, sizeof(*p));
	if (!p)
		return vm_error_set(err, ENOMEM, "open zfs pool");
	pool->priv = p;
	p->zpool = strdup(zp);
	p->opendir = strdup_printf("%s/%s", pool->root, ZFS_OPEN_DIR);
	if (!p->zpool || !p->opendir) {
		r = vm_error_set(err, ENOMEM, "open zfs pool");
		goto fail;
	}
	r = fs_mkdir_p(pool->root, 0755, err);
	if (r < 0)
		goto fail;
	/* Two commands opening a fresh node at once must not both create. */
	lock = vm_lock_file(lockp, 60, "pool", err);
	if (lock < 0) {
		r = lock;
		goto fail;
	}
	if (!zpool_exists(zp)) {
		if (fs_exists(img)) {
			/* the daemon forgot it (a new machine state): import it */
			/* zpool import -d ROOT ZPOOL */
			const char *argv[] = {"zpool", "import", "-d", pool->root, zp, NULL};
			r = run(argv, NULL, err);
		} else {
			r = zpool_make(pool, img, err);
			made = r >= 0;
		}
		if (r < 0)
			goto fail;
	}
	mp = zget(zp, "mountpoint");
	mounted = zget(zp, "mounted");
	if (!mp || !streq(mp, pool->mountpoint)) {
		r = vm_error_setx(err, EMEDIUMTYPE,
				  "zpool %s is mounted at %s, not at %s where this node keeps its "
				  "datasets (vmadm does not change an existing zpool: set "
				  "zfs_pool, or its mountpoint)",
				  zp, mp ? mp : "?", pool->mountpoint);
		goto fail;
	}
	if (!mounted || !streq(mounted, "yes")) {
		/* zfs mount ZPOOL */
		const char *argv[] = {"zfs", "mount", zp, NULL};
		r = run(argv, NULL, err);
		if (r < 0)
			goto fail;
	}
	/* conf "zfs_volumes" (true or false) decides where it is set */
	p->openzfs = is_openzfs();
	p->volumes = json_is_boolean(json_object_get(pool->conf, "zfs_volumes"))
			 ? json_is_true(json_object_get(pool->conf, "zfs_volumes"))
			 : p->openzfs;
	r = pool_restrict_mountpoint(pool, err);
	if (r >= 0)
		r = fs_mkdir_p(p->opendir, 0700, err);
	if (r < 0)
		goto fail;
	sweep_dead_clones(pool);
	return 0;
fail:
	if (made)
		zpool_unmake(pool, img);
	free(p->zpool);
	free(p->opendir);
	free(p);
	pool->priv = NULL;
	return vm_error_prefix(err, "open zfs pool %s", zp);
}

static void zfs_close(struct vm_pool *pool)
{
	struct zfs_priv *p = priv(pool);

	if (!p)
		return;
	sweep_own_clones(pool);
	strv_free(p->clones);
	free(p->zpool);
	free(p->opendir);
	free(p);
	pool->priv = NULL;
}

/* ---- datasets ---- */

/* May ds (ZFS name zds) be created? -EEXIST, or -ENOENT without its parent. */
static int check_new(struct vm_pool *pool, const char *what, const char *ds, const char *zds,
		     struct vm_error *err)
{
	_cleanup_free_ char *parent = pool_parent_name(ds), *zparent = NULL;

	if (!parent)
		return vm_error_set(err, ENOMEM, "%s %s", what, ds);
	if (zexists(zds))
		return vm_error_setx(err, EEXIST, "%s %s: dataset already exists", what, ds);
	if (!streq(parent, VM_POOL_NAME)) {
		zparent = zname(pool, parent);
		if (!zparent || !zexists(zparent))
			return vm_error_setx(err, ENOENT, "%s %s: parent dataset %s does not exist",
					     what, ds, parent);
	}
	return 0;
}

static int zcreate(const char *zds, struct vm_error *err)
{
	/* zfs create ZDS */
	const char *argv[] = {"zfs", "create", zds, NULL};
	return run(argv, NULL, err);
}

static int zfs_create_filesystem(struct vm_pool *pool, const char *ds, struct vm_error *err)
{
	_cleanup_free_ char *zds = zname(pool, ds);
	int r;

	if (!zds)
		return vm_error_set(err, ENOMEM, "create filesystem %s", ds);
	r = check_new(pool, "create filesystem", ds, zds, err);
	if (r < 0)
		return r;
	r = zcreate(zds, err);
	if (r < 0)
		return vm_error_prefix(err, "create filesystem %s", ds);
	return 0;
}

/* Wait (up to 10 s) for udev to make the block device of new volume zds
 * (or of a clone of one). */
static int wait_zvol(const char *zds, struct vm_error *err)
{
	_cleanup_free_ char *dev = zfs_zvol_path(zds);

	if (!dev)
		return vm_error_set(err, ENOMEM, "%s", zds);
	for (int i = 0; i < 100; i++) {
		if (fs_exists(dev))
			return 0;
		usleep(100 * 1000);
	}
	return vm_error_setx(err, ETIMEDOUT, "volume %s: no device %s after 10 s", zds, dev);
}

/* Grow zvol zds to size_or_0 when that is larger (0: keep). */
static int zvol_grow(struct vm_pool *pool, const char *ds, const char *zds, uint64_t size_or_0,
		     struct vm_error *err)
{
	struct zfs_argv a;
	uint64_t have;
	int r = zget_u64(zds, "volsize", "grow volume", &have, err);

	if (r < 0 || size_or_0 <= have)
		return r;
	r = pool_check_space(pool, "grow volume", ds, size_or_0 - have, err);
	if (r < 0)
		return r;
	zfs_cmd_set_volsize(&a, zds, size_or_0);
	return run(a.argv, NULL, err);
}

static int zfs_create_volume(struct vm_pool *pool, const char *ds, uint64_t size,
			     struct vm_error *err)
{
	_cleanup_free_ char *zds = zname(pool, ds);
	_cleanup_free_ char *file = vm_pool_volume_path(pool, ds);
	struct vm_error e2;
	int r;

	if (!zds || !file)
		return vm_error_set(err, ENOMEM, "create volume %s", ds);
	r = check_new(pool, "create volume", ds, zds, err);
	if (r < 0)
		return r;
	/* Sparse: refuse only what could never fit. */
	r = pool_check_space(pool, "create volume", ds, size, err);
	if (r < 0)
		return r;
	if (priv(pool)->volumes) {
		struct zfs_argv a;

		zfs_cmd_create_volume(&a, zds, size);
		r = run(a.argv, NULL, err);
		if (r >= 0) {
			r = wait_zvol(zds, err);
			if (r < 0)
				zdestroy(zds, false, &e2);
		}
	} else {
		r = zcreate(zds, err);
		if (r >= 0) {
			r = pool_volume_file_create(file, size, err);
			if (r < 0)
				zdestroy(zds, false, &e2);
		}
	}
	if (r < 0)
		return vm_error_prefix(err, "create volume %s", ds);
	return 0;
}

static int zfs_clone(struct vm_pool *pool, const char *snap, const char *ds, uint64_t size_or_0,
		     struct vm_error *err)
{
	_cleanup_free_ char *zsnap = zname(pool, snap), *zds = zname(pool, ds);
	_cleanup_free_ char *file = vm_pool_volume_path(pool, ds), *t = NULL;
	struct vm_error e2;
	int r;

	if (!zsnap || !zds || !file)
		return vm_error_set(err, ENOMEM, "clone %s", snap);
	t = ztype(zsnap);
	if (!t || !streq(t, "snapshot"))
		return vm_error_setx(err, ENOENT, "clone %s to %s: snapshot does not exist", snap,
				     ds);
	r = check_new(pool, "clone to", ds, zds, err);
	if (r < 0)
		return vm_error_prefix(err, "clone %s", snap);
	{
		/* zfs clone ZPOOL/X@SNAP ZDS */
		const char *argv[] = {"zfs", "clone", zsnap, zds, NULL};
		r = run(argv, NULL, err);
	}
	if (r < 0)
		return vm_error_prefix(err, "clone %s to %s", snap, ds);
	if (is_zvol(pool, zds)) {
		r = wait_zvol(zds, err);
		if (r >= 0)
			r = zvol_grow(pool, ds, zds, size_or_0, err);
	} else {
		r = pool_volume_file_grow(pool, ds, file, size_or_0, err);
	}
	if (r < 0) {
		zdestroy(zds, false, &e2);
		return vm_error_prefix(err, "clone %s to %s", snap, ds);
	}
	return 0;
}

static int zfs_snapshot(struct vm_pool *pool, const char *ds, const char *name,
			struct vm_error *err)
{
	_cleanup_free_ char *zds = zname(pool, ds), *zsnap = zsnapname(pool, ds, name);
	int r;

	if (!zds || !zsnap)
		return vm_error_set(err, ENOMEM, "snapshot %s@%s", ds, name);
	{
		/* zfs snapshot ZDS@NAME (refuses a missing dataset and an
		 * existing snapshot itself: the reason is asked only then) */
		const char *argv[] = {"zfs", "snapshot", zsnap, NULL};
		r = run(argv, NULL, err);
	}
	if (r < 0 && !zexists(zds))
		return vm_error_setx(err, ENOENT, "snapshot %s@%s: dataset does not exist", ds,
				     name);
	if (r < 0 && zexists(zsnap))
		return vm_error_setx(err, EEXIST, "snapshot %s@%s: snapshot already exists", ds,
				     name);
	if (r < 0)
		return vm_error_prefix(err, "snapshot %s@%s", ds, name);
	return 0;
}

static int zfs_list_snapshots(struct vm_pool *pool, const char *ds, char ***ret,
			      struct vm_error *err)
{
	_cleanup_free_ char *zds = zname(pool, ds), *out = NULL;
	_cleanup_strv_ char **v = NULL;
	size_t n = 0, len;
	char *line, *save = NULL;
	int r;

	if (!zds)
		return vm_error_set(err, ENOMEM, "list snapshots of %s", ds);
	{
		/* zfs list -H -t snapshot -o name -r ZDS (oldest first; children's
		 * snapshots filtered out below) */
		const char *argv[] = {"zfs", "list", "-H", "-t", "snapshot",
				      "-o",  "name", "-r", zds,	 NULL};
		r = run(argv, &out, err);
	}
	if (r < 0 && !zexists(zds))
		return vm_error_setx(err, ENOENT, "list snapshots of %s: dataset does not exist",
				     ds);
	if (r < 0)
		return vm_error_prefix(err, "list snapshots of %s", ds);
	v = calloc(1, sizeof(char *));
	if (!v)
		return vm_error_set(err, ENOMEM, "list snapshots of %s", ds);
	len = strlen(zds);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char **nv;

		if (strncmp(line, zds, len) != 0 || line[len] != '@')
			continue;
		nv = realloc(v, (n + 2) * sizeof(char *));
		if (!nv)
			return vm_error_set(err, ENOMEM, "list snapshots of %s", ds);
		v = nv;
		v[n] = strdup(line + len + 1);
		v[++n] = NULL;
		if (!v[n - 1])
			return vm_error_set(err, ENOMEM, "list snapshots of %s", ds);
	}
	*ret = TAKE_PTR(v);
	return 0;
}

static int zfs_destroy_snapshot(struct vm_pool *pool, const char *ds, const char *name,
				struct vm_error *err)
{
	_cleanup_free_ char *zsnap = zsnapname(pool, ds, name);
	int r;

	if (!zsnap)
		return vm_error_set(err, ENOMEM, "destroy %s@%s", ds, name);
	/* a temporary clone of it that no fd holds any more would stop it */
	sweep_own_clones(pool);
	r = zdestroy(zsnap, false, err);
	if (r < 0 && !zexists(zsnap))
		return vm_error_setx(err, ENOENT, "destroy %s@%s: snapshot does not exist", ds,
				     name);
	if (r < 0)
		return vm_error_prefix(err, "destroy %s@%s", ds, name);
	return 0;
}

/* The first child dataset of zds, as a vmadm name (ds/REST), or NULL. */
static char *first_child(struct vm_pool *pool, const char *ds, const char *zds)
{
	/* zfs list -H -o name -r ZDS */
	const char *argv[] = {"zfs", "list", "-H", "-o", "name", "-r", zds, NULL};
	_cleanup_free_ char *out = NULL;
	struct vm_error e2;
	size_t len = strlen(zds);
	char *line, *save = NULL;

	if (run(argv, &out, &e2) < 0)
		return NULL;
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, zds, len) == 0 && line[len] == '/')
			return strdup_printf("%s%s", ds, line + len);
	return NULL;
}

static int zfs_destroy(struct vm_pool *pool, const char *ds, bool recursive, struct vm_error *err)
{
	_cleanup_free_ char *zds = zname(pool, ds), *path = vm_pool_dataset_path(pool, ds);
	_cleanup_free_ char *child = NULL;
	int r;

	if (!zds || !path)
		return vm_error_set(err, ENOMEM, "destroy %s", ds);
	if (!zexists(zds))
		return vm_error_setx(err, ENOENT, "destroy %s: dataset does not exist", ds);
	if (!recursive && (child = first_child(pool, ds, zds)))
		return vm_error_setx(err, EBUSY,
				     "destroy %s: has child dataset %s (destroy recursively)", ds,
				     child);
	sweep_own_clones(pool);
	/* -r: its snapshots (and, when recursive, its children, checked above).
	 * Never -R: clones made from its snapshots (VMs of an image) are other
	 * datasets, and zfs refuses while they exist. */
	r = zdestroy(zds, true, err);
	if (r < 0)
		return vm_error_prefix(err, "destroy %s", ds);
	/* zfs-fuse may leave the empty mount point directory */
	(void)rmdir(path);
	return 0;
}

static int zfs_rename(struct vm_pool *pool, const char *from, const char *to, struct vm_error *err)
{
	_cleanup_free_ char *zfrom = zname(pool, from), *zto = zname(pool, to);
	int r;

	if (!zfrom || !zto)
		return vm_error_set(err, ENOMEM, "rename %s", from);
	/* zfs rename refuses a missing source, an existing target and a
	 * missing parent itself: the reason is asked only when it failed */
	zunmount_tree(zfrom);
	{
		/* zfs rename ZFROM ZTO */
		const char *argv[] = {"zfs", "rename", zfrom, zto, NULL};
		r = run_unbusy(argv, err);
	}
	if (r < 0) {
		struct vm_error e2;
		(void)zmount_tree(zfrom, &e2);
		if (!zexists(zfrom))
			return vm_error_setx(err, ENOENT, "rename %s: dataset does not exist",
					     from);
		if (check_new(pool, "rename to", to, zto, &e2) < 0) {
			*err = e2;
			return vm_error_prefix(err, "rename %s", from);
		}
		return vm_error_prefix(err, "rename %s to %s", from, to);
	}
	r = zmount_tree(zto, err);
	if (r < 0)
		return vm_error_prefix(err, "rename %s to %s: mount it", from, to);
	return 0;
}

/* A zvol's stable device name; else (zfs-fuse, or a volume made before the
 * pool had zvols) the generic image file. */
static char *zfs_volume_path(struct vm_pool *pool, const char *ds)
{
	_cleanup_free_ char *zds = zname(pool, ds), *t = NULL;
	size_t n = strlen(VM_POOL_NAME);
	const char *rest = strncmp(ds, VM_POOL_NAME "/", n + 1) == 0 ? ds + n + 1 : ds;

	if (!zds)
		return NULL;
	if (priv(pool)->openzfs && (t = ztype(zds)) ? streq(t, "volume") : priv(pool)->volumes)
		return zfs_zvol_path(zds);
	return strdup_printf("%s/%s/%s", pool->mountpoint, rest, VOLUME_FILE);
}

static enum vm_dataset_kind zfs_kind(struct vm_pool *pool, const char *ds)
{
	_cleanup_free_ char *zds = zname(pool, ds), *path = vm_pool_dataset_path(pool, ds);
	_cleanup_free_ char *t = zds ? ztype(zds) : NULL;

	if (!t || !path)
		return VM_DS_NONE;
	if (streq(t, "volume"))
		return VM_DS_VOLUME;
	if (!streq(t, "filesystem"))
		return VM_DS_NONE;
	return pool_dir_is_volume(path) ? VM_DS_VOLUME : VM_DS_FILESYSTEM;
}

/* ZFS's "referenced": what the dataset's own tree holds, children not
 * included, blocks shared with snapshots and clones counted in each. ZFS
 * counts a write once its transaction group is committed (within about 30
 * seconds on zfs-fuse; fsync and syncfs do not hurry it), so what was just
 * written may not show yet. */
static int zfs_used(struct vm_pool *pool, const char *ds, uint64_t *ret_used, uint64_t *ret_volsize,
		    struct vm_error *err)
{
	_cleanup_free_ char *zds = zname(pool, ds), *file = NULL;
	struct stat st;
	int r;

	if (!zds)
		return vm_error_set(err, ENOMEM, "used %s", ds);
	/* one command when all is well; the reason asked only when not */
	r = zget_u64(zds, "referenced", "used", ret_used, err);
	if (r < 0 && !zexists(zds))
		return vm_error_setx(err, ENOENT, "used %s: dataset does not exist", ds);
	if (r < 0)
		return vm_error_prefix(err, "used %s", ds);
	if (!ret_volsize)
		return 0;
	if (is_zvol(pool, zds))
		return zget_u64(zds, "volsize", "used", ret_volsize, err);
	file = vm_pool_volume_path(pool, ds);
	if (!file)
		return vm_error_set(err, ENOMEM, "used %s", ds);
	*ret_volsize = (lstat(file, &st) == 0 && S_ISREG(st.st_mode)) ? st.st_size : 0;
	return 0;
}

/* OpenZFS's logicalreferenced; zfs-fuse has none, and there referenced
 * times compressratio (storage/zfs-cmd.h says where that overstates).
 * The ratio, printed to two decimals, is rounded up by the data limit's
 * slack (stream_dataset_data_limit). */
static int zfs_snapshot_used(struct vm_pool *pool, const char *ds, const char *snap, uint64_t *ret,
			     struct vm_error *err)
{
	_cleanup_free_ char *zsnap = zsnapname(pool, ds, snap), *out = NULL;
	bool openzfs = priv(pool)->openzfs;
	struct zfs_argv a;

	if (!zsnap)
		return vm_error_set(err, ENOMEM, "measure %s@%s", ds, snap);
	zfs_cmd_snapshot_size(&a, zsnap, openzfs);
	if (run(a.argv, &out, err) < 0) {
		if (!zexists(zsnap))
			return vm_error_setx(err, ENOENT, "measure %s@%s: snapshot does not exist",
					     ds, snap);
		return vm_error_prefix(err, "measure %s@%s", ds, snap);
	}
	if (zfs_snapshot_size_parse(out, openzfs, ret) < 0)
		return vm_error_setx(err, EIO, "measure %s@%s: zfs get said '%.60s'", ds, snap,
				     out);
	return 0;
}

static int zfs_set_quota(struct vm_pool *pool, const char *ds, uint64_t bytes, struct vm_error *err)
{
	_cleanup_free_ char *zds = zname(pool, ds);
	struct zfs_argv a;
	int r;

	if (!zds)
		return vm_error_set(err, ENOMEM, "quota of %s", ds);
	if (!zexists(zds))
		return vm_error_setx(err, ENOENT, "quota of %s: dataset does not exist", ds);
	zfs_cmd_set_quota(&a, zds, bytes);
	r = run(a.argv, NULL, err);
	if (r < 0)
		return vm_error_prefix(err, "quota of %s", ds);
	return 0;
}

static int zfs_available(struct vm_pool *pool, uint64_t *ret, struct vm_error *err)
{
	return zget_u64(priv(pool)->zpool, "available", "pool space", ret, err);
}

/* zfs-fuse has no snapshot directory (.zfs/snapshot, even with
 * snapdir=visible), so the fd is on a temporary clone of the snapshot,
 * read-only, mounted in ROOT/.zfs-open (mode 0700). The fd keeps the clone
 * busy, so it stays usable until closed; the clone is destroyed by the next
 * destroy of its snapshot or dataset, or the pool's close, in this process
 * (a clone still held stays), or by any later open once this process is
 * gone. */
/* Numbers the temporary clones of this process (pools of several threads
 * included). */
static unsigned open_seq;

static int zfs_open_snapshot(struct vm_pool *pool, const char *ds, const char *snap, int *ret_fd,
			     struct vm_error *err)
{
	struct zfs_priv *p = priv(pool);
	_cleanup_free_ char *zsnap = zsnapname(pool, ds, snap), *t = NULL, *zds = NULL;
	_cleanup_free_ char *id = NULL, *clone = NULL, *mnt = NULL, *mntopt = NULL;
	bool zvol;
	_cleanup_close_ int fd = -1;
	struct vm_error e2;
	int r;

	if (!zsnap)
		return vm_error_set(err, ENOMEM, "open %s@%s", ds, snap);
	t = ztype(zsnap);
	if (!t || !streq(t, "snapshot"))
		return vm_error_setx(err, ENOENT, "open %s@%s: snapshot does not exist", ds, snap);
	zds = zname(pool, ds);
	zvol = zds && is_zvol(pool, zds);
	id = strdup_printf("%ld-%u", (long)getpid(),
			   __atomic_fetch_add(&open_seq, 1, __ATOMIC_SEQ_CST));
	if (id) {
		clone = strdup_printf("%s/%s%s", p->zpool, ZFS_OPEN_PREFIX, id);
		mnt = strdup_printf("%s/%s", p->opendir, id);
		mntopt = strdup_printf("mountpoint=%s", mnt);
	}
	if (!clone || !mnt || !mntopt)
		return vm_error_set(err, ENOMEM, "open %s@%s", ds, snap);
	if (zvol) {
		/* zfs clone -o readonly=on ZDS@SNAP ZPOOL/.vmadm-open-PID-N (a zvol's:
		 * no mountpoint; its device is the fd) */
		const char *argv[] = {"zfs", "clone", "-o", "readonly=on", zsnap, clone, NULL};
		r = run(argv, NULL, err);
	} else {
		/* zfs clone -o readonly=on -o mountpoint=ROOT/.zfs-open/PID-N ZDS@SNAP
		 *   ZPOOL/.vmadm-open-PID-N */
		const char *argv[] = {"zfs",  "clone", "-o",  "readonly=on", "-o",
				      mntopt, zsnap,   clone, NULL};
		r = run(argv, NULL, err);
	}
	if (r < 0)
		return vm_error_prefix(err, "open %s@%s", ds, snap);
	if (zvol) {
		_cleanup_free_ char *dev = zfs_zvol_path(clone);

		r = dev ? wait_zvol(clone, err) : vm_error_set(err, ENOMEM, "open");
		fd = r < 0 ? -1 : fs_open_image(dev, O_RDONLY);
		if (r >= 0 && fd < 0)
			r = vm_error_set(err, -fd, "open %s@%s at %s", ds, snap, dev);
	} else if ((fd = open(mnt, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		r = vm_error_set(err, errno, "open %s@%s at %s", ds, snap, mnt);
	} else if (pool_dir_is_volume(mnt)) {
		int img = openat(fd, VOLUME_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (img < 0)
			r = vm_error_set(err, errno, "open %s@%s: its image", ds, snap);
		else {
			close(fd);
			fd = img;
		}
	}
	if (r >= 0) {
		/* remembered, for the sweeps once the fd is closed */
		char **nv = realloc(p->clones, (p->n_clones + 2) * sizeof(char *));

		if (!nv) {
			r = vm_error_set(err, ENOMEM, "open %s@%s", ds, snap);
		} else {
			p->clones = nv;
			p->clones[p->n_clones++] = TAKE_PTR(clone);
			p->clones[p->n_clones] = NULL;
		}
	}
	if (r < 0) {
		if (fd >= 0)
			close(TAKE_FD(fd));
		if (destroy_open_clone(pool, clone, &e2) < 0)
			vm_debug("temporary clone %s stays: %s", clone, e2.msg);
		return r;
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

static int zfs_rollback(struct vm_pool *pool, const char *ds, const char *snap,
			struct vm_error *err)
{
	_cleanup_free_ char *zds = zname(pool, ds), *zsnap = zsnapname(pool, ds, snap);
	int r;

	if (!zds || !zsnap)
		return vm_error_set(err, ENOMEM, "roll %s back to @%s", ds, snap);
	if (!zexists(zds) || !zexists(zsnap))
		return vm_error_setx(err, ENOENT,
				     "roll %s back to @%s: the dataset or its snapshot does not "
				     "exist",
				     ds, snap);
	{
		/* zfs rollback ZDS@SNAP (refuses when later snapshots exist: the
		 * caller destroys them first) */
		const char *argv[] = {"zfs", "rollback", zsnap, NULL};
		r = run(argv, NULL, err);
	}
	if (r < 0)
		return vm_error_prefix(err, "roll %s back to @%s", ds, snap);
	return 0;
}

/* ---- native send and receive: `zfs send -p`, checked into `zfs receive -u` ---- */

static int zfs_send(struct vm_pool *pool, const char *ds, const char *snap, const char *from_snap,
		    int fd, struct vm_error *err)
{
	_cleanup_free_ char *zsnap = zsnapname(pool, ds, snap);
	_cleanup_free_ char *zfrom = from_snap ? zsnapname(pool, ds, from_snap) : NULL;
	struct vm_spawn sp = {.stdin_fd = -1, .stdout_fd = fd};
	struct zfs_argv a;
	int r;

	if (!zsnap || (from_snap && !zfrom))
		return vm_error_set(err, ENOMEM, "send %s@%s", ds, snap);
	/* `zfs send` refuses missing snapshots before it writes a byte: the
	 * reason is asked only then */
	zfs_cmd_send(&a, zsnap, from_snap);
	sp.argv = a.argv;
	r = vm_spawn_run(&sp, err);
	vm_spawn_clear(&sp);
	if (r < 0 && !zexists(zsnap))
		return vm_error_setx(err, ENOENT, "send %s@%s: snapshot does not exist", ds, snap);
	if (r < 0 && zfrom && !zexists(zfrom))
		return vm_error_setx(err, ENOENT, "send %s@%s: snapshot %s@%s does not exist", ds,
				     snap, ds, from_snap);
	if (r < 0)
		return vm_error_prefix(err, "send %s@%s", ds, snap);
	return 0;
}

/* The input ended at byte at, inside a payload: cut, not refused. */
static int payload_cut(uint64_t at, bool *ret_cut, struct vm_error *err)
{
	*ret_cut = true;
	return vm_error_setx(err, EPROTO, "zfs stream truncated at byte %llu (in a payload)",
			     (unsigned long long)at);
}

/* Copy n payload bytes from in to out (or drop them): moved without a copy
 * (splice; out is the tool's pipe) while *can_splice, as the checker reads
 * no payload byte, else through buf. */
static int feed_payload(int in, int out, uint64_t n, bool forward, bool *can_splice, uint8_t *buf,
			size_t cap, uint64_t at, bool *ret_cut, struct vm_error *err)
{
	while (forward && *can_splice && n > 0) {
		size_t want = n < cap ? (size_t)n : cap;
		ssize_t got = fs_splice_full(in, out, want);

		if (got == -EINVAL) {
			*can_splice = false;
			break;
		}
		if (got == -EPIPE)
			return -EPIPE;
		if (got < 0)
			return vm_error_set(err, (int)-got, "feed zfs receive at byte %llu",
					    (unsigned long long)at);
		if ((size_t)got < want)
			return payload_cut(at + (uint64_t)got, ret_cut, err);
		n -= want;
		at += want;
	}
	while (n > 0) {
		size_t want = n < cap ? (size_t)n : cap;
		ssize_t got = fs_read_full(in, buf, want);
		int r;

		if (got < 0)
			return vm_error_set(err, (int)-got, "read zfs stream at byte %llu",
					    (unsigned long long)at);
		if ((size_t)got < want)
			return payload_cut(at + (uint64_t)got, ret_cut, err);
		if (forward) {
			r = fs_write_all(out, buf, want);
			if (r < 0)
				return r == -EPIPE ? r : vm_error_set(err, -r, "feed zfs receive");
		}
		n -= want;
		at += want;
	}
	return 0;
}

struct zfs_feed {
	struct zfs_stream_check check;
	bool cut; /* the input ended before the stream did (nothing refused) */
};

/* The checked feed of `zfs receive` (pool_feed_fn; ctx: struct zfs_feed).
 * The substream's END is held back until the whole stream was checked and
 * its input ended: the tool finishes a dataset only from a stream that
 * passed to its last byte. */
static int feed_zfs(void *ctx, int in, int out, struct vm_error *err)
{
	struct zfs_feed *f = ctx;
	struct zfs_stream_check *c = &f->check;
	_cleanup_free_ uint8_t *buf = malloc(ZFS_FEED_BUF);
	uint8_t rec[ZFS_STREAM_RECORD_SIZE], held[ZFS_STREAM_RECORD_SIZE], extra;
	bool holding = false, can_splice = true;
	int r;

	if (!buf)
		return vm_error_set(err, ENOMEM, "receive");
	while (!zfs_stream_ended(c)) {
		uint64_t at = c->offset, payload;
		ssize_t n = fs_read_full(in, rec, sizeof(rec));
		bool fwd;

		if (n < 0)
			return vm_error_set(err, (int)-n, "read zfs stream at byte %llu",
					    (unsigned long long)at);
		if ((size_t)n < sizeof(rec)) {
			f->cut = true;
			return vm_error_setx(err, EPROTO,
					     "zfs stream truncated at byte %llu (no last END)",
					     (unsigned long long)(at + (uint64_t)n));
		}
		r = zfs_stream_check_record(c, rec, &payload, &fwd, err);
		if (r < 0)
			return r;
		if (fwd && c->sub_ended) {
			memcpy(held, rec, sizeof(held));
			holding = true;
			continue;
		}
		if (fwd) {
			r = fs_write_all(out, rec, sizeof(rec));
			if (r < 0)
				return r == -EPIPE ? r : vm_error_set(err, -r, "feed zfs receive");
		}
		r = feed_payload(in, out, payload, fwd, &can_splice, buf, ZFS_FEED_BUF,
				 at + ZFS_STREAM_RECORD_SIZE, &f->cut, err);
		if (r < 0)
			return r;
	}
	if (fs_read_full(in, &extra, 1) != 0)
		return vm_error_setx(err, EPROTO,
				     "trailing data after the zfs stream's END at byte %llu",
				     (unsigned long long)c->offset);
	if (holding) {
		r = fs_write_all(out, held, sizeof(held));
		if (r < 0)
			return r == -EPIPE ? r : vm_error_set(err, -r, "feed zfs receive");
	}
	return 0;
}

/* The token of the kept state of a cut resumable receive into zds
 * (malloc'ed), NULL when there is none. */
static char *resume_token_of(const char *zds)
{
	struct zfs_argv a;
	struct vm_error e2;
	char *out = NULL;

	zfs_cmd_resume_token(&a, zds);
	if (run(a.argv, &out, &e2) < 0)
		return NULL;
	out[strcspn(out, "\n")] = '\0';
	if (!zfs_resume_token_ok(out))
		out = (free(out), NULL);
	return out;
}

/* Drop the kept state of a cut resumable receive into zds, if any. */
static void drop_resume_state(const char *zds)
{
	_cleanup_free_ char *tok = resume_token_of(zds);
	struct zfs_argv a;
	struct vm_error e2;

	if (!tok)
		return;
	zfs_cmd_receive_abort(&a, zds);
	if (run(a.argv, NULL, &e2) < 0)
		vm_warn("%s: could not drop the state of a cut receive: %s", zds, e2.msg);
}

/* receive() and receive_resumable(): a full stream lands as a new dataset
 * ds (`zfs receive` makes it whole or not at all), an incremental one on
 * top of ds@from_snap, which must be ds's latest snapshot (`receive -F`
 * drops what changed in ds since). The stream's properties never reach the
 * tool (storage/zfs-stream.h): ds inherits its mountpoint from the pool and
 * is mounted there. resumable: `receive -s` where the pool keeps state
 * (OpenZFS), kept when the input was cut (-EAGAIN, *ret_token); token: fd
 * is the rest of the stream cut at token. */
static int receive_impl(struct vm_pool *pool, const char *ds, const char *snap,
			const char *from_snap, const char *token, bool resumable, int fd,
			char **ret_token, struct vm_error *err)
{
	_cleanup_free_ char *zds = zname(pool, ds), *zsnap = zsnapname(pool, ds, snap);
	_cleanup_free_ char *zfrom = from_snap ? zsnapname(pool, ds, from_snap) : NULL;
	_cleanup_free_ char *kept = NULL;
	struct zfs_feed feed = {0};
	uint64_t from_guid = 0;
	struct zfs_argv a;
	struct vm_error e2;
	int r;

	resumable = resumable && priv(pool)->openzfs;
	if (!zds || !zsnap || (from_snap && !zfrom))
		return vm_error_set(err, ENOMEM, "receive %s@%s", ds, snap);
	if (token) {
		kept = resume_token_of(zds);
		if (!resumable || !kept || !streq(kept, token))
			return vm_error_setx(err, EINVAL,
					     "receive %s@%s: the stream resumes a cut receive that "
					     "this pool does not hold",
					     ds, snap);
	}
	if (from_snap) {
		if (!zexists(zds))
			return vm_error_setx(err, ENOENT,
					     "receive %s@%s: incremental stream needs dataset %s, "
					     "which does not exist",
					     ds, snap, ds);
		r = zget_u64(zfrom, "guid", "receive", &from_guid, err);
		if (r < 0)
			return vm_error_setx(err, ENOENT,
					     "receive %s@%s: incremental stream needs snapshot "
					     "%s@%s, which does not exist",
					     ds, snap, ds, from_snap);
	} else if (!token) {
		r = check_new(pool, "receive", ds, zds, err);
		if (r < 0)
			return r;
	}
	/* (a full stream's dataset does not exist, nor then its snapshot) */
	if ((from_snap || token) && zexists(zsnap))
		return vm_error_setx(err, EEXIST, "receive %s@%s: snapshot already exists", ds,
				     snap);

	zfs_stream_check_init(&feed.check, from_guid, snap, priv(pool)->volumes);
	feed.check.resuming = token != NULL;
	zfs_cmd_receive(&a, zsnap, from_snap != NULL, resumable);
	r = pool_run_fed(a.argv, "zfs receive", NULL, fd, feed_zfs, &feed, err);
	/* zfs-fuse applies an incremental stream to ds mounted without telling
	 * the kernel, whose cache of ds's files stays as it was (a file that
	 * kept its size reads as before the stream): mounted again, ds shows
	 * what it holds. (Unmounted before the tool, ds would race zfs-fuse's
	 * unmount, which ends after `zfs umount` returns: the tool fails with
	 * "I/O error".) */
	if (r >= 0 && from_snap)
		zunmount_tree(zds);
	if (r >= 0)
		r = zmount_tree(zds, err);
	if (r < 0 && resumable && feed.cut && (*ret_token = resume_token_of(zds))) {
		/* cut, not refused: what it took stays for a resume */
		vm_error_prefix(err, "receive %s@%s (cut; kept for a resume)", ds, snap);
		return -EAGAIN;
	}
	if (r < 0) {
		/* what the tool made of a stream we refused or could not finish */
		if (resumable)
			drop_resume_state(zds);
		if (!from_snap && zexists(zds))
			(void)zdestroy(zds, true, &e2);
		else if (from_snap && zexists(zsnap) && zdestroy(zsnap, false, &e2) >= 0)
			(void)zfs_rollback(pool, ds, from_snap, &e2);
		return vm_error_prefix(err, "receive %s@%s", ds, snap);
	}
	return 0;
}

static int zfs_receive(struct vm_pool *pool, const char *ds, const char *snap,
		       const char *from_snap, int fd, struct vm_error *err)
{
	return receive_impl(pool, ds, snap, from_snap, NULL, false, fd, NULL, err);
}

static int zfs_receive_resumable(struct vm_pool *pool, const char *ds, const char *snap,
				 const char *from_snap, const char *token, int fd, char **ret_token,
				 struct vm_error *err)
{
	return receive_impl(pool, ds, snap, from_snap, token, true, fd, ret_token, err);
}

/* The peer's token is checked twice before anything is sent: its shape
 * (one word of the token's alphabet), and what `zfs send -nvt` says it
 * resumes, which must be exactly ds@snap from from_snap here: a token
 * naming another dataset would send that one to the peer. */
static int zfs_send_resume(struct vm_pool *pool, const char *ds, const char *snap,
			   const char *from_snap, const char *token, int fd, struct vm_error *err)
{
	_cleanup_free_ char *zsnap = zsnapname(pool, ds, snap);
	_cleanup_free_ char *zfrom = from_snap ? zsnapname(pool, ds, from_snap) : NULL;
	struct vm_spawn sp = {.stdin_fd = -1, .stdout_fd = -1, .capture_stdout = true};
	uint64_t from_guid = 0, want_from = 0;
	char toname[512];
	struct zfs_argv a;
	int r;

	if (!zsnap || (from_snap && !zfrom))
		return vm_error_set(err, ENOMEM, "send %s@%s", ds, snap);
	if (!priv(pool)->openzfs || !zfs_resume_token_ok(token))
		return vm_error_setx(err, EINVAL, "resume the send of %s@%s: %s", ds, snap,
				     priv(pool)->openzfs ? "not a resume token"
							 : "this pool cannot resume a send");
	if (zfrom) {
		r = zget_u64(zfrom, "guid", "resume the send", &want_from, err);
		if (r < 0)
			return r;
	}
	zfs_cmd_resume_contents(&a, token);
	sp.argv = a.argv;
	r = vm_spawn_run(&sp, err);
	if (r >= 0 &&
	    zfs_resume_contents_parse(sp.out ? sp.out : "", toname, sizeof(toname), &from_guid) <
		0 &&
	    zfs_resume_contents_parse(sp.errout ? sp.errout : "", toname, sizeof(toname),
				      &from_guid) < 0)
		r = vm_error_setx(err, EINVAL, "zfs send -nvt: no snapshot named in its report");
	vm_spawn_clear(&sp);
	if (r < 0)
		return vm_error_prefix(err, "resume the send of %s@%s", ds, snap);
	if (!streq(toname, zsnap) || from_guid != want_from)
		return vm_error_setx(err, EINVAL,
				     "resume the send of %s@%s: the peer's token resumes %s (from "
				     "guid 0x%llx), not this snapshot",
				     ds, snap, toname, (unsigned long long)from_guid);
	zfs_cmd_send_resume(&a, token);
	sp = (struct vm_spawn){.argv = a.argv, .stdin_fd = -1, .stdout_fd = fd};
	r = vm_spawn_run(&sp, err);
	vm_spawn_clear(&sp);
	if (r < 0)
		return vm_error_prefix(err, "resume the send of %s@%s", ds, snap);
	return 0;
}

/* The kept state of a cut resumable receive into ds (OpenZFS). */
static int zfs_receive_cleanup(struct vm_pool *pool, const char *ds, struct vm_error *err)
{
	_cleanup_free_ char *zds = zname(pool, ds);

	if (!zds)
		return vm_error_set(err, ENOMEM, "clean up %s", ds);
	if (priv(pool)->openzfs)
		drop_resume_state(zds);
	return 0;
}

const struct vm_storage_ops zfs_storage_ops = {
    .name = "zfs",
    .open = zfs_open,
    .close = zfs_close,
    .create_filesystem = zfs_create_filesystem,
    .create_volume = zfs_create_volume,
    .clone = zfs_clone,
    .snapshot = zfs_snapshot,
    .list_snapshots = zfs_list_snapshots,
    .destroy_snapshot = zfs_destroy_snapshot,
    .destroy = zfs_destroy,
    .rename = zfs_rename,
    .kind = zfs_kind,
    .used = zfs_used,
    .snapshot_used = zfs_snapshot_used,
    .available = zfs_available,
    .set_quota = zfs_set_quota,
    .open_snapshot = zfs_open_snapshot,
    .rollback = zfs_rollback,
    .volume_path = zfs_volume_path,
    /* a receive makes whole zfs datasets or none; only the kept state of a
     * cut resumable one (OpenZFS) is left for destroy() not to find */
    .receive_cleanup = zfs_receive_cleanup,
    .send = zfs_send,
    .receive = zfs_receive,
    .receive_resumable = zfs_receive_resumable,
    .send_resume = zfs_send_resume,
    .native_encoding = "zfs",
    .dir = NULL,
};
