/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/macros.h"
#include "vm/vm.h"
#include "vmadm.h"

/* vmadm start UUID */
int cmd_start(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	int r;

	if (argc != 2)
		return vmadm_usage_error("start", err, "expected one UUID");
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	r = vm_start(node, argv[1], err);
	if (r < 0)
		return r;
	fprintf(stderr, "Successfully started VM %s\n", argv[1]);
	return 0;
}

/* vmadm stop UUID [-F] [-t SECS] */
int cmd_stop(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	const char *uuid = NULL;
	bool force = false;
	int timeout = 60, c, r;

	while (optind < argc) {
		if ((c = getopt(argc, argv, "Ft:")) == -1) {
			if (uuid)
				return vmadm_usage_error("stop", err, "expected one UUID");
			uuid = argv[optind++];
			continue;
		}
		if (c == 'F')
			force = true;
		else if (c == 't') {
			char *end;
			timeout = strtol(optarg, &end, 10);
			if (*end || timeout < 0)
				return vmadm_usage_error("stop", err, "-t: not a number of seconds: %s",
							 optarg);
		} else
			return vmadm_usage_error("stop", err, "unknown option");
	}
	if (!uuid)
		return vmadm_usage_error("stop", err, "expected one UUID");
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	r = vm_stop(node, uuid, timeout, force, err);
	if (r < 0)
		return r;
	fprintf(stderr, "Successfully completed stop for VM %s\n", uuid);
	return 0;
}

/* vmadm reboot UUID */
int cmd_reboot(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	int r;

	if (argc != 2)
		return vmadm_usage_error("reboot", err, "expected one UUID");
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	r = vm_reboot(node, argv[1], err);
	if (r < 0)
		return r;
	fprintf(stderr, "Successfully completed reboot for VM %s\n", argv[1]);
	return 0;
}
