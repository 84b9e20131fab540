/* SPDX-License-Identifier: MIT */
#include "vm.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "brand/brand.h"
#include "storage/pool.h"
#include "util/fault.h"
#include "util/format.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/macros.h"
#include "util/uuid.h"
#include "vm/props.h"
#include "vm/store.h"

#define MIB (1024ULL * 1024ULL)

static void random_mac(char out[18])
{
	unsigned char b[3] = { 0 };

	if (getrandom(b, sizeof(b), 0) != sizeof(b))
		b[0] = getpid() & 0xff;
	/* 02: locally administered, unicast; 08:20 marks vmadm. */
	snprintf(out, 18, "02:08:20:%02x:%02x:%02x", b[0], b[1], b[2]);
}

/* Image dataset zones/IMAGE and its @final snapshot must exist. */
static int check_image(struct vm_pool *pool, const char *image_uuid, const char *what,
		       struct vm_error *err)
{
	_cleanup_free_ char *ds = strdup_printf(VM_POOL_NAME "/%s", image_uuid);
	_cleanup_strv_ char **snaps = NULL;
	int r;

	if (vm_pool_kind(pool, ds) == VM_DS_NONE)
		return vm_error_setx(err, ENOENT,
				     "%s: image %s is not installed (see imgadm install)", what,
				     image_uuid);
	r = vm_pool_list_snapshots(pool, ds, &snaps, err);
	if (r < 0)
		return r;
	for (char **s = snaps; s && *s; s++)
		if (streq(*s, "final"))
			return 0;
	return vm_error_setx(err, ENOENT, "%s: image %s has no @final snapshot", what,
			     image_uuid);
}

/* Fill in what vmadm computes for a new VM: names, paths, defaults. */
static int build_record(struct vm_node *node, struct vm_pool *pool, json_t *vm,
			struct vm_error *err)
{
	const char *uuid = jstr(vm, "uuid"), *brand = jstr(vm, "brand");
	bool kvm = streq(brand, "kvm");
	_cleanup_free_ char *zonepath = strdup_printf("%s/%s", pool->mountpoint, uuid);
	_cleanup_free_ char *zfs = strdup_printf(VM_POOL_NAME "/%s", uuid);
	char ts[32];
	json_t *disks, *nics, *disk, *nic;
	size_t i;
	bool has_primary = false, has_boot = false;

	vm_timestamp_now(ts);
	json_object_set_new(vm, "zonepath", json_string(zonepath));
	json_object_set_new(vm, "zfs_filesystem", json_string(zfs));
	json_object_set_new(vm, "zpool", json_string(VM_POOL_NAME));
	json_object_set_new(vm, "create_timestamp", json_string(ts));
	json_object_set_new(vm, "state", json_string("provisioning"));
	json_object_set_new(vm, "zone_state", json_string("configured"));
	if (!json_object_get(vm, "autoboot"))
		json_object_set_new(vm, "autoboot", json_true());
	if (!json_object_get(vm, "hostname"))
		json_object_set_new(vm, "hostname", json_string(uuid));
	if (!json_object_get(vm, "customer_metadata"))
		json_object_set_new(vm, "customer_metadata", json_object());
	if (!json_object_get(vm, "internal_metadata"))
		json_object_set_new(vm, "internal_metadata", json_object());
	if (!json_object_get(vm, "tags"))
		json_object_set_new(vm, "tags", json_object());
	if (!json_object_get(vm, "resolvers"))
		json_object_set_new(vm, "resolvers", json_array());

	if (kvm) {
		if (!json_object_get(vm, "ram"))
			json_object_set_new(vm, "ram", json_integer(256));
		if (!json_object_get(vm, "vcpus"))
			json_object_set_new(vm, "vcpus", json_integer(1));
		if (!json_object_get(vm, "max_physical_memory"))
			json_object_set(vm, "max_physical_memory", json_object_get(vm, "ram"));
	} else {
		if (!json_object_get(vm, "max_physical_memory"))
			json_object_set_new(vm, "max_physical_memory", json_integer(256));
		if (!json_object_get(vm, "quota"))
			json_object_set_new(vm, "quota", json_integer(10));
		if (json_is_true(json_object_get(vm, "delegate_dataset"))) {
			_cleanup_free_ char *data = strdup_printf("%s/data", zfs);
			json_t *ds = json_array();
			json_array_append_new(ds, json_string(data));
			json_object_set_new(vm, "datasets", ds);
		}
	}

	disks = json_object_get(vm, "disks");
	json_array_foreach(disks, i, disk)
		if (json_is_true(json_object_get(disk, "boot")))
			has_boot = true;
	json_array_foreach(disks, i, disk) {
		_cleanup_free_ char *ds = strdup_printf(VM_POOL_NAME "/%s-disk%zu", uuid, i);
		_cleanup_free_ char *path = vm_pool_volume_path(pool, ds);
		const char *img = jstr(disk, "image_uuid");

		json_object_set_new(disk, "zfs_filesystem", json_string(ds));
		json_object_set_new(disk, "path", json_string(path));
		if (!json_object_get(disk, "model"))
			json_object_set_new(disk, "model", json_string("virtio"));
		if (!json_object_get(disk, "media"))
			json_object_set_new(disk, "media", json_string("disk"));
		if (!json_object_get(disk, "boot"))
			json_object_set_new(disk, "boot", json_boolean(!has_boot && i == 0));
		if (img) {
			char what[64];
			uint64_t used, volsize;
			_cleanup_free_ char *ids = strdup_printf(VM_POOL_NAME "/%s", img);
			int r;

			snprintf(what, sizeof(what), "disks[%zu].image_uuid", i);
			r = check_image(pool, img, what, err);
			if (r < 0)
				return r;
			r = vm_pool_used(pool, ids, &used, &volsize, err);
			if (r < 0)
				return r;
			json_object_set_new(disk, "image_size", json_integer(volsize / MIB));
			if (!json_object_get(disk, "size"))
				json_object_set_new(disk, "size", json_integer(volsize / MIB));
			else if ((uint64_t)json_integer_value(json_object_get(disk, "size")) * MIB <
				 volsize)
				return vm_error_setx(err, EINVAL,
						     "property 'disks[%zu].size': %" JSON_INTEGER_FORMAT
						     " MiB is smaller than image %s (%llu MiB)",
						     i, json_integer_value(json_object_get(disk, "size")),
						     img, (unsigned long long)(volsize / MIB));
		}
	}

	nics = json_object_get(vm, "nics");
	json_array_foreach(nics, i, nic)
		if (json_is_true(json_object_get(nic, "primary")))
			has_primary = true;
	json_array_foreach(nics, i, nic) {
		char name[16];
		if (!jstr(nic, "mac")) {
			char mac[18];
			random_mac(mac);
			json_object_set_new(nic, "mac", json_string(mac));
		}
		snprintf(name, sizeof(name), "net%zu", i);
		json_object_set_new(nic, "interface", json_string(name));
		if (kvm && !json_object_get(nic, "model"))
			json_object_set_new(nic, "model", json_string("virtio"));
		if (!has_primary && i == 0)
			json_object_set_new(nic, "primary", json_true());
	}

	if (!kvm && jstr(vm, "image_uuid")) {
		int r = check_image(pool, jstr(vm, "image_uuid"), "image_uuid", err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Refuse, before creating anything, volumes that cannot fit in the pool. */
static int check_space(struct vm_pool *pool, json_t *vm, struct vm_error *err)
{
	uint64_t avail, total = 0;
	json_t *disk;
	size_t i;
	int r;

	r = vm_pool_available(pool, &avail, err);
	if (r < 0)
		return r;
	json_array_foreach(json_object_get(vm, "disks"), i, disk) {
		uint64_t size = (uint64_t)json_integer_value(json_object_get(disk, "size")) * MIB;
		char need[32], have[32];

		if (jstr(disk, "image_uuid"))
			continue; /* a clone shares the image's blocks */
		total += size;
		if (total > avail) {
			format_size(size, need);
			format_size(avail, have);
			return vm_error_setx(
			    err, ENOSPC,
			    "property 'disks[%zu].size': disk %s of %s does not fit "
			    "in pool %s (%s free)",
			    i, jstr(disk, "zfs_filesystem"), need, pool->name, have);
		}
	}
	return 0;
}

static int create_datasets(struct vm_pool *pool, json_t *vm, struct vm_error *err)
{
	const char *zfs = jstr(vm, "zfs_filesystem"), *img = jstr(vm, "image_uuid");
	bool kvm = streq(jstr(vm, "brand"), "kvm");
	json_t *disk, *ds;
	size_t i;
	int r;

	if (!kvm && img) {
		_cleanup_free_ char *snap = strdup_printf(VM_POOL_NAME "/%s@final", img);
		r = vm_pool_clone(pool, snap, zfs, 0, err);
	} else {
		r = vm_pool_create_filesystem(pool, zfs, err);
	}
	if (r < 0)
		return r;
	if (!kvm) {
		_cleanup_free_ char *rootdir = strdup_printf("%s/root", jstr(vm, "zonepath"));
		r = fs_mkdir_p(rootdir, 0755, err);
		if (r < 0)
			return r;
	}
	json_array_foreach(json_object_get(vm, "datasets"), i, ds) {
		r = vm_pool_create_filesystem(pool, json_string_value(ds), err);
		if (r < 0)
			return r;
	}
	json_array_foreach(json_object_get(vm, "disks"), i, disk) {
		const char *name = jstr(disk, "zfs_filesystem");
		uint64_t size = (uint64_t)json_integer_value(json_object_get(disk, "size")) * MIB;
		const char *dimg = jstr(disk, "image_uuid");

		if (dimg) {
			_cleanup_free_ char *snap = strdup_printf(VM_POOL_NAME "/%s@final", dimg);
			r = vm_pool_clone(pool, snap, name, size, err);
		} else
			r = vm_pool_create_volume(pool, name, size, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int vm_quota_apply(struct vm_pool *pool, json_t *vm, struct vm_error *err)
{
	json_t *q = json_object_get(vm, "quota");
	const char *ds = jstr(vm, "zfs_filesystem");

	if (!json_is_integer(q) || !ds)
		return 0;
	return vm_pool_set_quota(pool, ds, (uint64_t)json_integer_value(q) << 30, err);
}

static int destroy_existing(struct vm_pool *pool, json_t *vm, struct vm_error *err)
{
	_cleanup_json_ json_t *names = vm_datasets(vm);
	int r;

	for (size_t i = json_array_size(names); i-- > 0;) {
		const char *ds = json_string_value(json_array_get(names, i));
		if (vm_pool_kind(pool, ds) == VM_DS_NONE)
			continue;
		r = vm_pool_destroy(pool, ds, true, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int vm_create(struct vm_node *node, json_t *payload, json_t **ret_vm, struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL;
	_cleanup_close_ int lock = -1;
	char uuid[VM_UUID_LEN + 1];
	struct vm_pool *pool;
	int r;

	r = vm_validate_create(payload, NULL, err);
	if (r < 0)
		return r;
	/* A nic joins only a network the node defines (vmadm.conf nic_tags). */
	r = vm_validate_node_nics(node, json_object_get(payload, "nics"), "nics", err);
	if (r < 0)
		return r;
	vm = json_deep_copy(payload);
	if (jstr(vm, "uuid")) {
		snprintf(uuid, sizeof(uuid), "%s", jstr(vm, "uuid"));
		for (char *c = uuid; *c; c++)
			*c = (*c >= 'A' && *c <= 'F') ? *c - 'A' + 'a' : *c;
	} else if (vm_uuid_generate(uuid) < 0)
		return vm_error_set(err, errno, "generate a UUID");
	json_object_set_new(vm, "uuid", json_string(uuid));

	lock = vm_store_lock(node, uuid, VM_LOCK_WAIT_SECS, err);
	if (lock < 0)
		return lock;
	if (vm_store_exists(node, uuid))
		return vm_error_setx(err, EEXIST, "property 'uuid': VM %s already exists", uuid);
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	r = build_record(node, pool, vm, err);
	if (r < 0)
		return r;
	r = check_space(pool, vm, err);
	if (r < 0)
		return r;
	{
		/* A dataset of this name left by something else is not ours to
		 * reuse or remove. */
		_cleanup_json_ json_t *names = vm_datasets(vm);
		json_t *n;
		size_t i;
		json_array_foreach(names, i, n)
			if (vm_pool_kind(pool, json_string_value(n)) != VM_DS_NONE)
				return vm_error_setx(err, EEXIST, "create VM %s: dataset %s already exists",
						     uuid, json_string_value(n));
	}

	/* From here a crash leaves a record marked "creating", which the next
	 * command's vm_store_recover() removes with its datasets. */
	json_object_set_new(vm, "transition", json_string("creating"));
	r = vm_store_save(node, vm, err);
	if (r < 0)
		return r;
	vm_fault_point("create-after-record");
	r = create_datasets(pool, vm, err);
	if (r >= 0)
		r = vm_quota_apply(pool, vm, err);
	vm_fault_point("create-after-datasets");
	if (r < 0) {
		struct vm_error cerr = { 0 };
		vm_error_prefix(err, "create VM %s", uuid);
		if (destroy_existing(pool, vm, &cerr) >= 0)
			vm_store_remove(node, uuid, &cerr);
		return -err->code;
	}
	json_object_del(vm, "transition");
	json_object_set_new(vm, "state", json_string("stopped"));
	json_object_set_new(vm, "zone_state", json_string("installed"));
	r = vm_store_save(node, vm, err);
	if (r < 0) {
		struct vm_error cerr = { 0 };
		destroy_existing(pool, vm, &cerr);
		vm_store_remove(node, uuid, &cerr);
		return r;
	}
	if (ret_vm)
		*ret_vm = json_incref(vm);
	return 0;
}

void vm_record_set_stopped(json_t *vm)
{
	json_object_set_new(vm, "state", json_string("stopped"));
	json_object_set_new(vm, "zone_state", json_string("installed"));
	json_object_del(vm, "pid");
	json_object_del(vm, "boot_timestamp");
}

void vm_fill_runtime(struct vm_node *node, json_t *vm)
{
	const struct vm_brand_ops *ops = vm_brand_ops_by_name(jstr(vm, "brand"));
	const char *stored = jstr(vm, "state");
	struct vm_runtime rt = { .state = "stopped", .zone_state = "installed" };

	/* States of a transition (provisioning, receiving) are the record's. */
	if (stored && !streq(stored, "running") && !streq(stored, "stopped") &&
	    !streq(stored, "stopping") && !streq(stored, "failed"))
		return;
	if (ops)
		ops->runtime(node, vm, &rt);
	if (stored && streq(stored, "failed") && streq(rt.state, "stopped"))
		return;
	json_object_set_new(vm, "state", json_string(rt.state));
	json_object_set_new(vm, "zone_state", json_string(rt.zone_state));
	if (rt.pid > 0)
		json_object_set_new(vm, "pid", json_integer(rt.pid));
	else
		json_object_del(vm, "pid");
	if (rt.accel[0])
		json_object_set_new(vm, "accel", json_string(rt.accel));
	else
		json_object_del(vm, "accel");
}

int vm_get(struct vm_node *node, const char *uuid, json_t **ret_vm, struct vm_error *err)
{
	json_t *vm;
	int r = vm_store_load(node, uuid, &vm, err);

	if (r < 0)
		return r;
	vm_fill_runtime(node, vm);
	*ret_vm = vm;
	return 0;
}

int vm_get_all(struct vm_node *node, json_t **ret, struct vm_error *err)
{
	json_t *list, *vm;
	size_t i;
	int r = vm_store_list(node, &list, err);

	if (r < 0)
		return r;
	json_array_foreach(list, i, vm)
		vm_fill_runtime(node, vm);
	*ret = list;
	return 0;
}

/* Apply the SmartOS set_X / remove_X keys of an update to object prop. */
static void apply_set_remove(json_t *vm, json_t *payload, const char *prop)
{
	char setk[64], remk[64];
	json_t *obj = json_object_get(vm, prop), *v;
	size_t i;

	snprintf(setk, sizeof(setk), "set_%s", prop);
	snprintf(remk, sizeof(remk), "remove_%s", prop);
	if (!json_is_object(obj)) {
		obj = json_object();
		json_object_set_new(vm, prop, obj);
	}
	json_object_update(obj, json_object_get(payload, setk));
	json_array_foreach(json_object_get(payload, remk), i, v)
		json_object_del(obj, json_string_value(v));
}

static json_t *find_nic(json_t *nics, const char *mac, size_t *ret_index)
{
	json_t *nic;
	size_t i;

	json_array_foreach(nics, i, nic)
		if (jstr(nic, "mac") && mac && strcasecmp(jstr(nic, "mac"), mac) == 0) {
			if (ret_index)
				*ret_index = i;
			return nic;
		}
	return NULL;
}

static int apply_update(json_t *vm, json_t *payload, struct vm_error *err)
{
	static const char *const maps[] = { "customer_metadata", "internal_metadata", "tags" };
	json_t *nics = json_object_get(vm, "nics"), *v, *nic;
	const char *key;
	size_t i;

	json_object_foreach(payload, key, v) {
		if (strncmp(key, "set_", 4) == 0 || strncmp(key, "remove_", 7) == 0 ||
		    strncmp(key, "add_", 4) == 0 || strncmp(key, "update_", 7) == 0)
			continue;
		json_object_set(vm, key, v);
	}
	for (i = 0; i < ARRAY_SIZE(maps); i++)
		apply_set_remove(vm, payload, maps[i]);

	if (!json_is_array(nics)) {
		nics = json_array();
		json_object_set_new(vm, "nics", nics);
	}
	json_array_foreach(json_object_get(payload, "remove_nics"), i, v) {
		size_t idx;
		if (!find_nic(nics, json_string_value(v), &idx))
			return vm_error_setx(err, ENOENT, "remove_nics: no nic with mac %s",
					     json_string_value(v));
		json_array_remove(nics, idx);
	}
	json_array_foreach(json_object_get(payload, "update_nics"), i, v) {
		nic = find_nic(nics, jstr(v, "mac"), NULL);
		if (!nic)
			return vm_error_setx(err, ENOENT, "update_nics[%zu]: no nic with mac %s", i,
					     jstr(v, "mac"));
		json_object_update(nic, v);
	}
	json_array_foreach(json_object_get(payload, "add_nics"), i, v) {
		json_t *n = json_deep_copy(v);
		if (!jstr(n, "mac")) {
			char mac[18];
			random_mac(mac);
			json_object_set_new(n, "mac", json_string(mac));
		} else if (find_nic(nics, jstr(n, "mac"), NULL)) {
			json_decref(n);
			return vm_error_setx(err, EEXIST, "add_nics[%zu]: a nic with mac %s exists",
					     i, jstr(v, "mac"));
		}
		json_array_append_new(nics, n);
	}
	json_array_foreach(nics, i, nic) {
		char name[16];
		snprintf(name, sizeof(name), "net%zu", i);
		json_object_set_new(nic, "interface", json_string(name));
	}
	if (json_array_size(nics) == 0)
		json_object_del(vm, "nics");
	return 0;
}

int vm_update(struct vm_node *node, const char *uuid, json_t *payload, json_t **ret_vm,
	      struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL;
	_cleanup_close_ int lock = -1;
	int r;

	r = vm_store_lock_load(node, uuid, &lock, &vm, err);
	if (r < 0)
		return r;
	r = vm_validate_update(payload, jstr(vm, "brand"), err);
	if (r >= 0)
		r = vm_validate_node_nics(node, json_object_get(payload, "add_nics"), "add_nics",
					  err);
	if (r >= 0)
		r = vm_validate_node_nics(node, json_object_get(payload, "update_nics"),
					  "update_nics", err);
	if (r < 0)
		return r;
	r = apply_update(vm, payload, err);
	if (r < 0)
		return r;
	if (json_object_get(payload, "quota")) {
		/* before the record: a quota the pool refuses (below what the
		 * dataset holds) leaves the VM as it was */
		struct vm_pool *pool;
		r = vm_node_pool(node, &pool, err);
		if (r >= 0)
			r = vm_quota_apply(pool, vm, err);
		if (r < 0)
			return vm_error_prefix(err, "update VM %s", uuid);
	}
	r = vm_store_save(node, vm, err);
	if (r < 0)
		return r;
	if (ret_vm) {
		vm_fill_runtime(node, vm);
		*ret_vm = TAKE_PTR(vm);
	}
	return 0;
}

int vm_delete(struct vm_node *node, const char *uuid, struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL;
	_cleanup_close_ int lock = -1;
	const struct vm_brand_ops *ops;
	struct vm_runtime rt = { .state = "stopped" };
	struct vm_pool *pool;
	int r;

	r = vm_store_lock_load(node, uuid, &lock, &vm, err);
	if (r < 0)
		return r;
	ops = vm_brand_ops_by_name(jstr(vm, "brand"));
	if (ops) {
		ops->runtime(node, vm, &rt);
		if (!streq(rt.state, "stopped")) {
			r = ops->stop(node, vm, 0, true, err);
			if (r < 0)
				return vm_error_prefix(err, "delete VM %s: stop", uuid);
		}
	}
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	json_object_set_new(vm, "transition", json_string("deleting"));
	r = vm_store_save(node, vm, err);
	if (r < 0)
		return r;
	vm_fault_point("delete-after-record");
	r = destroy_existing(pool, vm, err);
	if (r < 0)
		return vm_error_prefix(err, "delete VM %s", uuid);
	vm_fault_point("delete-after-datasets");
	r = vm_store_remove(node, uuid, err);
	if (r < 0)
		return r;
	{
		_cleanup_free_ char *lockpath = vm_node_path(node, "locks/%s.lock", uuid);
		unlink(lockpath);
	}
	return 0;
}

static int with_brand(struct vm_node *node, const char *uuid, json_t **ret_vm, int *ret_lock,
		      const struct vm_brand_ops **ret_ops, struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL;
	_cleanup_close_ int lock = -1;
	int r;

	r = vm_store_lock_load(node, uuid, &lock, &vm, err);
	if (r < 0)
		return r;
	*ret_ops = vm_brand_ops_by_name(jstr(vm, "brand"));
	if (!*ret_ops)
		return vm_error_setx(err, EINVAL, "VM %s: unknown brand %s", uuid,
				     jstr(vm, "brand"));
	*ret_vm = TAKE_PTR(vm);
	*ret_lock = TAKE_FD(lock);
	return 0;
}

static int check_startable(json_t *vm, struct vm_error *err)
{
	const char *state = jstr(vm, "state");

	if (state && !streq(state, "stopped") && !streq(state, "failed") &&
	    !streq(state, "running"))
		return vm_error_setx(err, EBUSY, "VM %s is %s and cannot be started",
				     jstr(vm, "uuid"), state);
	return 0;
}

int vm_start(struct vm_node *node, const char *uuid, struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL;
	_cleanup_close_ int lock = -1;
	const struct vm_brand_ops *ops;
	struct vm_runtime rt = { .state = "stopped" };
	int r;

	r = with_brand(node, uuid, &vm, &lock, &ops, err);
	if (r < 0)
		return r;
	r = check_startable(vm, err);
	if (r < 0)
		return r;
	ops->runtime(node, vm, &rt);
	if (streq(rt.state, "running"))
		return vm_error_setx(err, EALREADY, "VM %s is already running", uuid);
	r = ops->start(node, vm, err);
	if (r < 0) {
		/* Nothing runs (the start slot's promise). A start refused before
		 * anything ran (a missing dataset: -ENOENT) leaves the VM stopped;
		 * one whose hypervisor or container died on the way shows as
		 * "failed", as on SmartOS, until the next start or stop. */
		struct vm_error serr = { 0 };
		if (r != -ENOENT) {
			vm_record_set_stopped(vm);
			json_object_set_new(vm, "state", json_string("failed"));
			vm_store_save(node, vm, &serr);
		} else if (streq(jstr(vm, "state") ? jstr(vm, "state") : "", "running")) {
			vm_record_set_stopped(vm);
			vm_store_save(node, vm, &serr);
		}
		return r;
	}
	json_object_set_new(vm, "state", json_string("running"));
	json_object_set_new(vm, "zone_state", json_string("running"));
	{
		char ts[32];
		vm_timestamp_now(ts);
		json_object_set_new(vm, "boot_timestamp", json_string(ts));
	}
	return vm_store_save(node, vm, err);
}

int vm_stop(struct vm_node *node, const char *uuid, int timeout_secs, bool force,
	    struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL;
	_cleanup_close_ int lock = -1;
	const struct vm_brand_ops *ops;
	struct vm_runtime rt = { .state = "stopped" };
	int r;

	r = with_brand(node, uuid, &vm, &lock, &ops, err);
	if (r < 0)
		return r;
	ops->runtime(node, vm, &rt);
	if (streq(rt.state, "stopped")) {
		if (streq(jstr(vm, "state") ? jstr(vm, "state") : "", "running")) {
			vm_record_set_stopped(vm);
			vm_store_save(node, vm, err);
		}
		return vm_error_setx(err, EALREADY, "VM %s is not running", uuid);
	}
	r = ops->stop(node, vm, timeout_secs, force, err);
	if (r < 0)
		return r;
	vm_record_set_stopped(vm);
	return vm_store_save(node, vm, err);
}

int vm_reboot(struct vm_node *node, const char *uuid, struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL;
	_cleanup_close_ int lock = -1;
	const struct vm_brand_ops *ops;
	struct vm_runtime rt = { .state = "stopped" };
	int r;

	r = with_brand(node, uuid, &vm, &lock, &ops, err);
	if (r < 0)
		return r;
	ops->runtime(node, vm, &rt);
	if (!streq(rt.state, "running"))
		return vm_error_setx(err, EINVAL, "VM %s is not running", uuid);
	r = ops->reboot(node, vm, err);
	if (r < 0)
		return r;
	/* The guest booted again: boot_timestamp says when, as on SmartOS. */
	{
		char ts[32];
		vm_timestamp_now(ts);
		json_object_set_new(vm, "boot_timestamp", json_string(ts));
	}
	return vm_store_save(node, vm, err);
}
