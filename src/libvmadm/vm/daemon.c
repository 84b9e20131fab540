/* SPDX-License-Identifier: MIT */
#include "daemon.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "brand/brand.h"
#include "util/fs.h"
#include "util/macros.h"
#include "vm/store.h"
#include "vm/vm.h"

#define BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"

bool vm_node_booted(struct vm_node *node)
{
	_cleanup_free_ char *now = NULL, *was = NULL, *path = vm_node_path(node, "run/boot_id");
	struct vm_error err = { 0 };
	bool booted;

	if (fs_read_file(BOOT_ID_PATH, 4096, &now, NULL, &err) < 0)
		return false;
	vm_error_clear(&err);
	booted = fs_read_file(path, 4096, &was, NULL, &err) < 0 || !streq(was, now);
	if (booted)
		fs_write_atomic(path, now, strlen(now), 0644, &err);
	return booted;
}

static void logf_append(json_t *log, const char *fmt, const char *a, const char *b)
{
	_cleanup_free_ char *line = strdup_printf(fmt, a, b);
	if (line)
		json_array_append_new(log, json_string(line));
}

int vm_autoboot_all(struct vm_node *node, json_t *log, struct vm_error *err)
{
	_cleanup_json_ json_t *vms = NULL;
	json_t *vm;
	size_t i;
	int r = vm_get_all(node, &vms, err);

	if (r < 0)
		return r;
	json_array_foreach(vms, i, vm) {
		const char *uuid = json_string_value(json_object_get(vm, "uuid"));
		const char *state = json_string_value(json_object_get(vm, "state"));
		struct vm_error serr = { 0 };

		if (!json_is_true(json_object_get(vm, "autoboot")) || !state ||
		    !streq(state, "stopped"))
			continue;
		if (vm_start(node, uuid, &serr) < 0)
			logf_append(log, "autoboot %s failed: %s", uuid, serr.msg);
		else
			logf_append(log, "autoboot %s: started%s", uuid, "");
	}
	return 0;
}

int vm_reconcile_states(struct vm_node *node, json_t *log, struct vm_error *err)
{
	_cleanup_json_ json_t *vms = NULL, *notes = NULL;
	json_t *vm;
	size_t i;
	int r;

	/* A create that died leaves a "provisioning" record (and maybe
	 * datasets) that nothing else would remove while no command runs. */
	r = vm_store_recover(node, &notes, err);
	json_array_foreach(notes, i, vm)
		json_array_append(log, vm);
	if (r < 0)
		return r;
	r = vm_store_list(node, &vms, err);
	if (r < 0)
		return r;
	json_array_foreach(vms, i, vm) {
		const char *uuid = json_string_value(json_object_get(vm, "uuid"));
		const char *state = json_string_value(json_object_get(vm, "state"));
		_cleanup_close_ int lock = -1;
		_cleanup_json_ json_t *cur = NULL;
		struct vm_error lerr = { 0 };

		if (!state || !streq(state, "running"))
			continue;
		lock = vm_store_lock(node, uuid, 0, &lerr);
		if (lock < 0)
			continue;
		if (vm_store_load(node, uuid, &cur, &lerr) < 0)
			continue;
		vm_fill_runtime(node, cur);
		if (!streq(json_string_value(json_object_get(cur, "state")), "stopped"))
			continue;
		vm_record_set_stopped(cur);
		if (vm_store_save(node, cur, &lerr) < 0)
			logf_append(log, "VM %s exited; recording it failed: %s", uuid, lerr.msg);
		else
			logf_append(log, "VM %s exited: now stopped%s", uuid, "");
	}
	return 0;
}
