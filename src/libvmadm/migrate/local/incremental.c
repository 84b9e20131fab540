/* SPDX-License-Identifier: MIT */
/* Incremental migration: passes, the held receive, the stop rule
 * (migrate/local/incremental.h). */
#include "migrate/local/incremental.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "brand/brand.h"
#include "migrate/local/journal.h"
#include "migrate/local/local.h"
#include "migrate/local/native.h"
#include "storage/pool.h"
#include "stream/stream.h"
#include "util/fault.h"
#include "util/format.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/macros.h"
#include "util/uuid.h"
#include "vm/store.h"
#include "vm/vm.h"

/* ---- the stop rule ---- */

bool vm_incr_should_stop(const struct vm_incr_pass *passes, size_t n,
			 const struct vm_incr_rule *rule, const char **ret_why)
{
	static __thread char why[256];
	unsigned target = rule && rule->downtime_target_ms ? rule->downtime_target_ms
							   : VM_INCR_DEFAULT_DOWNTIME_MS;
	unsigned max = rule && rule->max_passes ? rule->max_passes : VM_INCR_DEFAULT_MAX_PASSES;
	const struct vm_incr_pass *last;
	char b1[32], b2[32], b3[32];
	double rate, need_ms, total_b = 0, total_s = 0;
	bool stop;

	if (n == 0 || !passes) {
		snprintf(why, sizeof(why), "no pass made yet");
		stop = false;
		goto out;
	}
	last = &passes[n - 1];
	/* the link's rate, measured over every pass so far (pass 1, the big
	 * one, weighs most) */
	for (size_t i = 0; i < n; i++) {
		total_b += passes[i].bytes;
		total_s += passes[i].seconds > 0 ? passes[i].seconds : 0;
	}
	if (total_s <= 0) {
		snprintf(why, sizeof(why), "pass %zu (%s) took no measurable time", n,
			 format_size(last->bytes, b1));
		stop = true;
		goto out;
	}
	rate = total_b / total_s;
	need_ms = rate > 0 ? last->bytes / rate * 1000.0 : 0;
	/* the final pass sends about as much as the last one did */
	if (last->bytes == 0 || need_ms <= target) {
		snprintf(why, sizeof(why),
			 "pass %zu moved %s, which takes about %.0f ms at %s/s: within the "
			 "downtime target of %u ms",
			 n, format_size(last->bytes, b1), need_ms, format_size((uint64_t)rate, b2),
			 target);
		stop = true;
	} else if (n >= max) {
		snprintf(why, sizeof(why),
			 "reached the maximum of %u passes (pass %zu moved %s, about %.0f ms at "
			 "%s/s)",
			 max, n, format_size(last->bytes, b1), need_ms,
			 format_size((uint64_t)rate, b2));
		stop = true;
	} else if (n >= 2 && last->bytes >= passes[n - 2].bytes) {
		snprintf(why, sizeof(why),
			 "the delta stopped shrinking (pass %zu moved %s, pass %zu %s): the guest "
			 "writes as fast as we send",
			 n, format_size(last->bytes, b1), n - 1,
			 format_size(passes[n - 2].bytes, b3));
		stop = true;
	} else {
		snprintf(why, sizeof(why),
			 "pass %zu moved %s, about %.0f ms at %s/s: more than the downtime target "
			 "of %u ms, another pass",
			 n, format_size(last->bytes, b1), need_ms, format_size((uint64_t)rate, b2),
			 target);
		stop = false;
	}
out:
	if (ret_why)
		*ret_why = why;
	return stop;
}

/* ---- source side ---- */

void vm_incr_snapshot_name(unsigned pass, char *buf, size_t size)
{
	snprintf(buf, size, VM_INCR_SNAP_PREFIX "%u-%lld-%d", pass, (long long)time(NULL),
		 getpid());
}

int vm_incr_snapshot_all(struct vm_node *node, const char *uuid, const char *name,
			 struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL, *names = NULL;
	_cleanup_close_ int lock = -1;
	const struct vm_brand_ops *ops;
	struct vm_runtime rt = {.state = "stopped"};
	struct vm_pool *pool;
	bool paused = false;
	size_t i, taken = 0;
	json_t *x;
	int r = 0;

	lock = vm_store_lock(node, uuid, VM_LOCK_WAIT_SECS, err);
	if (lock < 0)
		return lock;
	r = vm_store_load(node, uuid, &vm, err);
	if (r < 0)
		return r;
	ops = vm_brand_ops_by_name(jstr(vm, "brand"));
	if (!ops)
		return vm_error_setx(err, EINVAL, "VM %s has an unknown brand", uuid);
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	names = vm_datasets(vm);
	ops->runtime(node, vm, &rt);

	/* One instant for all disks: the guest does not run meanwhile. */
	if (streq(rt.state, "running")) {
		r = ops->pause(node, vm, err);
		if (r < 0)
			return vm_error_prefix(err, "snapshot VM %s", uuid);
		paused = true;
	}
	json_array_foreach (names, i, x) {
		r = vm_pool_snapshot(pool, json_string_value(x), name, err);
		if (r < 0)
			break;
		taken++;
	}
	if (paused) {
		struct vm_error e = {0};
		int k = ops->resume(node, vm, &e);
		if (k < 0 && r >= 0) {
			*err = e;
			r = vm_error_prefix(err, "snapshot VM %s", uuid);
		}
	}
	if (r < 0) {
		for (i = 0; i < taken; i++) {
			struct vm_error e = {0};
			vm_pool_destroy_snapshot(pool, json_string_value(json_array_get(names, i)),
						 name, &e);
		}
		return r;
	}
	return 0;
}

int vm_incr_drop_snapshot(struct vm_node *node, const char *uuid, const char *name,
			  struct vm_error *err)
{
	return vm_send_drop_snapshots(node, uuid, name, err);
}

int vm_incr_send_pass(struct vm_node *node, const char *uuid, const char *from_snap,
		      const char *snap, int fd, const struct vm_send_opts *opts,
		      uint64_t *ret_bytes, struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL, *names = NULL, *config = NULL;
	_cleanup_stream_writer_ struct stream_writer *w = NULL;
	struct vm_pool *pool;
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
	config = json_deep_copy(vm);
	/* runtime fields of a VM that runs while it is sent */
	json_object_del(config, "pid");
	json_object_del(config, "transition");
	json_object_del(config, "boot_timestamp");
	json_object_set_new(config, "state", json_string("stopped"));
	json_object_set_new(config, "zone_state", json_string("installed"));
	r = stream_writer_open(fd, opts && opts->compress ? STREAM_WRITE_ZSTD : 0, &w, err);
	if (r >= 0)
		r = stream_write_config(w, config, err);
	json_array_foreach (names, i, x) {
		const char *ds = json_string_value(x);
		if (r < 0)
			break;
		if (opts && opts->progress) {
			struct vm_progress p = {
			    .phase = "send", .dataset = ds, .bytes = stream_writer_bytes(w)};
			opts->progress(&p, opts->userdata);
		}
		r = migrate_send_dataset(pool, w, names, uuid, ds, snap, from_snap,
					 opts && opts->portable, NULL, err);
		if (r < 0)
			vm_error_prefix(err, "send %s@%s%s%s", ds, snap, from_snap ? " from " : "",
					from_snap ? from_snap : "");
	}
	if (r >= 0)
		r = stream_finish(w, err);
	if (r < 0)
		return r;
	if (ret_bytes)
		*ret_bytes = stream_writer_bytes(w);
	return 0;
}

/* ---- target side ---- */

static int journal_load(struct vm_node *node, const char *uuid, json_t **ret, struct vm_error *err)
{
	_cleanup_free_ char *path = vm_node_path(node, "recv/%s.json", uuid), *text = NULL;
	json_t *j;
	int r;

	if (!path)
		return vm_error_set(err, ENOMEM, "VM %s", uuid);
	if (!fs_exists(path))
		return -ENOENT;
	r = fs_read_file(path, 16 << 20, &text, NULL, err);
	if (r < 0)
		return r;
	j = json_loads(text, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		return vm_error_setx(err, EINVAL, "receive journal %s is not a JSON object", path);
	}
	*ret = j;
	return 0;
}

/* The held receive of uuid, or -ENOENT (err untouched). */
static int held_load(struct vm_node *node, const char *uuid, json_t **ret, struct vm_error *err)
{
	_cleanup_json_ json_t *j = NULL;
	int r = journal_load(node, uuid, &j, err);

	if (r < 0)
		return r;
	if (!streq(jstr(j, "phase") ? jstr(j, "phase") : "", "held"))
		return vm_error_setx(err, EBUSY,
				     "VM %s: a receive is under way or unfinished here (phase %s)",
				     uuid, jstr(j, "phase") ? jstr(j, "phase") : "?");
	*ret = TAKE_PTR(j);
	return 0;
}

static void report(const struct vm_recv_opts *o, const char *phase, const char *ds, uint64_t bytes)
{
	struct vm_progress p = {.phase = phase, .dataset = ds, .bytes = bytes};
	if (o && o->progress)
		o->progress(&p, o->userdata);
}

/* Pass 1: a full stream, held at the end. sd is the first dataset (already
 * read) or NULL. */
static int receive_full(struct vm_node *node, struct vm_pool *pool, struct stream_reader *rd,
			json_t *config, const struct stream_dataset *sd, bool force,
			const struct vm_recv_opts *opts, struct vm_incr_held *ret,
			struct vm_error *err)
{
	_cleanup_json_ json_t *old = NULL, *journal = NULL, *declared = json_object();
	_cleanup_free_ bool *got = NULL;
	_cleanup_free_ char *snap = NULL;
	const char *uuid = jstr(config, "uuid");
	json_t *finals, *temps, *x;
	size_t i;
	int r;

	r = migrate_check_target(node, uuid, force, &old, err);
	if (r < 0)
		return r;
	finals = vm_datasets(config);
	temps = json_array();
	json_array_foreach (finals, i, x) {
		_cleanup_free_ char *t = recv_temp_name(uuid, json_string_value(x));
		json_array_append_new(temps, json_string(t));
	}
	journal = json_pack("{s:s, s:s, s:o, s:o, s:o, s:O, s:b}", "uuid", uuid, "phase",
			    "receiving", "temps", temps, "finals", finals, "old_datasets",
			    old ? vm_datasets(old) : json_array(), "record", config, "placeholder",
			    old == NULL);
	json_array_foreach (temps, i, x)
		if (vm_pool_kind(pool, json_string_value(x)) != VM_DS_NONE)
			return vm_error_setx(err, EEXIST, "dataset %s already exists",
					     json_string_value(x));
	r = recv_journal_write(node, journal, err);
	if (r < 0)
		return r;
	if (!old) {
		_cleanup_json_ json_t *ph = json_deep_copy(config);
		json_object_set_new(ph, "transition", json_string("receiving"));
		r = vm_store_save(node, ph, err);
		if (r < 0)
			goto fail;
	}
	got = calloc(json_array_size(finals) + 1, sizeof(bool));
	if (!got) {
		r = vm_error_set(err, ENOMEM, "receive VM %s", uuid);
		goto fail;
	}
	/* index_of is linear in finals, which vm_validate_received bounds
	 * (the VM's dataset, its data, at most VM_DISKS_MAX disks). */
	for (; sd; r = stream_next_dataset(rd, &sd, err), sd = r == 1 ? sd : NULL) {
		const char *name = stream_reader_dataset_name(rd);
		ssize_t idx = jstrv_index(finals, name);
		const char *temp;

		if (idx < 0) {
			r = vm_error_setx(err, EINVAL,
					  "the stream sends dataset %s, which the VM's config does "
					  "not have",
					  name);
			goto fail;
		}
		if (sd->from_snapshot) {
			r = vm_error_setx(err, EINVAL,
					  "the stream mixes full and incremental datasets (%s)",
					  name);
			goto fail;
		}
		if (!snap)
			snap = strdup(sd->snapshot);
		else if (!streq(snap, sd->snapshot)) {
			r = vm_error_setx(err, EINVAL,
					  "dataset %s comes from snapshot %s, the others from %s",
					  name, sd->snapshot, snap);
			goto fail;
		}
		temp = json_string_value(json_array_get(temps, idx));
		report(opts, "receive", name, stream_reader_bytes(rd));
		r = migrate_receive_full(pool, rd, sd, config, name, temp, err);
		/* a native receive made the snapshot itself */
		if (r >= 0 && !vm_pool_speaks(pool, stream_encoding_name(sd->encoding)))
			r = vm_pool_snapshot(pool, temp, snap, err);
		if (r < 0) {
			vm_error_prefix(err, "receive %s", name);
			goto fail;
		}
		got[idx] = true;
		/* what the held dataset was declared to take: a later pass may
		 * grow it by the pool's free space (apply_delta) */
		json_object_set_new(declared, temp, json_integer(stream_dataset_declared(sd)));
	}
	if (r < 0)
		goto fail;
	json_array_foreach (finals, i, x)
		if (!got[i]) {
			r = vm_error_setx(err, EINVAL, "the stream lacks dataset %s",
					  json_string_value(x));
			goto fail;
		}
	json_object_set(journal, "declared", declared);
	json_object_set_new(journal, "phase", json_string("held"));
	json_object_set_new(journal, "snapshot", json_string(snap));
	r = recv_journal_write(node, journal, err);
	if (r < 0)
		goto fail;
	snprintf(ret->snapshot, sizeof(ret->snapshot), "%s", snap);
	return 0;
fail : {
	struct vm_error cerr = {0};
	recv_rollback(node, pool, journal, &cerr);
}
	return vm_error_prefix(err, "receive VM %s (pass 1)", uuid);
}

/* Apply one incremental dataset onto its temp. config is the held VM's
 * record, declared what each held temp was declared to take (the journal's
 * "declared", may lack it: then what it takes now counts). */
static int apply_delta(struct vm_pool *pool, struct stream_reader *rd,
		       const struct stream_dataset *sd, json_t *config, json_t *declared,
		       json_t *temps, const char *temp, const char *final, struct vm_error *err)
{
	uint64_t avail, held, need = stream_dataset_declared(sd);
	json_t *was = json_object_get(declared, temp);
	int r;

	if (!vm_pool_has_snapshot(pool, temp, sd->from_snapshot))
		return vm_error_setx(err, ENOENT, "%s has no snapshot %s to build on", temp,
				     sd->from_snapshot);
	/* A delta sizes the volume to what it declares: the config's size,
	 * or it is another disk. */
	r = migrate_check_shape(config, sd, final, err);
	if (r < 0)
		return r;
	/* The dataset after this pass takes what DS_BEGIN declares (the
	 * reader holds the data to it): it may grow from what it was declared
	 * to take by the pool's free space. */
	r = vm_pool_available(pool, &avail, err);
	if (r >= 0 && json_is_integer(was))
		held = (uint64_t)json_integer_value(was);
	else if (r >= 0)
		r = vm_pool_used(pool, temp, &held, NULL, err);
	if (r < 0)
		return r;
	if (need > avail + held)
		return vm_error_setx(
		    err, ENOSPC,
		    "%s would take %s after this pass, but it holds %s and pool %s "
		    "has %s free",
		    final, format_size(need, (char[FORMAT_SIZE_MAX]){0}),
		    format_size(held, (char[FORMAT_SIZE_MAX]){0}), pool->name,
		    format_size(avail, (char[FORMAT_SIZE_MAX]){0}));
	r = migrate_receive_native(pool, rd, sd, temp, sd->from_snapshot, NULL, NULL, err);
	/* the native receive made the snapshot; the checks below look at the
	 * head, which it left as the snapshot */
	if (r <= 0)
		return r < 0 ? r : migrate_check_landed(pool, config, final, temp, err);
	switch (sd->encoding) {
	case STREAM_ENC_BLOCKS_DELTA: {
		_cleanup_free_ char *img = vm_pool_volume_path(pool, temp);
		if (vm_pool_kind(pool, temp) != VM_DS_VOLUME)
			return vm_error_setx(err, EINVAL, "%s is not a volume", final);
		r = stream_receive_volume_delta(rd, img, err);
		break;
	}
	case STREAM_ENC_TAR_DELTA: {
		_cleanup_free_ char *dir = vm_pool_dataset_path(pool, temp);
		_cleanup_strv_ char **skip = migrate_child_names(temps, temp);
		if (vm_pool_kind(pool, temp) != VM_DS_FILESYSTEM)
			return vm_error_setx(err, EINVAL, "%s is not a filesystem", final);
		r = stream_receive_tree_delta(rd, dir, (const char *const *)skip, err);
		break;
	}
	default:
		return vm_error_setx(err, EPROTONOSUPPORT,
				     "encoding %s cannot build on a snapshot: an incremental pass "
				     "needs btrfs, blocks-delta or tar-delta",
				     stream_encoding_name(sd->encoding));
	}
	if (r >= 0)
		r = migrate_check_landed(pool, config, final, temp, err);
	if (r < 0)
		return r;
	return vm_pool_snapshot(pool, temp, sd->snapshot, err);
}

/* A later pass: deltas on top of the held snapshot. */
static int receive_delta(struct vm_node *node, struct vm_pool *pool, struct stream_reader *rd,
			 json_t *journal, const struct stream_dataset *sd,
			 const struct vm_recv_opts *opts, struct vm_incr_held *ret,
			 struct vm_error *err)
{
	json_t *temps = json_object_get(journal, "temps"),
	       *finals = json_object_get(journal, "finals");
	const char *uuid = jstr(journal, "uuid");
	_cleanup_free_ char *base =
	    strdup(jstr(journal, "snapshot") ? jstr(journal, "snapshot") : "");
	_cleanup_free_ char *snap = strdup(sd->snapshot);
	_cleanup_free_ bool *got = calloc(json_array_size(finals) + 1, sizeof(bool));
	_cleanup_json_ json_t *declared = json_object(); /* this pass's, once it lands */
	json_t *x;
	size_t i;
	int r;

	if (!base || !snap || !got || !declared)
		return vm_error_set(err, ENOMEM, "receive VM %s", uuid);
	if (!streq(base, sd->from_snapshot))
		return vm_error_setx(
		    err, ESTALE,
		    "receive VM %s: the stream builds on snapshot %s, but this node "
		    "holds %s",
		    uuid, sd->from_snapshot, base);
	json_object_set_new(journal, "applying", json_string(snap));
	r = recv_journal_write(node, journal, err);
	if (r < 0)
		return r;
	for (; sd; r = stream_next_dataset(rd, &sd, err), sd = r == 1 ? sd : NULL) {
		const char *name = stream_reader_dataset_name(rd);
		ssize_t idx = jstrv_index(finals, name);

		if (idx < 0) {
			r = vm_error_setx(err, EINVAL,
					  "the stream sends dataset %s, which the held VM does not "
					  "have",
					  name);
			goto fail;
		}
		if (!sd->from_snapshot || !streq(sd->from_snapshot, base) ||
		    !streq(sd->snapshot, snap)) {
			r = vm_error_setx(err, EINVAL,
					  "dataset %s goes from %s to %s, the others from %s to %s",
					  name, sd->from_snapshot ? sd->from_snapshot : "nothing",
					  sd->snapshot, base, snap);
			goto fail;
		}
		report(opts, "receive", name, stream_reader_bytes(rd));
		r = apply_delta(pool, rd, sd, json_object_get(journal, "record"),
				json_object_get(journal, "declared"), temps,
				json_string_value(json_array_get(temps, idx)), name, err);
		if (r >= 0)
			json_object_set_new(declared, json_string_value(json_array_get(temps, idx)),
					    json_integer(stream_dataset_declared(sd)));
		if (r < 0) {
			vm_error_prefix(err, "receive %s", name);
			goto fail;
		}
		got[idx] = true;
		vm_fault_point("incr-after-dataset");
	}
	if (r < 0)
		goto fail;
	json_array_foreach (finals, i, x)
		if (!got[i]) {
			r = vm_error_setx(err, EINVAL, "the stream lacks dataset %s",
					  json_string_value(x));
			goto fail;
		}
	json_object_del(journal, "applying");
	json_object_set_new(journal, "snapshot", json_string(snap));
	/* only now: a failed pass goes back to the base, and its figures */
	if (!json_is_object(json_object_get(journal, "declared")))
		json_object_set_new(journal, "declared", json_object());
	json_object_update(json_object_get(journal, "declared"), declared);
	r = recv_journal_write(node, journal, err);
	if (r < 0)
		goto fail;
	/* the pass landed: the base is not needed any more */
	json_array_foreach (temps, i, x) {
		struct vm_error e = {0};
		vm_pool_destroy_snapshot(pool, json_string_value(x), base, &e);
	}
	snprintf(ret->snapshot, sizeof(ret->snapshot), "%s", snap);
	return 0;
fail : {
	/* Back to the base, so that a re-run continues from it. */
	struct vm_error cerr = {0};
	if (recv_journal_reset(pool, journal, base, snap, &cerr) >= 0) {
		json_object_del(journal, "applying");
		recv_journal_write(node, journal, &cerr);
	}
}
	return vm_error_prefix(err, "receive VM %s (pass from %s)", uuid, base);
}

int vm_incr_receive_pass(struct vm_node *node, int fd, const void *prefix, size_t prefix_len,
			 const struct vm_recv_opts *opts, struct vm_incr_held *ret,
			 struct vm_error *err)
{
	_cleanup_stream_reader_ struct stream_reader *rd = NULL;
	_cleanup_json_ json_t *config = NULL, *held = NULL;
	_cleanup_close_ int lock = -1;
	const struct stream_dataset *sd = NULL;
	struct vm_incr_held out = {0};
	struct vm_pool *pool;
	char uuid[VM_UUID_LEN + 1];
	int r;

	r = migrate_recv_begin(node, fd, prefix, prefix_len, opts, &rd, &config, uuid, &lock, &pool,
			       err);
	if (r < 0)
		return r;
	r = held_load(node, uuid, &held, err);
	if (r < 0 && r != -ENOENT)
		return r;
	r = stream_next_dataset(rd, &sd, err);
	if (r < 0)
		return r;
	if (r == 0)
		return vm_error_setx(err, EINVAL, "receive VM %s: the stream has no dataset", uuid);
	snprintf(out.uuid, sizeof(out.uuid), "%s", uuid);

	if (!sd->from_snapshot) {
		if (held) {
			/* a migration that starts over */
			r = recv_rollback(node, pool, held, err);
			if (r < 0)
				return r;
		}
		r = receive_full(node, pool, rd, config, sd, opts && opts->force, opts, &out, err);
	} else {
		if (!held)
			return vm_error_setx(
			    err, ENOENT,
			    "receive VM %s: the stream builds on snapshot %s, but no "
			    "earlier pass of this VM is held here",
			    uuid, sd->from_snapshot);
		if (json_object_get(held, "applying")) {
			/* a pass that died half-way: back to its base first */
			r = recv_journal_reset(pool, held, jstr(held, "snapshot"),
					       jstr(held, "applying"), err);
			if (r < 0)
				return r;
			json_object_del(held, "applying");
		}
		r = receive_delta(node, pool, rd, held, sd, opts, &out, err);
	}
	if (r < 0)
		return r;
	out.bytes = stream_reader_bytes(rd);
	if (ret)
		*ret = out;
	return 0;
}

int vm_incr_held_snapshot(struct vm_node *node, const char *uuid, char **ret, struct vm_error *err)
{
	_cleanup_json_ json_t *held = NULL;
	int r = held_load(node, uuid, &held, err);

	if (r == -ENOENT)
		return vm_error_setx(err, ENOENT, "no held receive of VM %s here", uuid);
	if (r < 0)
		return r;
	if (json_object_get(held, "applying"))
		return vm_error_setx(
		    err, EBUSY, "VM %s: a pass was interrupted here; the next one resets it", uuid);
	*ret = strdup(jstr(held, "snapshot") ? jstr(held, "snapshot") : "");
	return *ret ? 0 : vm_error_set(err, ENOMEM, "VM %s", uuid);
}

int vm_incr_finish(struct vm_node *node, const char *uuid, json_t **ret_vm, struct vm_error *err)
{
	_cleanup_json_ json_t *held = NULL;
	_cleanup_close_ int lock = -1;
	struct vm_pool *pool;
	json_t *record, *x;
	const char *snap;
	size_t i;
	int r;

	lock = vm_store_lock(node, uuid, VM_LOCK_WAIT_SECS, err);
	if (lock < 0)
		return lock;
	r = held_load(node, uuid, &held, err);
	if (r == -ENOENT)
		return vm_error_setx(err, ENOENT, "install VM %s: no held receive of it here",
				     uuid);
	if (r < 0)
		return r;
	if (json_object_get(held, "applying"))
		return vm_error_setx(err, EBUSY,
				     "install VM %s: its last pass was interrupted; send it again",
				     uuid);
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	/* Every pass is on disk before the VM is called complete (the
	 * sender deletes nothing before we say so). */
	r = vm_pool_sync(pool, err);
	if (r < 0)
		return vm_error_prefix(err, "install VM %s", uuid);
	snap = jstr(held, "snapshot");
	record = json_object_get(held, "record");
	json_object_set_new(record, "state", json_string("stopped"));
	json_object_set_new(record, "zone_state", json_string("installed"));
	json_object_set_new(held, "phase", json_string("committing"));
	r = recv_journal_write(node, held, err);
	if (r < 0)
		return r;
	r = recv_commit(node, pool, held, err);
	if (r < 0)
		return r;
	/* recv_commit drops "vmadm-send-*" snapshots; ours too, but say it */
	json_array_foreach (json_object_get(held, "finals"), i, x) {
		struct vm_error e = {0};
		if (snap && vm_pool_has_snapshot(pool, json_string_value(x), snap))
			vm_pool_destroy_snapshot(pool, json_string_value(x), snap, &e);
	}
	if (ret_vm)
		*ret_vm = json_incref(record);
	return 0;
}

int vm_incr_abort(struct vm_node *node, const char *uuid, struct vm_error *err)
{
	_cleanup_json_ json_t *held = NULL;
	_cleanup_close_ int lock = -1;
	struct vm_pool *pool;
	int r;

	lock = vm_store_lock(node, uuid, VM_LOCK_WAIT_SECS, err);
	if (lock < 0)
		return lock;
	r = held_load(node, uuid, &held, err);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	return recv_rollback(node, pool, held, err);
}
