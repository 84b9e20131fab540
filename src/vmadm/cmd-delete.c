/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "util/macros.h"
#include "vm/vm.h"
#include "vmadm.h"

/* vmadm delete UUID */
int cmd_delete(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	int r;

	if (argc != 2)
		return vmadm_usage_error("delete", err, "expected one UUID");
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	r = vm_delete(node, argv[1], err);
	if (r < 0)
		return r;
	fprintf(stderr, "Successfully deleted VM %s\n", argv[1]);
	/* A "receiving" placeholder's held or kept receive goes with it. The
	 * VM is gone either way: a failure here is the next command's to
	 * retry, not this delete's. */
	{
		struct vm_error e = {0};
		if (vmadm_recover(node, &e) < 0)
			fprintf(stderr, "vmadm: warning: %s\n", e.msg);
	}
	return 0;
}
