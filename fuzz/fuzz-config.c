/* SPDX-License-Identifier: MIT */
/*
 * fuzz-config: the input is a VM config (JSON text), as `vmadm create`
 * reads a payload, `vmadm update` an update, and a receive the CONFIG of a
 * stream or the config of a BEGIN message. Through the public API only:
 *
 *   vm_validate_json_text      the parse (duplicate keys, non-objects)
 *   vm_validate_create         for the payload's brand, and as kvm and joyent
 *   vm_validate_update         as kvm and joyent
 *   vm_validate_record         a stored or received record
 *   migrate_mode_ops.check     cold, incremental, live: may it move so
 *   vm_record_localize         what a receive does to a config from another
 *                              node, on a dir-pool node of the harness's own
 *
 * and checks what localize promises: on success the record's paths lie
 * under this node's pool and name the record's uuid, and the record is
 * still one vm_validate_record accepts.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "migrate/migrate.h"
#include "migrate/transport/proto.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/macros.h"
#include "vm/props.h"

static bool starts(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* What vm_record_localize promised, on the record it rewrote. */
static void check_localized(json_t *vm)
{
	struct vm_node *node = fuzz_node();
	const char *uuid = jstr(vm, "uuid"), *zonepath = jstr(vm, "zonepath");
	_cleanup_free_ char *pool = strdup_printf("%s/zones/", node->root);
	_cleanup_free_ char *own = strdup_printf("zones/%s", uuid ? uuid : "");
	struct vm_error err = {0};
	json_t *x;
	size_t i;
	int r;

	if (!uuid || !starts(zonepath, pool) || !streq(zonepath + strlen(pool), uuid))
		fuzz_die("localized zonepath \"%s\" is not %s%s", zonepath ? zonepath : "(none)",
			 pool, uuid ? uuid : "?");
	if (!streq(jstr(vm, "zfs_filesystem") ? jstr(vm, "zfs_filesystem") : "", own))
		fuzz_die("localized zfs_filesystem is not %s", own);
	json_array_foreach (json_object_get(vm, "disks"), i, x) {
		const char *path = jstr(x, "path");

		if (!starts(path, pool) || strstr(path, "/../") || !strstr(path, uuid))
			fuzz_die("localized disks[%zu].path \"%s\" is not under %s for %s", i,
				 path ? path : "(none)", pool, uuid);
	}
	json_array_foreach (json_object_get(vm, "datasets"), i, x)
		if (!starts(json_string_value(x), own) || json_string_value(x)[strlen(own)] != '/')
			fuzz_die("localized datasets[%zu] \"%s\" is not a child of %s", i,
				 json_string_value(x) ? json_string_value(x) : "?", own);
	r = vm_validate_record(vm, &err);
	fuzz_check_error(r, &err, "vm_validate_record (localized)");
	if (r < 0)
		fuzz_die("a localized record fails validation: %s", err.msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const brands[] = {NULL, "kvm", "joyent"};
	static const char *const modes[] = {"cold", "incremental", "live"};
	_cleanup_free_ char *text = strndup((const char *)data, size);
	_cleanup_json_ json_t *payload = NULL, *record = NULL, *local = NULL;
	struct vm_error err = {0};
	int r;

	if (!text)
		return 0;
	r = vm_validate_json_text(text, &payload, &err);
	fuzz_check_error(r, &err, "vm_validate_json_text");
	if (r < 0)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(brands); i++) {
		_cleanup_json_ json_t *copy = json_deep_copy(payload);

		vm_error_clear(&err);
		r = vm_validate_create(copy, brands[i], &err);
		fuzz_check_error(r, &err, "vm_validate_create");
		if (brands[i]) {
			vm_error_clear(&err);
			r = vm_validate_update(copy, brands[i], &err);
			fuzz_check_error(r, &err, "vm_validate_update");
		}
	}
	record = json_deep_copy(payload);
	vm_error_clear(&err);
	r = vm_validate_record(record, &err);
	fuzz_check_error(r, &err, "vm_validate_record");
	for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
		const struct migrate_mode_ops *mode = migrate_mode_by_name(modes[i]);

		if (mode && mode->check) {
			vm_error_clear(&err);
			r = mode->check(record, &err);
			fuzz_check_error(r, &err, modes[i]);
		}
	}
	local = json_deep_copy(payload);
	vm_error_clear(&err);
	r = vm_record_localize(fuzz_node(), local, &err);
	fuzz_check_error(r, &err, "vm_record_localize");
	if (r >= 0)
		check_localized(local);
	return 0;
}
