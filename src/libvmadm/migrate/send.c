/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "brand/brand.h"
#include "migrate/journal.h"
#include "migrate/live.h"
#include "migrate/migrate.h"
#include "migrate/migrate-private.h"
#include "migrate/pump.h"
#include "storage/pool-private.h"
#include "stream/stream.h"
#include "util/fs.h"
#include "util/macros.h"
#include "util/uuid.h"
#include "vm/store.h"
#include "vm/vm.h"

static void report(const struct vm_send_opts *o, const char *phase, const char *ds,
		   uint64_t bytes, uint64_t total)
{
	struct vm_progress p = { .phase = phase, .dataset = ds, .bytes = bytes, .total = total };

	if (o->progress)
		o->progress(&p, o->userdata);
}

/* Names of ds's child datasets among the VM's, as the top-level entries a
 * tree send must leave out. */
static char **child_names(json_t *names, const char *ds)
{
	size_t n = json_array_size(names), k = 0, len = strlen(ds);
	char **v = calloc(n + 2, sizeof(char *));
	json_t *x;
	size_t i;

	if (!v)
		return NULL;
	v[k++] = strdup(VM_DATASET_MARKER);
	json_array_foreach(names, i, x) {
		const char *c = json_string_value(x);
		if (strncmp(c, ds, len) == 0 && c[len] == '/' && !strchr(c + len + 1, '/'))
			v[k++] = strdup(c + len + 1);
	}
	return v;
}

/*
 * DS_BEGIN's "used": what the dataset takes, declared before its data. The
 * receiver checks its free space against it, and its reader refuses data
 * past it plus 1/8 and 16 MiB (stream_dataset_data_limit). So it is
 * measured on the snapshot that is sent (not the dataset, which a running
 * VM changes meanwhile), and it bounds what every encoding writes:
 *   - each entry's allocated blocks (file data: no encoding sends more;
 *     block headers and per-write btrfs command bytes stay within 1/8),
 *   - DECLARE_ENTRY_BYTES per file, directory or link: its archive headers
 *     or btrfs commands (an empty file, a symlink or a directory takes no
 *     block but about 1.5 KiB of pax headers), and its metadata on the
 *     receiver,
 *   - for a delta, DECLARE_GONE_BYTES and twice its path per entry of the
 *     snapshot it builds on (deletion lists, unlink commands),
 *   - for a "blocks-delta" volume, every 64 KiB grain that holds data
 *     (a changed grain travels whole) and a zero-range header per grain.
 */
#define DECLARE_ENTRY_BYTES 2048u
#define DECLARE_GONE_BYTES  64u

/* nftw has no user argument: the walk's state, per thread */
static __thread uint64_t declare_sum;
static __thread size_t declare_rootlen;
static __thread bool declare_gone;

static int declare_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	if (declare_gone)
		declare_sum += DECLARE_GONE_BYTES + 2 * (strlen(path) - declare_rootlen);
	else
		declare_sum += (uint64_t)st->st_blocks * 512 + DECLARE_ENTRY_BYTES;
	return 0;
}

/* Bytes of the 64 KiB grains of the file at path that hold data. */
static int data_grains(const char *path, uint64_t *ret, struct vm_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint64_t sum = 0, counted = 0; /* grains below counted are in sum */
	struct stat st;
	off_t off = 0;

	if (fd < 0 || fstat(fd, &st) < 0)
		return vm_error_set(err, errno, "declare %s", path);
	while (off < st.st_size) {
		off_t data = lseek(fd, off, SEEK_DATA), hole;
		uint64_t from, to;

		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0) {
			data = off; /* no SEEK_DATA: all of it */
			hole = st.st_size;
		} else {
			hole = lseek(fd, data, SEEK_HOLE);
			if (hole < 0)
				hole = st.st_size;
		}
		from = (uint64_t)data / STREAM_ZERO_GRAIN * STREAM_ZERO_GRAIN;
		to = ((uint64_t)hole + STREAM_ZERO_GRAIN - 1) / STREAM_ZERO_GRAIN *
		     STREAM_ZERO_GRAIN;
		if (from < counted)
			from = counted;
		if (to > from)
			sum += to - from;
		if (to > counted)
			counted = to;
		off = hole;
	}
	*ret = sum + STREAM_BLOCK_HEADER_SIZE * ((uint64_t)st.st_size / STREAM_ZERO_GRAIN + 1);
	return 0;
}

static int declare_used(struct vm_pool *pool, const char *ds, const char *snap,
			const char *from_snap, bool portable_volume_delta, uint64_t *ret,
			struct vm_error *err)
{
	_cleanup_free_ char *path = pool_snappath(pool, ds, snap);
	_cleanup_free_ char *from = from_snap ? pool_snappath(pool, ds, from_snap) : NULL;
	uint64_t sum;

	if (!path || (from_snap && !from))
		return vm_error_set(err, ENOMEM, "declare %s", ds);
	declare_sum = 0;
	declare_gone = false;
	declare_rootlen = strlen(path);
	/* FTW_PHYS: symlinks are entries; FTW_MOUNT: the snapshot only */
	if (nftw(path, declare_cb, 32, FTW_PHYS | FTW_MOUNT) < 0)
		return vm_error_set(err, errno, "declare %s@%s: walk %s", ds, snap, path);
	sum = declare_sum;
	if (from) {
		declare_sum = 0;
		declare_gone = true;
		declare_rootlen = strlen(from);
		if (nftw(from, declare_cb, 32, FTW_PHYS | FTW_MOUNT) < 0)
			return vm_error_set(err, errno, "declare %s@%s: walk %s", ds, from_snap,
					    from);
		sum += declare_sum;
	}
	if (portable_volume_delta) {
		_cleanup_free_ char *img = strdup_printf("%s/%s", path, VOLUME_FILE);
		uint64_t grains = 0;
		int r;

		if (!img)
			return vm_error_set(err, ENOMEM, "declare %s", ds);
		r = data_grains(img, &grains, err);
		if (r < 0)
			return r;
		sum += grains;
	}
	*ret = sum;
	return 0;
}

static int send_dataset(struct vm_pool *pool, struct stream_writer *w, json_t *names,
			const char *uuid, const char *ds, const char *snap, bool portable,
			struct vm_error *err)
{
	struct stream_dataset sd = { .snapshot = snap };
	enum vm_dataset_kind kind = vm_pool_kind(pool, ds);
	_cleanup_free_ char *snappath = pool_snappath(pool, ds, snap);
	size_t prefix = strlen(VM_POOL_NAME) + 1 + strlen(uuid);
	int r;

	snprintf(sd.name, sizeof(sd.name), "%s", ds + prefix);
	/* What the snapshot really takes (a sparse volume's size is no
	 * measure of it), which binds the data that follows. */
	r = declare_used(pool, ds, snap, NULL, false, &sd.used, err);
	if (r < 0)
		return r;
	sd.has_used = true;
	if (!portable && vm_pool_native_encoding(pool)) {
		uint64_t used = 0, volsize = 0;
		sd.kind = kind == VM_DS_VOLUME ? STREAM_KIND_VOLUME : STREAM_KIND_FILESYSTEM;
		sd.encoding = stream_encoding_by_name(vm_pool_native_encoding(pool));
		r = vm_pool_used(pool, ds, &used, &volsize, err);
		if (r < 0)
			return r;
		sd.size = kind == VM_DS_VOLUME ? volsize : sd.used;
		r = stream_begin_dataset(w, &sd, err);
		if (r < 0)
			return r;
		r = migrate_native_send(pool, ds, snap, NULL, w, err);
		if (r < 0)
			return r;
		return stream_end_dataset(w, err);
	}
	if (kind == VM_DS_VOLUME) {
		_cleanup_free_ char *img = strdup_printf("%s/%s", snappath, VOLUME_FILE);
		return stream_send_volume(w, &sd, img, err);
	}
	{
		_cleanup_strv_ char **skip = child_names(names, ds);
		return stream_send_tree(w, &sd, snappath, (const char *const *)skip, err);
	}
}

void migrate_drop_snapshots(struct vm_pool *pool, json_t *names, const char *snap)
{
	json_t *x;
	size_t i;

	json_array_foreach(names, i, x) {
		struct vm_error e = { 0 };
		vm_pool_destroy_snapshot(pool, json_string_value(x), snap, &e);
	}
}

static bool has_snapshots(struct vm_pool *pool, json_t *names, const char *snap)
{
	json_t *x;
	size_t i;

	json_array_foreach(names, i, x) {
		_cleanup_strv_ char **snaps = NULL;
		struct vm_error e = { 0 };
		bool found = false;
		if (vm_pool_list_snapshots(pool, json_string_value(x), &snaps, &e) < 0)
			return false;
		for (char **s = snaps; s && *s; s++)
			found = found || streq(*s, snap);
		if (!found)
			return false;
	}
	return true;
}

static bool in_list(json_t *list, const char *name)
{
	json_t *x;
	size_t i;

	json_array_foreach(list, i, x)
		if (streq(json_string_value(x), name))
			return true;
	return false;
}

int vm_send_drop_snapshots(struct vm_node *node, const char *uuid, const char *snap,
			   struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL, *names = NULL;
	struct vm_pool *pool;
	int r;

	r = vm_store_load(node, uuid, &vm, err);
	if (r < 0)
		return r;
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	names = vm_datasets(vm);
	migrate_drop_snapshots(pool, names, snap);
	return 0;
}

int vm_send_estimate(struct vm_node *node, const char *uuid, json_t **ret, uint64_t *ret_total,
		     struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL, *names = NULL, *out = json_object();
	struct vm_pool *pool;
	uint64_t total = 0;
	json_t *x;
	size_t i;
	int r;

	r = vm_store_load(node, uuid, &vm, err);
	if (r < 0)
		return r;
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	names = vm_datasets(vm);
	json_array_foreach(names, i, x) {
		uint64_t used = 0, volsize = 0;
		r = vm_pool_used(pool, json_string_value(x), &used, &volsize, err);
		if (r < 0)
			return r;
		json_object_set_new(out, json_string_value(x), json_integer(used));
		total += used;
	}
	*ret = TAKE_PTR(out);
	*ret_total = total;
	return 0;
}

/* ROOT/run/send-snap-UUID holds the name of the snapshots a send to a file
 * holds while it runs (under the VM's lock). */
static char *snap_marker_path(struct vm_node *node, const char *uuid)
{
	return vm_node_path(node, "run/send-snap-%s", uuid);
}

static void note(json_t **notes, const char *line)
{
	if (!*notes)
		*notes = json_array();
	json_array_append_new(*notes, json_string(line));
}

/* `vmadm send -L` processes that died (SIGKILL) with their VM on overlays
 * (ROOT/locks/UUID.live.lock left unlocked): the VM back on its own disks,
 * as after a failed migration. */
static int recover_live_sources(struct vm_node *node, json_t **notes, struct vm_error *err)
{
	_cleanup_free_ char *dir = vm_node_path(node, "locks");
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return errno == ENOENT ? 0 : vm_error_set(err, errno, "open %s", dir);
	while ((de = readdir(d))) {
		_cleanup_close_ int lock = -1;
		struct vm_error e = { 0 };
		char uuid[VM_UUID_LEN + 1], line[1024];
		int owner, r;

		if (strlen(de->d_name) != VM_UUID_LEN + strlen(".live.lock") ||
		    !streq(de->d_name + VM_UUID_LEN, ".live.lock"))
			continue;
		snprintf(uuid, sizeof(uuid), "%.*s", VM_UUID_LEN, de->d_name);
		if (!vm_uuid_valid(uuid))
			continue;
		lock = vm_store_lock(node, uuid, 0, &e);
		if (lock < 0)
			continue;
		owner = migrate_owner_dead(node, uuid, "live");
		if (owner < 0)
			continue; /* the migration runs */
		if (!vm_store_exists(node, uuid)) {
			/* deleted since: nothing to put back */
			migrate_owner_unlock(node, uuid, "live", owner);
			continue;
		}
		r = vm_live_source_cancel(node, uuid, &e);
		if (r < 0)
			snprintf(line, sizeof(line),
				 "the live migration of VM %s lost its sender, and undoing it failed: "
				 "%s",
				 uuid, e.msg);
		else
			snprintf(line, sizeof(line),
				 "undid the live migration of VM %s whose sender died: the VM runs on "
				 "its own disks here",
				 uuid);
		/* Tried once: a VM that cannot be put back says so here, and
		 * `vmadm send -L` names the overlay in the way. */
		migrate_owner_unlock(node, uuid, "live", owner);
		note(notes, line);
	}
	return 0;
}

int vm_send_recover(struct vm_node *node, json_t **notes, struct vm_error *err)
{
	_cleanup_free_ char *dir = vm_node_path(node, "run");
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	int r;

	r = recover_live_sources(node, notes, err);
	if (r < 0)
		return r;
	if (!d)
		return errno == ENOENT ? 0 : vm_error_set(err, errno, "open %s", dir);
	while ((de = readdir(d))) {
		_cleanup_free_ char *path = NULL, *snap = NULL;
		_cleanup_json_ json_t *vm = NULL, *names = NULL;
		_cleanup_close_ int lock = -1;
		struct vm_error e = {0};
		struct vm_pool *pool;
		const char *uuid = de->d_name + strlen("send-snap-");
		char line[256];
		int r;

		if (strncmp(de->d_name, "send-snap-", strlen("send-snap-")) != 0 ||
		    !vm_uuid_valid(uuid))
			continue;
		lock = vm_store_lock(node, uuid, 0, &e);
		if (lock < 0)
			continue; /* the send still runs */
		path = vm_node_path(node, "run/%s", de->d_name);
		if (!path)
			return vm_error_set(err, ENOMEM, "recover sends");
		r = fs_read_file(path, 256, &snap, NULL, &e);
		/* Only a send snapshot's name: the file is ours, but be sure. */
		if (r >= 0 && strncmp(snap, "vmadm-send-", 11) == 0 && !strchr(snap, '/') &&
		    vm_store_load(node, uuid, &vm, &e) >= 0) {
			r = vm_node_pool(node, &pool, err);
			if (r < 0)
				return r;
			names = vm_datasets(vm);
			migrate_drop_snapshots(pool, names, snap);
			snprintf(line, sizeof(line),
				 "removed the snapshots @%s of an interrupted send of VM %s", snap, uuid);
			note(notes, line);
		}
		unlink(path);
	}
	return 0;
}

int vm_send(struct vm_node *node, const char *uuid, int fd, const struct vm_send_opts *opts,
	    bool *ret_was_running, struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL, *names = NULL, *config = NULL;
	_cleanup_close_ int lock = -1;
	_cleanup_free_ char *marker = NULL;
	_cleanup_stream_writer_ struct stream_writer *w = NULL;
	const struct vm_brand_ops *ops;
	struct vm_runtime rt = { .state = "stopped" };
	struct vm_pool *pool;
	char snap[64];
	uint64_t total = 0;
	const char *state;
	size_t i, taken = 0;
	json_t *x;
	int r;

	lock = vm_store_lock(node, uuid, VM_LOCK_WAIT_SECS, err);
	if (lock < 0)
		return lock;
	r = vm_store_load(node, uuid, &vm, err);
	if (r < 0)
		return r;
	state = json_string_value(json_object_get(vm, "state"));
	if (state && !streq(state, "stopped") && !streq(state, "running") &&
	    !streq(state, "failed"))
		return vm_error_setx(err, EBUSY, "VM %s is %s and cannot be sent", uuid, state);
	ops = vm_brand_ops_by_name(json_string_value(json_object_get(vm, "brand")));
	if (!ops)
		return vm_error_setx(err, EINVAL, "VM %s has an unknown brand", uuid);
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;

	names = vm_datasets(vm);
	json_array_foreach(names, i, x) {
		uint64_t used = 0, volsize = 0;
		if (vm_pool_kind(pool, json_string_value(x)) == VM_DS_NONE)
			return vm_error_setx(err, ENOENT, "send VM %s: dataset %s is missing", uuid,
					     json_string_value(x));
		if (vm_pool_used(pool, json_string_value(x), &used, &volsize, err) >= 0)
			total += used;
		vm_error_clear(err);
	}

	/* The seed note: send stops the VM. */
	ops->runtime(node, vm, &rt);
	if (ret_was_running)
		*ret_was_running = !streq(rt.state, "stopped");
	if (!streq(rt.state, "stopped")) {
		report(opts, "stop", NULL, 0, total);
		r = ops->stop(node, vm, opts->stop_timeout > 0 ? opts->stop_timeout : 60, false,
			      err);
		if (r < 0)
			return vm_error_prefix(err, "send VM %s: stop", uuid);
		json_object_set_new(vm, "state", json_string("stopped"));
		json_object_set_new(vm, "zone_state", json_string("installed"));
		json_object_del(vm, "boot_timestamp");
		r = vm_store_save(node, vm, err);
		if (r < 0)
			return r;
	}

	/* One instant for all datasets: the VM is stopped and we hold its lock.
	 * A caller-named instant that exists on every dataset is reused (a
	 * resumed send: the VM stayed stopped since). */
	if (opts->snapshot)
		snprintf(snap, sizeof(snap), "%s", opts->snapshot);
	else
		snprintf(snap, sizeof(snap), "vmadm-send-%lld-%d", (long long)time(NULL), getpid());
	report(opts, "snapshot", NULL, 0, total);
	if (!opts->snapshot) {
		/* Named before they exist: a send killed from here on leaves
		 * them to vm_send_recover. */
		marker = snap_marker_path(node, uuid);
		r = marker ? fs_write_atomic(marker, snap, strlen(snap), 0600, err)
			   : vm_error_set(err, ENOMEM, "send VM %s", uuid);
		if (r < 0)
			return vm_error_prefix(err, "send VM %s", uuid);
	}
	if (opts->snapshot && has_snapshots(pool, names, snap)) {
		r = 0;
	} else {
		if (opts->snapshot)
			migrate_drop_snapshots(pool, names, snap);
		json_array_foreach(names, i, x) {
			r = vm_pool_snapshot(pool, json_string_value(x), snap, err);
			if (r < 0)
				break;
			taken++;
		}
	}
	if (r < 0) {
		for (i = 0; i < taken; i++) {
			struct vm_error e = { 0 };
			vm_pool_destroy_snapshot(pool, json_string_value(json_array_get(names, i)),
						 snap, &e);
		}
		if (marker)
			unlink(marker);
		return vm_error_prefix(err, "send VM %s", uuid);
	}

	config = json_deep_copy(vm);
	json_object_del(config, "pid");
	json_object_del(config, "transition");
	r = stream_writer_open(fd, opts->compress ? STREAM_WRITE_ZSTD : 0, &w, err);
	if (r >= 0)
		r = stream_write_config(w, config, err);
	json_array_foreach(names, i, x) {
		const char *ds = json_string_value(x);
		if (r < 0)
			break;
		if (in_list(opts->skip, ds))
			continue;
		report(opts, "send", ds, stream_writer_bytes(w), total);
		r = send_dataset(pool, w, names, uuid, ds, snap, opts->portable, err);
		if (r < 0)
			vm_error_prefix(err, "send %s", ds);
	}
	if (r >= 0)
		r = stream_finish(w, err);
	if (!opts->snapshot) {
		migrate_drop_snapshots(pool, names, snap);
		unlink(marker);
	}
	if (r < 0)
		return -err->code;
	report(opts, "done", NULL, stream_writer_bytes(w), total);
	return 0;
}

/* ---- shared with incremental.c (migrate-private.h) ---- */

int migrate_send_dataset(struct vm_pool *pool, struct stream_writer *w, json_t *names,
			 const char *uuid, const char *ds, const char *snap, const char *from_snap,
			 bool portable, struct vm_error *err)
{
	struct stream_dataset sd = { .snapshot = snap, .from_snapshot = from_snap };
	enum vm_dataset_kind kind;
	size_t prefix = strlen(VM_POOL_NAME) + 1 + strlen(uuid);
	_cleanup_free_ char *newp = NULL, *oldp = NULL;
	int r;

	if (!from_snap)
		return send_dataset(pool, w, names, uuid, ds, snap, portable, err);
	kind = vm_pool_kind(pool, ds);
	snprintf(sd.name, sizeof(sd.name), "%s", ds + prefix);
	/* A delta declares too: the receiver checks the dataset will fit
	 * and holds the data to it. */
	r = declare_used(pool, ds, snap, from_snap,
			 kind == VM_DS_VOLUME && (portable || !vm_pool_native_encoding(pool)),
			 &sd.used, err);
	if (r < 0)
		return r;
	sd.has_used = true;
	if (!portable && vm_pool_native_encoding(pool)) {
		uint64_t used = 0, volsize = 0;
		sd.kind = kind == VM_DS_VOLUME ? STREAM_KIND_VOLUME : STREAM_KIND_FILESYSTEM;
		sd.encoding = stream_encoding_by_name(vm_pool_native_encoding(pool));
		r = vm_pool_used(pool, ds, &used, &volsize, err);
		if (r < 0)
			return r;
		sd.size = kind == VM_DS_VOLUME ? volsize : 0;
		r = stream_begin_dataset(w, &sd, err);
		if (r < 0)
			return r;
		r = migrate_native_send(pool, ds, snap, from_snap, w, err);
		if (r < 0)
			return r;
		return stream_end_dataset(w, err);
	}
	newp = pool_snappath(pool, ds, snap);
	oldp = pool_snappath(pool, ds, from_snap);
	if (!newp || !oldp)
		return vm_error_set(err, ENOMEM, "send %s", ds);
	if (kind == VM_DS_VOLUME) {
		_cleanup_free_ char *ni = strdup_printf("%s/%s", newp, VOLUME_FILE);
		_cleanup_free_ char *oi = strdup_printf("%s/%s", oldp, VOLUME_FILE);
		return stream_send_volume_delta(w, &sd, oi, ni, NULL, err);
	}
	{
		_cleanup_strv_ char **skip = child_names(names, ds);
		return stream_send_tree_delta(w, &sd, oldp, newp, (const char *const *)skip, err);
	}
}

char **migrate_child_names(json_t *names, const char *ds)
{
	return child_names(names, ds);
}
