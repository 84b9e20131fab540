/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "util/macros.h"
#include "vm/props.h"
#include "vmadm.h"

/* vmadm validate create|update [-b BRAND] [-f FILE] */
int cmd_validate(int argc, char **argv, struct vm_error *err)
{
	_cleanup_json_ json_t *payload = NULL;
	const char *file = NULL, *brand = NULL, *action;
	int c, r;

	if (argc < 2 || (!streq(argv[1], "create") && !streq(argv[1], "update")))
		return vmadm_usage_error("validate", err, "expected 'create' or 'update'");
	action = argv[1];
	optind = 2;
	while ((c = getopt(argc, argv, "b:f:")) != -1) {
		if (c == 'b')
			brand = optarg;
		else if (c == 'f')
			file = optarg;
		else
			return vmadm_usage_error("validate", err, "unknown option");
	}
	if (optind != argc)
		return vmadm_usage_error("validate", err, "unexpected argument '%s'", argv[optind]);
	if (brand && !vm_brand_flag(brand))
		return vm_error_setx(err, EINVAL, "-b: unknown brand \"%s\" (valid: kvm, joyent)",
				     brand);
	if (streq(action, "update") && !brand)
		return vmadm_usage_error("validate", err, "update needs -b BRAND");
	r = vmadm_read_json(file, &payload, err);
	if (r < 0)
		return r;
	if (streq(action, "create"))
		r = vm_validate_create(payload, brand, err);
	else
		r = vm_validate_update(payload, brand, err);
	if (r < 0)
		return r;
	if (!brand)
		brand = json_string_value(json_object_get(payload, "brand"));
	printf("VALID '%s' payload for %s brand VMs.\n", action, brand);
	return 0;
}
