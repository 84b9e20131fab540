/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* vmadm stop UUID [-F] [-t SECS], options before or after the UUID as on
 * SmartOS. Parsed by hand: getopt's argument permutation depends on state
 * left from earlier calls and refused "stop UUID -t 30". */
int cmd_stop(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	const char *uuid = NULL;
	bool force = false;
	int timeout = 60, r;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val;
		char *end;

		if (streq(a, "-F")) {
			force = true;
			continue;
		}
		if (strncmp(a, "-t", 2) == 0) {
			val = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
			if (!val)
				return vmadm_usage_error("stop", err,
							 "-t needs a number of seconds");
			errno = 0;
			timeout = strtol(val, &end, 10);
			if (errno || !*val || *end || timeout < 0)
				return vmadm_usage_error("stop", err, "-t: not a number of seconds: %s",
							 val);
			continue;
		}
		if (a[0] == '-' && a[1])
			return vmadm_usage_error("stop", err, "unknown option %s", a);
		if (uuid)
			return vmadm_usage_error("stop", err, "expected one UUID");
		uuid = a;
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
