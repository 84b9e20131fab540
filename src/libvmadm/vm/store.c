/* SPDX-License-Identifier: MIT */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "brand/brand.h"
#include "util/fs.h"
#include "util/lock.h"
#include "util/macros.h"
#include "util/uuid.h"
#include "vm/props.h"

#define RECORD_MAX (4 * 1024 * 1024)

int vm_store_load(struct vm_node *node, const char *uuid, json_t **ret, struct vm_error *err)
{
	_cleanup_free_ char *path = NULL, *text = NULL;
	json_error_t jerr;
	json_t *vm;
	int r;

	if (!vm_uuid_valid(uuid))
		return vm_error_setx(err, EINVAL, "invalid UUID \"%s\"", uuid);
	path = vm_node_path(node, "vms/%s.json", uuid);
	r = fs_read_file(path, RECORD_MAX, &text, NULL, err);
	if (r == -ENOENT)
		return vm_error_setx(err, ENOENT, "VM %s not found", uuid);
	if (r < 0)
		return r;
	vm = json_loads(text, 0, &jerr);
	if (!json_is_object(vm)) {
		json_decref(vm);
		return vm_error_setx(err, EINVAL, "VM record %s is corrupt: %s", path, jerr.text);
	}
	*ret = vm;
	return 0;
}

int vm_store_save(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	_cleanup_free_ char *path = NULL, *text = NULL;
	char ts[32];

	if (!vm_uuid_valid(uuid))
		return vm_error_setx(err, EINVAL, "save VM: record has no valid uuid");
	vm_timestamp_now(ts);
	json_object_set_new(vm, "last_modified", json_string(ts));
	path = vm_node_path(node, "vms/%s.json", uuid);
	text = json_dumps(vm, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!path || !text)
		return vm_error_set(err, ENOMEM, "save VM %s", uuid);
	return fs_write_atomic(path, text, strlen(text), 0600, err);
}

int vm_store_remove(struct vm_node *node, const char *uuid, struct vm_error *err)
{
	_cleanup_free_ char *path = vm_node_path(node, "vms/%s.json", uuid);

	if (unlink(path) < 0 && errno != ENOENT)
		return vm_error_set(err, errno, "remove VM record %s", path);
	return 0;
}

bool vm_store_exists(struct vm_node *node, const char *uuid)
{
	_cleanup_free_ char *path = vm_node_path(node, "vms/%s.json", uuid);
	return path && fs_exists(path);
}

static int compare_vms(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	const char *tx = json_string_value(json_object_get(x, "create_timestamp"));
	const char *ty = json_string_value(json_object_get(y, "create_timestamp"));
	int c = strcmp(tx ? tx : "", ty ? ty : "");

	if (c)
		return c;
	return strcmp(json_string_value(json_object_get(x, "uuid")),
		      json_string_value(json_object_get(y, "uuid")));
}

int vm_store_list(struct vm_node *node, json_t **ret, struct vm_error *err)
{
	_cleanup_free_ char *dir = vm_node_path(node, "vms");
	_cleanup_closedir_ DIR *d = opendir(dir);
	_cleanup_json_ json_t *list = json_array();
	_cleanup_free_ json_t **items = NULL;
	struct dirent *de;
	size_t n = 0;

	if (!d)
		return vm_error_set(err, errno, "list VMs in %s", dir);
	while ((de = readdir(d))) {
		char uuid[64];
		size_t len = strlen(de->d_name);
		json_t *vm;

		if (len != 36 + 5 || strcmp(de->d_name + 36, ".json") != 0)
			continue;
		memcpy(uuid, de->d_name, 36);
		uuid[36] = '\0';
		if (!vm_uuid_valid(uuid))
			continue;
		if (vm_store_load(node, uuid, &vm, err) < 0) {
			if (err->code == ENOENT) /* deleted meanwhile */
				continue;
			return -err->code;
		}
		json_array_append_new(list, vm);
	}
	n = json_array_size(list);
	items = calloc(n ? n : 1, sizeof(*items));
	if (!items)
		return vm_error_set(err, ENOMEM, "list VMs");
	for (size_t i = 0; i < n; i++)
		items[i] = json_incref(json_array_get(list, i));
	qsort(items, n, sizeof(*items), compare_vms);
	json_array_clear(list);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, items[i]);
	*ret = TAKE_PTR(list);
	return 0;
}

int vm_store_lock(struct vm_node *node, const char *uuid, int wait_secs, struct vm_error *err)
{
	_cleanup_free_ char *path = vm_node_path(node, "locks/%s.lock", uuid);
	char what[64];

	if (!vm_uuid_valid(uuid))
		return vm_error_setx(err, EINVAL, "invalid UUID \"%s\"", uuid);
	snprintf(what, sizeof(what), "VM %s", uuid);
	return vm_lock_file(path, wait_secs, what, err);
}

int vm_store_lock_load(struct vm_node *node, const char *uuid, int *ret_lock, json_t **ret_vm,
		       struct vm_error *err)
{
	_cleanup_close_ int lock = vm_store_lock(node, uuid, VM_LOCK_WAIT_SECS, err);
	int r;

	if (lock < 0)
		return lock;
	r = vm_store_load(node, uuid, ret_vm, err);
	if (r < 0)
		return r;
	*ret_lock = TAKE_FD(lock);
	return 0;
}

/* Destroy whatever datasets of vm exist; used to undo a create and to finish
 * a delete. */
static int destroy_datasets(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	_cleanup_json_ json_t *names = vm_datasets(vm);
	struct vm_pool *pool;
	size_t i;
	int r;

	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	/* Children and volumes first, the VM's own dataset last. */
	for (i = json_array_size(names); i-- > 0;) {
		const char *ds = json_string_value(json_array_get(names, i));
		if (vm_pool_kind(pool, ds) == VM_DS_NONE)
			continue;
		r = vm_pool_destroy(pool, ds, true, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int vm_store_recover(struct vm_node *node, json_t **notes, struct vm_error *err)
{
	_cleanup_json_ json_t *list = NULL;
	size_t i;
	json_t *vm;
	int r;

	r = vm_store_list(node, &list, err);
	if (r < 0)
		return r;
	json_array_foreach(list, i, vm) {
		const char *uuid = json_string_value(json_object_get(vm, "uuid"));
		const char *tr = json_string_value(json_object_get(vm, "transition"));
		_cleanup_close_ int lock = -1;
		struct vm_error lerr = { 0 };
		char line[256];

		/* Receives are undone from their journal (migrate/local/journal.h). */
		if (!tr || streq(tr, "receiving"))
			continue;
		lock = vm_store_lock(node, uuid, 0, &lerr);
		if (lock < 0)
			continue; /* a live command owns it */
		/* Reload under the lock: the owner may have finished meanwhile. */
		json_t *cur = NULL;
		if (vm_store_load(node, uuid, &cur, &lerr) < 0)
			continue;
		tr = json_string_value(json_object_get(cur, "transition"));
		if (!tr) {
			json_decref(cur);
			continue;
		}
		/* A live migration's target whose vmadmd died may have left
		 * its incoming QEMU: it never ran the guest, stop it first. */
		if (streq(tr, "migrating")) {
			const struct vm_brand_ops *ops =
				vm_brand_ops_by_name(json_string_value(json_object_get(cur, "brand")));
			struct vm_runtime rt = { .state = "stopped" };
			if (ops) {
				ops->runtime(node, cur, &rt);
				if (!streq(rt.state, "stopped"))
					ops->stop(node, cur, 0, true, &lerr);
			}
		}
		r = destroy_datasets(node, cur, err);
		if (r >= 0)
			r = vm_store_remove(node, uuid, err);
		if (r < 0) {
			json_decref(cur);
			return vm_error_prefix(err, "clean up VM %s after an interrupted %s", uuid,
					       tr);
		}
		snprintf(line, sizeof(line), "removed VM %s left behind by an interrupted %s", uuid,
			 streq(tr, "creating")    ? "create"
			 : streq(tr, "deleting")  ? "delete"
			 : streq(tr, "migrating") ? "live migration"
						  : tr);
		if (!*notes)
			*notes = json_array();
		json_array_append_new(*notes, json_string(line));
		json_decref(cur);
	}
	return 0;
}
