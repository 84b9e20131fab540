/* SPDX-License-Identifier: MIT */
#include "util/macros.h"
#include "vm/vm.h"
#include "vmadm.h"

/* vmadm get UUID */
int cmd_get(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *vm = NULL;
	int r;

	if (argc != 2)
		return vmadm_usage_error("get", err, "expected one UUID");
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	r = vm_get(node, argv[1], &vm, err);
	if (r < 0)
		return r;
	json_object_del(vm, "transition");
	vmadm_print_json(vm);
	return 0;
}
