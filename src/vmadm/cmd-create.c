/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>

#include "util/macros.h"
#include "vm/vm.h"
#include "vmadm.h"

/* vmadm create [-f FILE] */
int cmd_create(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *payload = NULL, *vm = NULL;
	const char *file = NULL;
	int c, r;

	while ((c = getopt(argc, argv, "f:")) != -1) {
		if (c == 'f')
			file = optarg;
		else
			return vmadm_usage_error("create", err, "unknown option");
	}
	if (optind != argc)
		return vmadm_usage_error("create", err, "unexpected argument '%s'", argv[optind]);
	r = vmadm_read_json(file, &payload, err);
	if (r < 0)
		return r;
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	r = vm_create(node, payload, &vm, err);
	if (r < 0)
		return r;
	fprintf(stderr, "Successfully created VM %s\n",
		json_string_value(json_object_get(vm, "uuid")));
	return 0;
}
