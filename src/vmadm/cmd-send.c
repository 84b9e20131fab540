/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/migrate.h"
#include "util/fs.h"
#include "util/macros.h"
#include "vmadm.h"

enum { OPT_PORTABLE = 0x100 };

/* vmadm send UUID [-z] [--portable] [-t SECS] > FILE */
int cmd_send(int argc, char **argv, struct vm_error *err)
{
	static const struct option longopts[] = {
		{ "portable", no_argument, NULL, OPT_PORTABLE },
		{ "compress", no_argument, NULL, 'z' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL },
	};
	_cleanup_node_ struct vm_node *node = NULL;
	struct vm_send_opts opts = { .stop_timeout = 60 };
	const char *uuid = NULL;
	int c, r;

	while (optind < argc) {
		c = getopt_long(argc, argv, "zt:", longopts, NULL);
		if (c == -1) {
			if (uuid)
				return vmadm_usage_error("send", err, "unexpected argument '%s'",
							 argv[optind]);
			uuid = argv[optind++];
			continue;
		}
		switch (c) {
		case OPT_PORTABLE:
			opts.portable = true;
			break;
		case 'z':
			opts.compress = true;
			break;
		case 't':
			opts.stop_timeout = atoi(optarg);
			break;
		default:
			return vmadm_usage_error("send", err, "unknown option");
		}
	}
	if (!uuid)
		return vmadm_usage_error("send", err, "expected a UUID");
	if (isatty(1))
		return vm_error_setx(err, EINVAL,
				     "refusing to write the stream to a terminal: redirect it to a "
				     "file or a pipe");
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	r = vm_send(node, uuid, 1, &opts, NULL, err);
	if (r < 0)
		return r;
	if (fsync(1) < 0 && errno != EINVAL && errno != EROFS)
		return vm_error_set(err, errno, "flush the stream");
	fprintf(stderr, "Successfully sent VM %s\n", uuid);
	return 0;
}
