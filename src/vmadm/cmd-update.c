/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/macros.h"
#include "vm/props.h"
#include "vm/vm.h"
#include "vmadm.h"

/* vmadm update UUID [-f FILE | PROP=VALUE ...] */
int cmd_update(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *payload = NULL, *vm = NULL;
	const char *file = NULL, *uuid;
	int c, r;

	if (argc < 2 || argv[1][0] == '-')
		return vmadm_usage_error("update", err, "expected a UUID");
	uuid = argv[1];
	optind = 2;
	while ((c = getopt(argc, argv, "+f:")) != -1) {
		if (c == 'f')
			file = optarg;
		else
			return vmadm_usage_error("update", err, "unknown option");
	}
	if (optind < argc) {
		if (file)
			return vmadm_usage_error("update", err, "give -f FILE or PROP=VALUE, not both");
		payload = json_object();
		for (int i = optind; i < argc; i++) {
			_cleanup_free_ char *key = NULL;
			json_t *value;
			r = vm_prop_parse_assignment(argv[i], &key, &value, err);
			if (r < 0)
				return r;
			json_object_set_new(payload, key, value);
		}
	} else {
		r = vmadm_read_json(file, &payload, err);
		if (r < 0)
			return r;
	}
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	r = vm_update(node, uuid, payload, &vm, err);
	if (r < 0)
		return r;
	fprintf(stderr, "Successfully updated VM %s\n", uuid);
	return 0;
}
