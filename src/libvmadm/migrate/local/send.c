/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "brand/brand.h"
#include "brand/live.h"
#include "migrate/local/journal.h"
#include "migrate/local/local.h"
#include "migrate/local/native.h"
#include "migrate/migrate.h"
#include "storage/pool.h"
#include "stream/stream.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/macros.h"
#include "util/uuid.h"
#include "vm/store.h"
#include "vm/vm.h"

static void report(const struct vm_send_opts *o, const char *phase, const char *ds, uint64_t bytes,
		   uint64_t total)
{
	struct vm_progress p = {.phase = phase, .dataset = ds, .bytes = bytes, .total = total};

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
	json_array_foreach (names, i, x) {
		const char *c = json_string_value(x);
		if (strncmp(c, ds, len) == 0 && c[len] == '/' && !strchr(c + len + 1, '/'))
			v[k++] = strdup(c + len + 1);
	}
	return v;
}

/* The dataset in the pool's native encoding (sd->used declared). */
static int send_native(struct vm_pool *pool, struct stream_writer *w, struct stream_dataset *sd,
		       enum vm_dataset_kind kind, const char *ds, struct vm_error *err)
{
	uint64_t used = 0, volsize = 0;
	int r;

	sd->kind = kind == VM_DS_VOLUME ? STREAM_KIND_VOLUME : STREAM_KIND_FILESYSTEM;
	sd->encoding = stream_encoding_by_name(vm_pool_native_encoding(pool));
	r = vm_pool_used(pool, ds, &used, &volsize, err);
	if (r < 0)
		return r;
	sd->size = kind == VM_DS_VOLUME ? volsize : sd->from_snapshot ? 0 : sd->used;
	r = stream_begin_dataset(w, sd, err);
	if (r < 0)
		return r;
	r = migrate_native_send(pool, ds, sd->snapshot, sd->from_snapshot, sd->resume_token, w,
				err);
	if (r < 0)
		return r;
	return stream_end_dataset(w, err);
}

/* A native stream carries per file what a pool's measure of its blocks
 * may not show (20000 empty files: 7 MB referenced, a 26 MB zfs stream);
 * the tree walk's declaration allows for each file. This walks the dataset
 * itself, not the snapshot (which the pool would have to open): the VM is
 * stopped and locked since its snapshot, so the tree is the same; a tree
 * changed all the same is at worst refused by the receiver, as more data
 * than declared. 1 with *ret set; 0 when the dataset is not mounted where
 * the node keeps it (its directory missing, or no mount point of its own:
 * a mountpoint property moved it), and the caller walks the snapshot. */
static int declare_live_tree(struct vm_pool *pool, const char *ds, uint64_t *ret,
			     struct vm_error *err)
{
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, ds);
	_cleanup_close_ int fd = -1, up = -1;
	struct stat st, upst;

	if (!path)
		return vm_error_set(err, ENOMEM, "declare %s", ds);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0)
		up = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || up < 0 || fstat(fd, &st) < 0 || fstat(up, &upst) < 0 ||
	    st.st_dev == upst.st_dev)
		return 0;
	return stream_declare_tree(fd, -1, ret, err) < 0 ? -err->code : 1;
}

int migrate_send_dataset(struct vm_pool *pool, struct stream_writer *w, json_t *names,
			 const char *uuid, const char *ds, const char *snap, const char *from_snap,
			 bool portable, const char *token, struct vm_error *err)
{
	struct stream_dataset sd = {.snapshot = snap, .from_snapshot = from_snap};
	enum vm_dataset_kind kind = vm_pool_kind(pool, ds);
	const char *native = portable ? NULL : vm_pool_native_encoding(pool);
	size_t prefix = strlen(VM_POOL_NAME) + 1 + strlen(uuid);
	_cleanup_close_ int fd = -1, old_fd = -1;
	_cleanup_strv_ char **skip = NULL;
	uint64_t pool_used = 0; /* the pool's measure, where it has one */
	bool pool_measured = false;
	int r;

	snprintf(sd.name, sizeof(sd.name), "%s", ds + prefix);
	/* the rest of a stream the receiver took in part (a resumable native
	 * receive, cut): only where the receiver gave a token */
	sd.resume_token = native ? token : NULL;
	if (native && !from_snap) {
		/* The pool's own measure, where it has one, spares opening a
		 * snapshot that its send tool reads by itself; a filesystem
		 * declares the larger of it and the walk of its tree. */
		r = vm_pool_snapshot_used(pool, ds, snap, &pool_used, err);
		if (r < 0)
			return r;
		pool_measured = r > 0;
		r = pool_measured && kind == VM_DS_FILESYSTEM
			? declare_live_tree(pool, ds, &sd.used, err)
			: pool_measured;
		if (r < 0)
			return vm_error_prefix(err, "%s@%s", ds, snap);
		if (r > 0) {
			if (pool_used > sd.used)
				sd.used = pool_used;
			sd.has_used = true;
			return send_native(pool, w, &sd, kind, ds, err);
		}
	}
	/* The snapshots, as the pool hands them out to be read. */
	r = vm_pool_open_snapshot(pool, ds, snap, &fd, err);
	if (r >= 0 && from_snap)
		r = vm_pool_open_snapshot(pool, ds, from_snap, &old_fd, err);
	if (r < 0)
		return r;
	/* What the snapshot really takes (a sparse volume's size is no
	 * measure of it), which binds the data that follows; a delta
	 * declares too: the receiver checks the dataset will fit and holds
	 * the data to it. */
	r = kind == VM_DS_VOLUME
		? stream_declare_volume(fd, old_fd, from_snap && !native, &sd.used, err)
		: stream_declare_tree(fd, old_fd, &sd.used, err);
	if (r < 0)
		return vm_error_prefix(err, "%s@%s", ds, snap);
	if (pool_used > sd.used)
		sd.used = pool_used;
	sd.has_used = true;
	if (native)
		return send_native(pool, w, &sd, kind, ds, err);
	if (kind == VM_DS_VOLUME)
		return from_snap ? stream_send_volume_delta(w, &sd, old_fd, fd, NULL, err)
				 : stream_send_volume(w, &sd, fd, err);
	skip = child_names(names, ds);
	if (!skip)
		return vm_error_set(err, ENOMEM, "send %s", ds);
	return from_snap
		   ? stream_send_tree_delta(w, &sd, old_fd, fd, (const char *const *)skip, err)
		   : stream_send_tree(w, &sd, fd, (const char *const *)skip, err);
}

void migrate_drop_snapshots(struct vm_pool *pool, json_t *names, const char *snap)
{
	json_t *x;
	size_t i;

	json_array_foreach (names, i, x) {
		struct vm_error e = {0};
		vm_pool_destroy_snapshot(pool, json_string_value(x), snap, &e);
	}
}

static bool has_snapshots(struct vm_pool *pool, json_t *names, const char *snap)
{
	json_t *x;
	size_t i;

	json_array_foreach (names, i, x)
		if (!vm_pool_has_snapshot(pool, json_string_value(x), snap))
			return false;
	return true;
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
	json_array_foreach (names, i, x) {
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

/* Put the source of a live migration of VM uuid back on its own disks, as
 * its brand's live source_cancel does, when the migrating process died. */
static int live_source_cancel(struct vm_node *node, const char *uuid, struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL;
	const struct vm_brand_ops *ops;
	const char *brand;
	int r;

	r = vm_store_load(node, uuid, &vm, err);
	if (r < 0)
		return r;
	brand = json_string_value(json_object_get(vm, "brand"));
	ops = vm_brand_ops_by_name(brand);
	if (!ops || !ops->live)
		return vm_error_setx(err, EOPNOTSUPP,
				     "live migration is for kvm VMs only (this VM is brand %s); "
				     "containers migrate with -I",
				     brand ? brand : "(none)");
	return ops->live->source_cancel(node, vm, err);
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
		struct vm_error e = {0};
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
		r = live_source_cancel(node, uuid, &e);
		if (r < 0)
			snprintf(
			    line, sizeof(line),
			    "the live migration of VM %s lost its sender, and undoing it failed: "
			    "%s",
			    uuid, e.msg);
		else
			snprintf(
			    line, sizeof(line),
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
				 "removed the snapshots @%s of an interrupted send of VM %s", snap,
				 uuid);
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
	_cleanup_close_ int lock = -1, owned = opts->own_fd ? fd : -1;
	_cleanup_free_ char *marker = NULL;
	_cleanup_stream_writer_ struct stream_writer *w = NULL;
	const struct vm_brand_ops *ops;
	struct vm_runtime rt = {.state = "stopped"};
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
	json_array_foreach (names, i, x) {
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
		json_array_foreach (names, i, x) {
			r = vm_pool_snapshot(pool, json_string_value(x), snap, err);
			if (r < 0)
				break;
			taken++;
		}
	}
	if (r < 0) {
		for (i = 0; i < taken; i++) {
			struct vm_error e = {0};
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
	json_array_foreach (names, i, x) {
		const char *ds = json_string_value(x);
		if (r < 0)
			break;
		if (jstrv_index(opts->skip, ds) >= 0)
			continue;
		report(opts, "send", ds, stream_writer_bytes(w), total);
		r = migrate_send_dataset(pool, w, names, uuid, ds, snap, NULL, opts->portable,
					 json_string_value(json_object_get(opts->resume, ds)), err);
		if (r < 0)
			vm_error_prefix(err, "send %s", ds);
	}
	if (r >= 0)
		r = stream_finish(w, err);
	if (owned >= 0) {
		/* the end, for the reader, before the snapshots are dropped */
		if (r >= 0 && fsync(owned) < 0 && errno != EINVAL && errno != EROFS)
			r = vm_error_set(err, errno, "send VM %s: flush the stream", uuid);
		close(TAKE_FD(owned));
	}
	if (!opts->snapshot) {
		migrate_drop_snapshots(pool, names, snap);
		unlink(marker);
	}
	if (r < 0)
		return -err->code;
	report(opts, "done", NULL, stream_writer_bytes(w), total);
	return 0;
}

/* ---- shared with incremental.c (local.h) ---- */

char **migrate_child_names(json_t *names, const char *ds)
{
	return child_names(names, ds);
}
