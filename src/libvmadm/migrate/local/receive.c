/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "brand/brand.h"
#include "migrate/local/journal.h"
#include "migrate/local/local.h"
#include "migrate/local/native.h"
#include "migrate/migrate.h"
#include "stream/stream.h"
#include "util/fault.h"
#include "util/format.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/uuid.h"
#include "vm/props.h"
#include "vm/store.h"
#include "vm/vm.h"

int vm_record_localize(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	const struct vm_brand_ops *ops;
	const char *uuid, *brand;
	struct vm_pool *pool;
	_cleanup_free_ char *zonepath = NULL, *zfs = NULL;
	json_t *disk, *nic;
	char ts[32];
	size_t i;
	int r;

	/* What only the sending node knew: its runtime, and where it sent the
	 * VM before (stale here, and it would stop a send from here). */
	json_object_del(vm, "pid");
	json_object_del(vm, "transition");
	json_object_del(vm, "boot_timestamp");
	json_object_del(vm, "accel");
	json_object_del(vm, "migrated_to");
	/* Create's rules, and a shape vmadm makes (docs/vmadm.8, RECEIVE
	 * POLICY). */
	r = vm_validate_received(vm, err);
	if (r < 0)
		return r;
	uuid = jstr(vm, "uuid");
	brand = jstr(vm, "brand");
	ops = vm_brand_ops_by_name(brand);
	if (!ops)
		return vm_error_setx(err, ENOTSUP, "brand %s is not supported on this node", brand);
	/* The node's policy: its own nic tags only, host paths only under the
	 * roots it allows. */
	r = vm_validate_node_nics(node, json_object_get(vm, "nics"), "nics", err);
	if (r < 0)
		return r;
	if (ops->check_received) {
		r = ops->check_received(node, vm, err);
		if (r < 0)
			return r;
	}
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	/* Every name and path of this node is made here, from the UUID. */
	zonepath = strdup_printf("%s/%s", pool->mountpoint, uuid);
	zfs = strdup_printf(VM_POOL_NAME "/%s", uuid);
	if (!zonepath || !zfs)
		return vm_error_set(err, ENOMEM, "VM %s", uuid);
	json_object_set_new(vm, "zonepath", json_string(zonepath));
	json_object_set_new(vm, "zfs_filesystem", json_string(zfs));
	json_object_set_new(vm, "zpool", json_string(VM_POOL_NAME));
	json_array_foreach (json_object_get(vm, "disks"), i, disk) {
		_cleanup_free_ char *name = strdup_printf(VM_POOL_NAME "/%s-disk%zu", uuid, i);
		_cleanup_free_ char *path = vm_pool_volume_path(pool, name);
		json_object_set_new(disk, "zfs_filesystem", json_string(name));
		json_object_set_new(disk, "path", json_string(path));
	}
	json_array_foreach (json_object_get(vm, "nics"), i, nic) {
		char ifname[16];
		snprintf(ifname, sizeof(ifname), "net%zu", i);
		json_object_set_new(nic, "interface", json_string(ifname));
	}
	/* Marks the VM as received for good: its start re-checks its
	 * filesystems against the node's roots (brand/joyent.c). */
	vm_timestamp_now(ts);
	json_object_set_new(vm, "received_at", json_string(ts));
	json_object_set_new(vm, "state", json_string("receiving"));
	json_object_set_new(vm, "zone_state", json_string("configured"));
	return 0;
}

/* May the VM uuid be (re)placed here? Fills *ret_old with the record being
 * replaced (force), or NULL. */
static int check_target(struct vm_node *node, const char *uuid, bool force, json_t **ret_old,
			struct vm_error *err)
{
	_cleanup_json_ json_t *old = NULL;
	int r;

	*ret_old = NULL;
	if (!vm_store_exists(node, uuid))
		return 0;
	if (!force)
		return vm_error_setx(err, EEXIST,
				     "VM %s already exists on this node (use -f to replace it; it "
				     "must be stopped)",
				     uuid);
	r = vm_get(node, uuid, &old, err);
	if (r < 0)
		return r;
	if (streq(jstr(old, "state") ? jstr(old, "state") : "", "running"))
		return vm_error_setx(
		    err, EBUSY, "VM %s is running on this node: stop it before replacing it", uuid);
	*ret_old = TAKE_PTR(old);
	return 0;
}

static bool is_volume_name(const char *uuid, const char *name)
{
	size_t prefix = strlen(VM_POOL_NAME) + 1 + strlen(uuid);
	return strncmp(name + prefix, "-disk", 5) == 0;
}

/* The size in bytes the config gives volume name (zones/UUID-diskN:
 * disks[N].size MiB), 0 for a filesystem. */
static int config_volume_size(json_t *config, const char *name, uint64_t *ret, struct vm_error *err)
{
	const char *uuid = jstr(config, "uuid"), *n;
	json_t *disk, *size;
	char *end;
	unsigned long idx;

	*ret = 0;
	if (!is_volume_name(uuid, name))
		return 0;
	n = name + strlen(VM_POOL_NAME) + 1 + strlen(uuid) + 5;
	idx = strtoul(n, &end, 10);
	disk = *n && !*end ? json_array_get(json_object_get(config, "disks"), idx) : NULL;
	size = json_object_get(disk, "size");
	if (!json_is_integer(size) || json_integer_value(size) <= 0)
		return vm_error_setx(err, EINVAL, "%s: the VM's config has no size for this disk",
				     name);
	*ret = (uint64_t)json_integer_value(size) << 20;
	return 0;
}

/* Is sd what the VM's config makes dataset final: a filesystem, or a
 * volume of the config's size? */
static int check_shape(json_t *config, const struct stream_dataset *sd, const char *final,
		       struct vm_error *err)
{
	bool is_volume = sd->kind == STREAM_KIND_VOLUME;
	uint64_t want_size;
	int r;

	r = config_volume_size(config, final, &want_size, err);
	if (r < 0)
		return r;
	if (is_volume != (want_size > 0))
		return vm_error_setx(
		    err, EINVAL, "the stream sends %s as a %s, but the VM's config makes it a %s",
		    final, is_volume ? "volume" : "filesystem",
		    want_size > 0 ? "volume" : "filesystem");
	/* The config says how big a disk is; a volume of another size would
	 * be another disk (and could be any size). */
	if (is_volume && sd->size != want_size)
		return vm_error_setx(err, EINVAL,
				     "the stream's volume is %llu bytes, but the VM's config makes "
				     "the disk %llu MiB (%llu bytes)",
				     (unsigned long long)sd->size,
				     (unsigned long long)(want_size >> 20),
				     (unsigned long long)want_size);
	return 0;
}

/* Receive one dataset of the stream into temp, as the VM's config makes
 * it; a native one resumably when ret_token is given (token: the cut
 * receive its data goes on from; migrate_native_receive). */
static int receive_one(struct vm_pool *pool, struct stream_reader *rd,
		       const struct stream_dataset *sd, json_t *config, const char *final,
		       const char *temp, const char *token, char **ret_token, struct vm_error *err)
{
	_cleanup_free_ char *path = vm_pool_dataset_path(pool, temp);
	uint64_t avail, need = stream_dataset_declared(sd);
	struct stat st;
	int r;

	r = check_shape(config, sd, final, err);
	if (r < 0)
		return r;
	r = vm_pool_available(pool, &avail, err);
	if (r < 0)
		return r;
	/* What DS_BEGIN declares ("used", what the dataset takes at the
	 * sender, when the stream has it: a sparse volume's size may be far
	 * more than its data) must fit; the reader holds the data to it
	 * (stream_dataset_data_limit). */
	if (need > avail) {
		char needs[32], have[32];
		return vm_error_setx(err, ENOSPC, "%s needs %s but pool %s has %s free", final,
				     format_size(need, needs), pool->name,
				     format_size(avail, have));
	}
	/* A parent received natively may hold an empty directory where its
	 * child dataset goes (btrfs shows nested subvolumes so). */
	if (vm_pool_kind(pool, temp) == VM_DS_NONE && lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
		rmdir(path);

	r = migrate_receive_native(pool, rd, sd, temp, NULL, token, ret_token, err);
	if (r <= 0)
		return r;
	switch (sd->encoding) {
	case STREAM_ENC_BLOCKS: {
		_cleanup_free_ char *img = vm_pool_volume_path(pool, temp);
		r = vm_pool_create_volume(pool, temp, sd->size, err);
		if (r < 0)
			return r;
		return stream_receive_volume(rd, img, err);
	}
	case STREAM_ENC_TAR:
		r = vm_pool_create_filesystem(pool, temp, err);
		if (r < 0)
			return r;
		return stream_receive_tree(rd, path, err);
	default:
		return vm_error_setx(err, EPROTONOSUPPORT,
				     "encoding %s is not supported by this node: send it with "
				     "--portable",
				     stream_encoding_name(sd->encoding));
	}
}

/* What a dataset that landed in temp must be, whatever its encoding wrote:
 * a volume exactly its config's size (a btrfs stream sets the file's size
 * itself), the VM's own dataset what its brand runs from
 * (check_received_zone: a joyent VM's real root directory). */
static int check_landed(struct vm_pool *pool, json_t *config, const char *final, const char *temp,
			struct vm_error *err)
{
	const char *uuid = jstr(config, "uuid");
	const struct vm_brand_ops *ops = vm_brand_ops_by_name(jstr(config, "brand"));
	uint64_t want;
	int r;

	r = config_volume_size(config, final, &want, err);
	if (r < 0)
		return r;
	if (want > 0) {
		_cleanup_free_ char *img = vm_pool_volume_path(pool, temp);
		_cleanup_close_ int fd = -1;
		uint64_t size = 0;

		if (!img)
			return vm_error_set(err, ENOMEM, "%s", final);
		/* O_NONBLOCK: a fifo made by a stream must not hang us */
		fd = fs_open_image(img, O_RDONLY | O_NONBLOCK);
		if (fd < 0)
			return vm_error_set(err, -fd, "%s: the volume", final);
		r = fs_image_size(fd, &size);
		if (r == -EINVAL)
			return vm_error_setx(err, EINVAL,
					     "%s: the volume is not a regular file or block device",
					     final);
		if (r < 0)
			return vm_error_set(err, -r, "%s: the volume's size", final);
		if (size != want)
			return vm_error_setx(err, EINVAL,
					     "%s: the stream made a volume of %llu bytes, but the "
					     "VM's config makes the disk %llu bytes",
					     final, (unsigned long long)size,
					     (unsigned long long)want);
	}
	if (ops && ops->check_received_zone &&
	    strlen(final) == strlen(VM_POOL_NAME) + 1 + strlen(uuid)) {
		_cleanup_free_ char *dir = vm_pool_dataset_path(pool, temp);
		if (!dir)
			return vm_error_set(err, ENOMEM, "%s", final);
		return ops->check_received_zone(dir, final, err);
	}
	return 0;
}

static void report(const struct vm_recv_opts *o, const char *phase, const char *ds, uint64_t bytes)
{
	struct vm_progress p = {.phase = phase, .dataset = ds, .bytes = bytes};
	if (o->progress)
		o->progress(&p, o->userdata);
}

int migrate_recv_begin(struct vm_node *node, int fd, const void *prefix, size_t prefix_len,
		       const struct vm_recv_opts *opts, struct stream_reader **ret_rd,
		       json_t **ret_config, char ret_uuid[VM_UUID_LEN + 1], int *ret_lock,
		       struct vm_pool **ret_pool, struct vm_error *err)
{
	_cleanup_stream_reader_ struct stream_reader *rd = NULL;
	_cleanup_json_ json_t *config = NULL;
	_cleanup_close_ int lock = -1;
	int r;

	r = stream_reader_open_prefix(fd, prefix, prefix_len, &rd, err);
	if (r < 0)
		return r;
	r = stream_read_config(rd, &config, err);
	if (r < 0)
		return r;
	snprintf(ret_uuid, VM_UUID_LEN + 1, "%s", stream_reader_uuid(rd));
	/* A migration announced a VM at BEGIN (the target checked that one,
	 * and locks, holds and reports by its UUID): the stream must carry
	 * that VM, not another. */
	if (opts && opts->uuid && !streq(opts->uuid, ret_uuid))
		return vm_error_setx(err, EINVAL,
				     "the stream carries VM %s, but the migration's begin message "
				     "announced VM %s",
				     ret_uuid, opts->uuid);
	if (opts && opts->brand && !streq(opts->brand, jstr(config, "brand") ?: "?"))
		return vm_error_setx(err, EINVAL,
				     "the stream carries a VM of brand %s, but the migration's "
				     "begin message announced brand %s",
				     jstr(config, "brand") ?: "?", opts->brand);
	r = vm_record_localize(node, config, err);
	if (r < 0)
		return vm_error_prefix(err, "the stream's config of VM %s", ret_uuid);
	lock = vm_store_lock(node, ret_uuid, VM_LOCK_WAIT_SECS, err);
	if (lock < 0)
		return lock;
	r = vm_node_pool(node, ret_pool, err);
	if (r < 0)
		return r;
	*ret_rd = TAKE_PTR(rd);
	*ret_config = TAKE_PTR(config);
	*ret_lock = TAKE_FD(lock);
	return 0;
}

/* The journal of this receive, written before any data lands: a new one
 * (its placeholder record saved when the VM is new here), or the kept
 * partial of opts->resume, whose complete temps stay. On a failure after
 * the journal exists, *ret_journal is set: the caller rolls it back. */
static int recv_start(struct vm_node *node, struct vm_pool *pool, const struct vm_recv_opts *opts,
		      const char *uuid, json_t *config, json_t **ret_journal, struct vm_error *err)
{
	_cleanup_json_ json_t *old = NULL;
	json_t *journal, *finals, *temps, *x;
	size_t i;
	int r;

	if (opts->resume) {
		/* A kept partial of this VM: its placeholder and complete temps
		 * stay, the stream brings the rest. */
		const char *ju = jstr(opts->resume, "uuid");
		if (!ju || !streq(ju, uuid))
			return vm_error_setx(err, EINVAL, "the stream is of VM %s, not of VM %s",
					     uuid, ju ? ju : "?");
		journal = *ret_journal = json_deep_copy(opts->resume);
		json_object_set_new(journal, "phase", json_string("receiving"));
		json_object_del(journal, "expires");
		json_object_set(journal, "record", config);
		r = recv_journal_write(node, journal, err);
		if (r < 0) {
			json_decref(TAKE_PTR(*ret_journal));
			return r;
		}
	} else {
		r = check_target(node, uuid, opts->force, &old, err);
		if (r < 0)
			return r;
		finals = vm_datasets(config);
		temps = json_array();
		json_array_foreach (finals, i, x) {
			_cleanup_free_ char *t = recv_temp_name(uuid, json_string_value(x));
			if (vm_pool_kind(pool, t) != VM_DS_NONE) {
				json_decref(finals);
				json_decref(temps);
				return vm_error_setx(err, EEXIST, "dataset %s already exists", t);
			}
			json_array_append_new(temps, json_string(t));
		}
		journal = json_pack("{s:s, s:s, s:o, s:o, s:o, s:O, s:b, s:[]}", "uuid", uuid,
				    "phase", "receiving", "temps", temps, "finals", finals,
				    "old_datasets", old ? vm_datasets(old) : json_array(), "record",
				    config, "placeholder", old == NULL, "done");
		r = recv_journal_write(node, journal, err);
		if (r < 0) {
			json_decref(journal);
			return r;
		}
		*ret_journal = journal;
		if (!old) {
			_cleanup_json_ json_t *ph = json_deep_copy(config);
			json_object_set_new(ph, "transition", json_string("receiving"));
			r = vm_store_save(node, ph, err);
			if (r < 0)
				return r;
		}
	}
	if (opts->instant)
		json_object_set_new(journal, "instant", json_string(opts->instant));
	if (!json_is_array(json_object_get(journal, "done")))
		json_object_set_new(journal, "done", json_array());
	return 0;
}

/* One dataset of a receive into temp; in a network receive (opts->hold) a
 * native one resumably: one cut by the link or the sender (nothing refused)
 * keeps what it took where the pool can (OpenZFS), its token in the
 * journal's "resume" (final name -> token), offered to the sender in the
 * next ACCEPT; a stream that resumes one (DS_BEGIN's resume_token) must
 * bring the token kept here. A kept part the stream does not resume is
 * dropped first. */
static int receive_resumable(struct vm_node *node, struct vm_pool *pool, struct stream_reader *rd,
			     const struct stream_dataset *sd, json_t *config, json_t *journal,
			     const struct vm_recv_opts *opts, const char *final, const char *temp,
			     struct vm_error *err)
{
	json_t *resume = json_object_get(journal, "resume");
	const char *kept = json_string_value(json_object_get(resume, final));
	_cleanup_free_ char *tok = NULL;
	struct vm_error e = {0};
	int r;

	if (sd->resume_token && (!kept || !streq(kept, sd->resume_token)))
		return vm_error_setx(err, EINVAL,
				     "the stream resumes a cut receive of %s that this node did "
				     "not keep",
				     final);
	if (kept && !sd->resume_token) {
		/* sent whole again: what the cut receive took goes */
		vm_pool_receive_cleanup(pool, temp, &e);
		if (vm_pool_kind(pool, temp) != VM_DS_NONE)
			vm_pool_destroy(pool, temp, true, &e);
	}
	if (kept) {
		json_object_del(resume, final);
		r = recv_journal_write(node, journal, err);
		if (r < 0)
			return r;
	}
	r = receive_one(pool, rd, sd, config, final, temp, sd->resume_token,
			opts->hold ? &tok : NULL, err);
	if (r < 0 && tok && stream_reader_was_cut(rd)) {
		if (!json_is_object(resume))
			json_object_set_new(journal, "resume", resume = json_object());
		json_object_set_new(resume, final, json_string(tok));
		if (recv_journal_write(node, journal, &e) < 0)
			vm_warn("receive %s: the journal lost the resume token: %s", final, e.msg);
	} else if (r < 0 && tok) {
		/* refused, not cut: nothing of it is kept */
		vm_pool_receive_cleanup(pool, temp, &e);
	}
	return r;
}

/* Every dataset of the stream into its temp, checked as it lands; every
 * dataset of the VM's config must come, but those the journal has done. */
static int recv_datasets(struct vm_node *node, struct vm_pool *pool, struct stream_reader *rd,
			 const struct vm_recv_opts *opts, json_t *config, json_t *journal,
			 struct vm_error *err)
{
	json_t *finals = json_object_get(journal, "finals"),
	       *temps = json_object_get(journal, "temps");
	_cleanup_free_ bool *got = calloc(json_array_size(finals) + 1, sizeof(bool));
	const struct stream_dataset *sd;
	json_t *x;
	size_t i;
	int r;

	if (!got)
		return vm_error_set(err, ENOMEM, "receive");
	json_array_foreach (json_object_get(journal, "done"), i, x) {
		ssize_t idx = jstrv_index(finals, json_string_value(x));
		if (idx >= 0)
			got[idx] = true;
	}
	/* index_of is linear in finals, which vm_validate_received bounds:
	 * the VM's own dataset, its data and at most VM_DISKS_MAX disks. */
	while ((r = stream_next_dataset(rd, &sd, err)) == 1) {
		const char *name = stream_reader_dataset_name(rd), *temp;
		ssize_t idx = jstrv_index(finals, name);

		if (idx < 0 || got[idx])
			return vm_error_setx(
			    err, EINVAL,
			    idx >= 0 ? "the stream sends dataset %s twice"
				     : "the stream sends dataset %s, which the VM's config does "
				       "not have",
			    name);
		report(opts, "receive", name, stream_reader_bytes(rd));
		temp = json_string_value(json_array_get(temps, idx));
		r = receive_resumable(node, pool, rd, sd, config, journal, opts, name, temp, err);
		if (r >= 0)
			r = check_landed(pool, config, name, temp, err);
		if (r < 0)
			return vm_error_prefix(err, "receive %s", name);
		got[idx] = true;
		if (opts->hold) {
			/* Complete and verified: kept if the rest fails. */
			json_array_append_new(json_object_get(journal, "done"), json_string(name));
			r = recv_journal_write(node, journal, err);
			if (r < 0)
				return r;
		}
		vm_fault_point("receive-after-dataset");
	}
	if (r < 0)
		return r;
	json_array_foreach (finals, i, x)
		if (!got[i])
			return vm_error_setx(err, EINVAL, "the stream lacks dataset %s",
					     json_string_value(x));
	return 0;
}

int vm_receive(struct vm_node *node, int fd, const void *prefix, size_t prefix_len,
	       const struct vm_recv_opts *opts, json_t **ret_vm, struct vm_error *err)
{
	_cleanup_stream_reader_ struct stream_reader *rd = NULL;
	_cleanup_json_ json_t *config = NULL, *journal = NULL;
	_cleanup_close_ int lock = -1;
	struct vm_pool *pool;
	char uuid[VM_UUID_LEN + 1];
	int r;

	r = migrate_recv_begin(node, fd, prefix, prefix_len, opts, &rd, &config, uuid, &lock, &pool,
			       err);
	if (r < 0)
		return r;
	r = recv_start(node, pool, opts, uuid, config, &journal, err);
	if (r < 0 && !journal)
		return r;
	if (r >= 0)
		r = recv_datasets(node, pool, rd, opts, config, journal, err);
	if (r < 0)
		goto fail;

	/* Every checksum and the END record are verified. The data goes to
	 * disk before the VM is called complete: a sender may delete its
	 * copy as soon as we say so. */
	r = vm_pool_sync(pool, err);
	if (r < 0)
		goto fail;
	/* Past this point the receive is finished, by us or by the next
	 * command. */
	json_object_set_new(config, "state", json_string("stopped"));
	json_object_set_new(config, "zone_state", json_string("installed"));
	json_object_set_new(journal, "phase", json_string("committing"));
	r = recv_journal_write(node, journal, err);
	if (r < 0)
		goto fail;
	vm_fault_point("receive-before-commit");
	report(opts, "install", NULL, stream_reader_bytes(rd));
	r = recv_commit(node, pool, journal, err);
	if (r < 0)
		return r;
	if (ret_vm)
		*ret_vm = json_incref(config);
	return 0;

fail : {
	struct vm_error cerr = {0};
	size_t ndone = json_array_size(json_object_get(journal, "done"));
	size_t ncut = json_object_size(json_object_get(journal, "resume"));
	if (opts->hold && ndone + ncut > 0 &&
	    recv_hold(node, pool, journal, opts->hold_secs, &cerr) >= 0)
		return vm_error_prefix(err,
				       "receive VM %s (the %zu complete datasets%s are "
				       "kept for a resume)",
				       uuid, ndone, ncut ? " and the part of a cut one" : "");
	recv_rollback(node, pool, journal, &cerr);
}
	return vm_error_prefix(err, "receive VM %s", uuid);
}

int vm_receive_config(struct vm_node *node, json_t *config, bool force, json_t **ret_vm,
		      struct vm_error *err)
{
	_cleanup_json_ json_t *vm = json_deep_copy(config), *old = NULL;
	_cleanup_close_ int lock = -1;
	const char *uuid;
	int r;

	r = vm_record_localize(node, vm, err);
	if (r < 0)
		return r;
	uuid = jstr(vm, "uuid");
	lock = vm_store_lock(node, uuid, VM_LOCK_WAIT_SECS, err);
	if (lock < 0)
		return lock;
	r = check_target(node, uuid, force, &old, err);
	if (r < 0)
		return r;
	r = vm_store_save(node, vm, err);
	if (r < 0)
		return r;
	if (ret_vm)
		*ret_vm = TAKE_PTR(vm);
	return 0;
}

int vm_install(struct vm_node *node, const char *uuid, struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL, *names = NULL, *missing = json_array();
	_cleanup_close_ int lock = -1;
	_cleanup_free_ char *list = NULL;
	struct vm_pool *pool;
	json_t *x;
	size_t i, len = 0;
	int r;

	lock = vm_store_lock(node, uuid, VM_LOCK_WAIT_SECS, err);
	if (lock < 0)
		return lock;
	r = vm_store_load(node, uuid, &vm, err);
	if (r < 0)
		return r;
	if (!streq(jstr(vm, "state") ? jstr(vm, "state") : "", "receiving") ||
	    json_object_get(vm, "transition"))
		return vm_error_setx(err, EINVAL, "VM %s is not waiting to be installed (state %s)",
				     uuid, jstr(vm, "state"));
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	names = vm_datasets(vm);
	json_array_foreach (names, i, x) {
		const char *ds = json_string_value(x);
		enum vm_dataset_kind kind = vm_pool_kind(pool, ds);
		bool vol = is_volume_name(uuid, ds);
		if (kind == VM_DS_NONE || (kind == VM_DS_VOLUME) != vol) {
			json_array_append(missing, x);
			len += strlen(ds) + 2;
		}
	}
	if (json_array_size(missing) > 0) {
		char *p;

		list = p = calloc(1, len + 1);
		if (!list)
			return vm_error_set(err, ENOMEM, "install VM %s", uuid);
		/* p walks along: one pass over the list, not one per name */
		json_array_foreach (missing, i, x)
			p = stpcpy(stpcpy(p, i ? ", " : ""), json_string_value(x));
		return vm_error_setx(err, ENOENT, "VM %s is missing datasets: %s", uuid, list);
	}
	json_object_set_new(vm, "state", json_string("stopped"));
	json_object_set_new(vm, "zone_state", json_string("installed"));
	return vm_store_save(node, vm, err);
}

/* ---- shared with incremental.c (local.h) ---- */

int migrate_receive_full(struct vm_pool *pool, struct stream_reader *rd,
			 const struct stream_dataset *sd, json_t *config, const char *final,
			 const char *temp, struct vm_error *err)
{
	int r = receive_one(pool, rd, sd, config, final, temp, NULL, NULL, err);

	return r < 0 ? r : check_landed(pool, config, final, temp, err);
}

int migrate_receive_native(struct vm_pool *pool, struct stream_reader *rd,
			   const struct stream_dataset *sd, const char *temp, const char *from_snap,
			   const char *token, char **ret_token, struct vm_error *err)
{
	if (vm_pool_speaks(pool, stream_encoding_name(sd->encoding)))
		return migrate_native_receive(pool, temp, sd->snapshot, from_snap, token, ret_token,
					      rd, err);
	if (sd->encoding == STREAM_ENC_BTRFS || sd->encoding == STREAM_ENC_ZFS)
		return vm_error_setx(err, EPROTONOSUPPORT,
				     "this node's %s pool cannot take a %s stream: send it with "
				     "--portable",
				     pool->ops->name, stream_encoding_name(sd->encoding));
	return 1;
}

int migrate_check_shape(json_t *config, const struct stream_dataset *sd, const char *final,
			struct vm_error *err)
{
	return check_shape(config, sd, final, err);
}

int migrate_check_landed(struct vm_pool *pool, json_t *config, const char *final, const char *temp,
			 struct vm_error *err)
{
	return check_landed(pool, config, final, temp, err);
}

int migrate_check_target(struct vm_node *node, const char *uuid, bool force, json_t **ret_old,
			 struct vm_error *err)
{
	return check_target(node, uuid, force, ret_old, err);
}

bool migrate_is_volume_name(const char *uuid, const char *name)
{
	return is_volume_name(uuid, name);
}
