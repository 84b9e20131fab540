/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net/net.h"
#include "util/macros.h"
#include "vmadm.h"

/* vmadm key generate [-f] | vmadm key show */
int cmd_key(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_free_ char *path = NULL;
	uint8_t key[NET_KEY_LEN];
	char fp[17];
	bool force = false;
	int r;

	if (argc < 2)
		return vmadm_usage_error("key", err, "expected 'generate' or 'show'");
	for (int i = 2; i < argc; i++) {
		if (streq(argv[i], "-f") && streq(argv[1], "generate"))
			force = true;
		else
			return vmadm_usage_error("key", err, "unexpected argument '%s'", argv[i]);
	}
	r = vm_node_open(&node, err);
	if (r < 0)
		return r;
	path = net_key_path(node);
	if (streq(argv[1], "generate")) {
		r = net_key_generate(path, force, err);
		if (r < 0)
			return r;
	} else if (!streq(argv[1], "show")) {
		return vmadm_usage_error("key", err, "unknown subcommand '%s'", argv[1]);
	}
	r = net_key_load(path, key, err);
	if (r < 0)
		return r;
	net_key_fingerprint(key, fp);
	memset(key, 0, sizeof(key));
	printf("%s\nfingerprint %s\n", path, fp);
	if (streq(argv[1], "generate"))
		fprintf(stderr, "Copy %s to the nodes this one migrates with (mode 0600).\n", path);
	return 0;
}
