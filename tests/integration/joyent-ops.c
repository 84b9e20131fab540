/* SPDX-License-Identifier: MIT */
/*
 * Drive the joyent brand directly, for tests/integration/joyent.sh:
 *
 *   joyent-ops ROOT start RECORD.json
 *   joyent-ops ROOT stop [-t SECS] [-F] RECORD.json
 *   joyent-ops ROOT reboot RECORD.json
 *   joyent-ops ROOT state RECORD.json     prints "STATE ZONE_STATE PID"
 *   joyent-ops ROOT info RECORD.json      prints the info JSON
 *   joyent-ops ROOT console RECORD.json   attaches stdin/stdout
 *
 * ROOT is the node root; the node is built by hand so that this driver
 * needs only the brand and util parts of libvmadm.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brand/brand.h"
#include "util/log.h"

static void log_stderr(int level, const char *line, void *userdata)
{
	fprintf(stderr, "debug: %s\n", line);
}

static int usage(void)
{
	fprintf(stderr, "usage: joyent-ops ROOT start|stop [-t N] [-F]|reboot|state|info|console "
			"RECORD.json\n");
	return 2;
}

int main(int argc, char **argv)
{
	const struct vm_brand_ops *ops = &joyent_brand_ops;
	struct vm_error err = { 0 };
	struct vm_node node = { 0 };
	char root[PATH_MAX];
	json_error_t jerr;
	json_t *vm;
	const char *verb;
	int timeout = 60, r = 0, opt;
	bool force = false;

	if (getenv("VMADM_DEBUG"))
		vm_log_set_handler(log_stderr, NULL);
	if (argc < 4)
		return usage();
	if (!realpath(argv[1], root)) {
		fprintf(stderr, "joyent-ops: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	node.root = root;
	node.conf = json_object();
	verb = argv[2];
	optind = 3;
	while ((opt = getopt(argc, argv, "t:F")) != -1) {
		switch (opt) {
		case 't':
			timeout = atoi(optarg);
			break;
		case 'F':
			force = true;
			break;
		default:
			return usage();
		}
	}
	if (optind != argc - 1)
		return usage();
	vm = json_load_file(argv[optind], 0, &jerr);
	if (!vm) {
		fprintf(stderr, "joyent-ops: %s: %s\n", argv[optind], jerr.text);
		return 1;
	}

	if (strcmp(verb, "start") == 0) {
		r = ops->start(&node, vm, &err);
	} else if (strcmp(verb, "stop") == 0) {
		r = ops->stop(&node, vm, timeout, force, &err);
	} else if (strcmp(verb, "reboot") == 0) {
		r = ops->reboot(&node, vm, &err);
	} else if (strcmp(verb, "state") == 0) {
		struct vm_runtime rt;
		ops->runtime(&node, vm, &rt);
		printf("%s %s %d\n", rt.state, rt.zone_state, (int)rt.pid);
	} else if (strcmp(verb, "info") == 0) {
		json_t *info = NULL;
		r = ops->info(&node, vm, &info, &err);
		if (r >= 0) {
			json_dumpf(info, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
			putchar('\n');
			json_decref(info);
		}
	} else if (strcmp(verb, "console") == 0) {
		r = ops->console(&node, vm, STDIN_FILENO, STDOUT_FILENO, &err);
	} else {
		return usage();
	}
	json_decref(vm);
	json_decref(node.conf);
	if (r < 0) {
		fprintf(stderr, "joyent-ops: %s\n", err.msg);
		return 1;
	}
	return 0;
}
